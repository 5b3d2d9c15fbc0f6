"""An ImageNet-like JPEG tree for benchmarks: photo content (scikit-learn's two sample photographs,
randomly cropped, flipped, tinted) at ImageNet's typical 500x375 / 375x500, quality 90."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_sample_images


def make_tree(root: Path, images: int, classes: int = 10, seed: int = 0) -> Path:
    """ROOT/train/<wnid>/*.JPEG (and a small val/) with ``images`` training images; reused if present."""
    marker = root / f".complete-{images}-{classes}-{seed}-v3"
    if marker.exists():
        return root
    if root.exists():
        shutil.rmtree(root)
    rng = np.random.default_rng(seed)
    photos = [Image.fromarray(photo) for photo in load_sample_images().images]
    for split, count in (("train", images), ("val", max(classes, images // 10))):
        for index in range(count):
            wnid = f"n{index % classes:08d}"
            photo = photos[index % len(photos)]
            scale = rng.uniform(0.5, 1.0)
            width, height = int(photo.width * scale), int(photo.height * scale)
            left, top = rng.integers(0, photo.width - width + 1), rng.integers(0, photo.height - height + 1)
            size = (500, 375) if rng.random() < 0.75 else (375, 500)
            picture = photo.crop((left, top, left + width, top + height)).resize(size, Image.Resampling.BILINEAR)
            if rng.random() < 0.5:
                picture = picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            # Fine grain, so files have the detail (and the ~110 KB size) of ImageNet's photographs.
            pixels = np.asarray(picture, np.float32) * rng.uniform(0.8, 1.2, 3) + rng.normal(0, 12, (size[1], size[0], 3))
            tint = np.clip(pixels, 0, 255).astype(np.uint8)
            path = root / split / wnid / f"{wnid}_{index:06d}.JPEG"
            path.parent.mkdir(parents=True, exist_ok=True)
            buffer = io.BytesIO()
            Image.fromarray(tint).save(buffer, format="JPEG", quality=90)
            path.write_bytes(buffer.getvalue())
    marker.touch()
    return root


def jpeg_files(root: Path, split: str = "train") -> list[Path]:
    return sorted((root / split).rglob("*.JPEG"))
