"""Small image files for tests: real JPEG/PNG bytes made with Pillow, and broken ones."""

import io
from pathlib import Path

import numpy as np
from PIL import Image

RNG_SEED = 1234


def image_bytes(mode="RGB", fmt="JPEG", size=(40, 30), seed=0) -> bytes:
    """A photo-like picture (smooth gradients plus noise) of ``size`` (width, height)."""
    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], axis=-1)
    pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    if mode == "P":
        image = image.quantize(16)
    elif mode != "RGB":
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def good_tree(root: Path, classes=("n01", "n02", "n03"), train_per_class=6, val_per_class=2) -> Path:
    """ROOT/train/<wnid>/*.JPEG and ROOT/val/<wnid>/*.JPEG of valid RGB JPEGs."""
    seed = 0
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for wnid in classes:
            for index in range(count):
                seed += 1
                write(root / split / wnid / f"{wnid}_{index}.JPEG", image_bytes(seed=seed))
    return root
