"""Decoding and the seed's augmentation, on one image's JPEG bytes.

Training, as the seed trained: scale augmentation (shorter side resized to a random size in
[256, 480] for 224 crops, proportionally for other crops), a random crop, a random horizontal flip,
no colour augmentation. Evaluation: shorter side to 256/224 of the crop, centre crop.

Both are done as one crop of the source region followed by one resize to the crop size (what
torchvision's RandomResizedCrop does), which gives the same pixels as resizing the whole image and
then cropping, at a fraction of the cost. OpenCV decodes and resizes: it was the fastest decoder
measured here (benchmarks/decode.py) and releases the GIL, so a thread pool decodes in parallel.
Random draws are made by the caller and passed in, so results do not depend on thread scheduling.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SEED_CROP = 224
SEED_SCALE_RANGE = (256, 480)  # shorter side before a 224 crop
EVAL_RESIZE_RATIO = 256 / 224
DRAWS_PER_IMAGE = 4  # scale, crop top, crop left, flip

cv2.setNumThreads(1)  # parallelism comes from the loader's threads, one image each


def _decode_bgr(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("cannot decode image bytes")
    return image


def decode_rgb(data: bytes) -> np.ndarray:
    """JPEG (or any OpenCV-readable) bytes -> HxWx3 uint8 RGB."""
    return cv2.cvtColor(_decode_bgr(data), cv2.COLOR_BGR2RGB)


def _crop_resize_rgb(bgr: np.ndarray, top: float, left: float, side: float, size: int) -> np.ndarray:
    """Crop the square of ``side`` source pixels at (top, left), resize it to ``size``, make it RGB
    (after the crop: converting the small crop costs less than converting the whole image)."""
    y0, x0 = int(round(top)), int(round(left))
    extent = max(1, int(round(side)))
    region = bgr[y0 : y0 + extent, x0 : x0 + extent]
    shrinking = extent > size
    crop = cv2.resize(region, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)


@dataclass(frozen=True)
class TrainTransform:
    """Scale augmentation + random crop + random horizontal flip (``mirror``)."""

    crop_size: int
    scale_range: tuple[int, int] | None = None  # shorter side range; default: the seed's, scaled to crop_size
    mirror: bool = True  # Caffe's name; off for data where left and right differ (digits)

    def __post_init__(self) -> None:
        low, high = self.shorter_side_range
        if self.crop_size < 1 or not self.crop_size <= low <= high:
            raise ValueError(
                f"scale_range must satisfy crop_size <= low <= high; got crop_size={self.crop_size}, range=({low}, {high})"
            )

    @property
    def shorter_side_range(self) -> tuple[float, float]:
        if self.scale_range is not None:
            return float(self.scale_range[0]), float(self.scale_range[1])
        ratio = self.crop_size / SEED_CROP
        return SEED_SCALE_RANGE[0] * ratio, SEED_SCALE_RANGE[1] * ratio

    def __call__(self, data: bytes, draws: np.ndarray) -> np.ndarray:
        """``draws``: DRAWS_PER_IMAGE uniform numbers in [0, 1)."""
        image = _decode_bgr(data)
        height, width = image.shape[:2]
        low, high = self.shorter_side_range
        shorter = low + draws[0] * (high - low)
        side = self.crop_size * min(height, width) / shorter  # the crop, in source pixels
        top = draws[1] * (height - side)
        left = draws[2] * (width - side)
        crop = _crop_resize_rgb(image, top, left, side, self.crop_size)
        return crop[:, ::-1] if self.mirror and draws[3] < 0.5 else crop


@dataclass(frozen=True)
class EvalTransform:
    """Shorter side to 256/224 of the crop, centre crop (the seed's top-1 centre crop)."""

    crop_size: int

    def __post_init__(self) -> None:
        if self.crop_size < 1:
            raise ValueError(f"crop_size must be positive; got {self.crop_size}")

    def __call__(self, data: bytes, draws: np.ndarray | None = None) -> np.ndarray:
        image = _decode_bgr(data)
        height, width = image.shape[:2]
        side = min(height, width) / EVAL_RESIZE_RATIO
        return _crop_resize_rgb(image, (height - side) / 2, (width - side) / 2, side, self.crop_size)
