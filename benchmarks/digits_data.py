"""The digits set converted once for the worker benchmarks (reused while present)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


def digits_parquet(work: Path) -> Path:
    output = work / "digits-parquet"
    if (output / "labels.json").exists():
        return output
    from torchonspark.datasets.digits import make_digits
    from torchonspark.sparkjobs.convert_imagenet import convert_imagenet
    from torchonspark.sparkjobs.cluster.session import get_spark

    if not (work / "digits").exists():
        make_digits(str(work / "digits"))
    spark = get_spark("bench-digits", "local[2]", {"spark.ui.showConsoleProgress": "false"})
    convert_imagenet(str(work / "digits"), str(output), spark=spark)
    spark.stop()
    return output
