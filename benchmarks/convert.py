"""Conversion speed: images/s per core of the Spark convert job on an ImageNet-like tree, against
the floor of its work (read + full validating decode of every file) in one process, same run.

    .venv/bin/python benchmarks/convert.py [--images 3000] [--cores 2]

Goal (issue 3): pass-through conversion >= 300 images/s per core.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from synthetic_imagenet import jpeg_files, make_tree

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

from torchonspark.datasets.images import convert_image  # noqa: E402
from torchonspark.sparkjobs.convert_imagenet import convert_imagenet  # noqa: E402
from torchonspark.sparkjobs.cluster.session import get_spark  # noqa: E402


def timed_conversion(spark, tree: Path, output: Path, cores: int) -> tuple[int, float]:
    started = time.perf_counter()
    report = convert_imagenet(str(tree), str(output), num_files=4 * cores, spark=spark, overwrite=True)
    seconds = time.perf_counter() - started
    return sum(split["converted"] for split in report["splits"].values()), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "torchonspark-bench")
    args = parser.parse_args()
    tree = make_tree(args.work / "tree", args.images)
    files = jpeg_files(tree, "train") + jpeg_files(tree, "val")

    started = time.perf_counter()
    for path in files:
        convert_image(path.read_bytes())
    floor = len(files) / (time.perf_counter() - started)

    spark = get_spark("bench-convert", f"local[{args.cores}]", {"spark.ui.showConsoleProgress": "false"})
    spark.sparkContext.setLogLevel("ERROR")
    # A cluster job pays the JVM's and Python workers' warm-up once, and each split's fixed costs
    # (job set-up, petastorm's metadata pass) once per thousands of images: warm up untimed, then time
    # a small and a large tree; the difference is the steady per-image rate.
    small = make_tree(args.work / "tree-small", 60)
    convert_imagenet(str(small), str(args.work / "parquet-warm-up"), num_files=2 * args.cores, spark=spark, overwrite=True)
    small_images, small_seconds = timed_conversion(spark, small, args.work / "parquet-small", args.cores)
    images, seconds = timed_conversion(spark, tree, args.work / "parquet", args.cores)
    whole = images / seconds / args.cores
    steady = (images - small_images) / (seconds - small_seconds) / args.cores
    print(f"{images} images ({sum(p.stat().st_size for p in files) / len(files) / 1024:.0f} KiB JPEGs), local[{args.cores}]")
    print(f"floor, 1 process: read + validating decode        {floor:6.0f} images/s")
    print(f"convert job, whole run of {images} images            {whole:6.0f} images/s per core   ({seconds:.1f} s)")
    print(f"convert job, steady rate ({images} minus {small_images} images)  {steady:6.0f} images/s per core   (goal >= 300)")
    print(f"ratio, steady per-core rate / floor               {steady / floor:6.2f}")
    spark.stop()


if __name__ == "__main__":
    main()
