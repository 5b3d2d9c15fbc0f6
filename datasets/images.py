"""The converter's work on one file: validate it, keep it as it is when possible, fix it when needed.

A valid RGB JPEG is stored byte for byte. Valid images in other forms (grayscale, CMYK, palette,
alpha, PNG or other formats under a .JPEG name) are converted to RGB and re-encoded as JPEG. Anything
that does not decode completely is refused with a reason. Pillow does the validation because it
raises on a truncated JPEG, where OpenCV only warns and returns a partly grey image.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageFile, UnidentifiedImageError

# A truncated file must fail, not load half an image.
ImageFile.LOAD_TRUNCATED_IMAGES = False

DEFAULT_JPEG_QUALITY = 90
_FIX_BY_MODE = {"L": "grayscale", "LA": "alpha", "CMYK": "cmyk", "P": "palette", "RGBA": "alpha", "I;16": "16-bit"}


class BadImage(ValueError):
    """The file is not an image we can convert; the message is the reason recorded in the report."""


@dataclass(frozen=True)
class ConvertedImage:
    jpeg: bytes
    height: int  # of the source image
    width: int
    fix: str | None  # None when the source was already a valid RGB JPEG
    resized: bool


def _open_fully(data: bytes) -> Image.Image:
    if not data:
        raise BadImage("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            image.load()
    except UnidentifiedImageError:
        raise BadImage("not an image (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise BadImage(f"broken image ({error})") from None
    if image.width < 1 or image.height < 1:
        raise BadImage(f"image has no pixels ({image.width}x{image.height})")
    return image


def _fix_kind(image: Image.Image) -> str | None:
    if image.format != "JPEG":
        return (image.format or "unknown format").lower()
    if image.mode == "RGB":
        return None
    return _FIX_BY_MODE.get(image.mode, f"mode {image.mode}")


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent pixels become white, as a viewer shows them, not whatever colour they hid.
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        return image.point(lambda v: v / 256).convert("L").convert("RGB")
    return image.convert("RGB")


def _encode_jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def resized_size(height: int, width: int, shorter: int) -> tuple[int, int]:
    """(height, width) with the shorter side ``shorter``, aspect kept."""
    scale = shorter / min(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def convert_image(data: bytes, resize_shorter: int | None = None, quality: int = DEFAULT_JPEG_QUALITY) -> ConvertedImage:
    """Validate one file's bytes and return what to store; raise BadImage with the reason otherwise.

    ``resize_shorter`` shrinks images whose shorter side is longer (never enlarges).
    """
    image = _open_fully(data)
    height, width = image.height, image.width
    fix = _fix_kind(image)
    resize = resize_shorter is not None and min(height, width) > resize_shorter
    if fix is None and not resize:
        return ConvertedImage(data, height, width, None, False)
    rgb = _to_rgb(image)
    if resize:
        new_height, new_width = resized_size(height, width, resize_shorter)
        rgb = rgb.resize((new_width, new_height), Image.Resampling.BICUBIC, reducing_gap=3.0)
    return ConvertedImage(_encode_jpeg(rgb, quality), height, width, fix, resize)
