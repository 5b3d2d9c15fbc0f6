"""The seed's augmentation on real JPEG bytes."""

import cv2
import numpy as np
import pytest

from torchonspark.datasets.transforms import EvalTransform, TrainTransform, decode_rgb


def jpeg_of(pixels):
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))  # lossless, exact pixels
    assert ok
    return encoded.tobytes()


def quadrants(height=300, width=400):
    """Left half red, right half blue; a green square in the middle."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, : width // 2] = (255, 0, 0)
    pixels[:, width // 2 :] = (0, 0, 255)
    pixels[height // 2 - 20 : height // 2 + 20, width // 2 - 20 : width // 2 + 20] = (0, 255, 0)
    return pixels


def test_decode_gives_rgb():
    assert tuple(decode_rgb(jpeg_of(quadrants()))[0, 0]) == (255, 0, 0)
    with pytest.raises(ValueError, match="cannot decode"):
        decode_rgb(b"not an image")


def test_eval_transform_takes_the_centre_crop():
    crop = EvalTransform(56)(jpeg_of(quadrants()))
    assert crop.shape == (56, 56, 3)
    assert tuple(crop[28, 28]) == (0, 255, 0)
    assert tuple(crop[28, 2]) == (255, 0, 0) and tuple(crop[28, -3]) == (0, 0, 255)


def test_train_transform_flips_when_drawn():
    data = jpeg_of(quadrants())
    plain = TrainTransform(64)(data, np.array([0.0, 0.5, 0.5, 0.9]))
    flipped = TrainTransform(64)(data, np.array([0.0, 0.5, 0.5, 0.1]))
    assert np.array_equal(plain[:, ::-1], flipped)
    assert tuple(plain[32, 1]) == (255, 0, 0) and tuple(flipped[32, 1]) == (0, 0, 255)


def test_scale_augmentation_spans_the_seeds_range_scaled_to_the_crop():
    transform = TrainTransform(224)
    assert transform.shorter_side_range == (256, 480)
    assert TrainTransform(112).shorter_side_range == (128, 240)
    data = jpeg_of(quadrants(300, 300))
    # The green square is 40 of 300 source pixels: 40*256/300 ~ 34 crop pixels at the smallest scale,
    # 40*480/300 = 64 at the largest.
    smallest = transform(data, np.array([0.0, 0.5, 0.5, 0.9]))
    largest = transform(data, np.array([1.0 - 1e-9, 0.5, 0.5, 0.9]))
    green = lambda crop: int(((crop[:, :, 1] > 200) & (crop[:, :, 0] < 50)).any(axis=0).sum())  # noqa: E731
    assert 32 <= green(smallest) <= 36 and 62 <= green(largest) <= 66


def test_random_crops_stay_inside_the_image_for_extreme_draws():
    data = jpeg_of(quadrants(60, 200))
    for draws in ([0, 0, 0, 0], [0.999, 0.999, 0.999, 0.999], [0.5, 1.0, 1.0, 0.6]):
        assert TrainTransform(32)(data, np.array(draws, dtype=float)).shape == (32, 32, 3)


def test_a_scale_range_below_the_crop_is_refused():
    with pytest.raises(ValueError, match="scale_range"):
        TrainTransform(224, scale_range=(200, 300))
