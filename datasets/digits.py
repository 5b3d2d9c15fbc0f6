"""The embedded default data set: scikit-learn's handwritten digits as an ImageNet-style JPEG tree.

1,797 real 8x8 images in 10 classes ship inside scikit-learn (no download). They are upscaled,
written as RGB JPEGs under ``train/<wnid>/`` and ``val/<wnid>/`` with a stratified, deterministic
80/20 split, plus ``synset_words.txt`` naming the classes.
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from . import fs

DEFAULT_SIZE = 32
VAL_FRACTION = 0.2
JPEG_QUALITY = 95
WRITERS = 16  # each file is a few NameNode round trips on HDFS: latency, not bandwidth, bounds the writes
CLASS_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def digit_wnid(digit: int) -> str:
    return f"digit{digit}"


def _jpeg(pixels: np.ndarray, size: int) -> bytes:
    # sklearn's pixels are 0..16 ink; scale to 0..255 and draw dark ink on white, as on paper.
    gray = Image.fromarray((255 - pixels * (255 / 16)).round().astype(np.uint8), mode="L")
    rgb = gray.resize((size, size), Image.Resampling.BICUBIC).convert("RGB")
    buffer = io.BytesIO()
    rgb.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def make_digits(root_url: str, size: int = DEFAULT_SIZE, seed: int = 0, overwrite: bool = False) -> dict[str, int]:
    """Write the digits tree at ROOT; return the number of images per split.

    The tree is written under a temporary name beside ROOT and renamed at the end.
    """
    if size < 8:
        raise ValueError(f"--size must be at least 8 (the digits are 8x8); got {size}")
    root = fs.resolve(root_url)
    fs.refuse_existing(root, overwrite, "ROOT")
    digits = load_digits()
    indices = np.arange(len(digits.target))
    train, val = train_test_split(indices, test_size=VAL_FRACTION, stratify=digits.target, random_state=seed)
    with fs.building(root) as temporary, ThreadPoolExecutor(WRITERS) as writers:
        for split, members in (("train", train), ("val", val)):
            for digit in range(10):
                temporary.fs.create_dir(temporary.join(split, digit_wnid(digit)).path)
            files = [(temporary.join(split, digit_wnid(int(digits.target[i])), f"{i:04d}.JPEG"), digits.images[i]) for i in sorted(members)]
            # Many small files: on HDFS each is a NameNode round trip or two, so they are written side by side.
            list(writers.map(lambda item: item[0].write_bytes(_jpeg(item[1], size)), files))
        words = "".join(f"{digit_wnid(d)} {name}\n" for d, name in enumerate(CLASS_NAMES))
        temporary.join("synset_words.txt").write_bytes(words.encode())
    return {"train": len(train), "val": len(val)}
