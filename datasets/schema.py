"""The petastorm Unischema of a converted image data set, and how a row is built.

``image`` uses petastorm's ``CompressedImageCodec('jpeg')`` so that ``petastorm.make_reader`` decodes
it into an RGB array for anyone; the bytes we store are the source file's own JPEG bytes whenever
they are already a valid RGB JPEG (no generation loss), so rows are built here rather than through
``dict_to_spark_row``, which would re-encode a decoded array.
"""

from __future__ import annotations

import warnings

import numpy as np
from petastorm.codecs import CompressedImageCodec, ScalarCodec
from petastorm.unischema import Unischema, UnischemaField
from pyspark.sql import Row
from pyspark.sql.types import IntegerType, StringType

from .images import DEFAULT_JPEG_QUALITY


# petastorm 0.12 calls pyarrow APIs that pyarrow 14 deprecates (the reason pyarrow is pinned below
# 15); those warnings say nothing a user can act on.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"petastorm(\.|$)")

ImageSchema = Unischema(
    "ImageSchema",
    [
        UnischemaField("image", np.uint8, (None, None, 3), CompressedImageCodec("jpeg", quality=DEFAULT_JPEG_QUALITY), False),
        UnischemaField("label", np.int32, (), ScalarCodec(IntegerType()), False),
        UnischemaField("wnid", np.str_, (), ScalarCodec(StringType()), False),
        UnischemaField("path", np.str_, (), ScalarCodec(StringType()), False),
        UnischemaField("height", np.int32, (), ScalarCodec(IntegerType()), False),
        UnischemaField("width", np.int32, (), ScalarCodec(IntegerType()), False),
    ],
)
FIELD_NAMES = list(ImageSchema.fields)


def image_row(jpeg: bytes, label: int, wnid: str, path: str, height: int, width: int) -> Row:
    """A Spark row of ImageSchema holding already-encoded JPEG bytes; height and width are the
    source image's size."""
    values = {
        ImageSchema.image.name: bytearray(jpeg),
        ImageSchema.label.name: int(label),
        ImageSchema.wnid.name: wnid,
        ImageSchema.path.name: path,
        ImageSchema.height.name: int(height),
        ImageSchema.width.name: int(width),
    }
    row = Row(*(values[name] for name in FIELD_NAMES))
    row.__fields__ = FIELD_NAMES  # positional values, named in the schema's order (as petastorm does)
    return row
