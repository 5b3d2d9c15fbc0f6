"""Training reader speed: images/s per core of the project's loader (petastorm Parquet, 224 crops with
the seed's scale augmentation) against torchvision ImageFolder + DataLoader with the same transforms on
the same JPEG tree, same run, same number of cores.

    .venv/bin/python benchmarks/reader.py [--images 3000] [--cores 2]   (run benchmarks/convert.py first)

Goal (issue 3): ratio >= 1.0.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torchvision import datasets as tv_datasets
from torchvision.transforms import v2

from torchonspark.datasets import fs
from torchonspark.datasets.loader import ShardedLoader
from torchonspark.datasets.transforms import IMAGENET_MEAN, IMAGENET_STD, SEED_SCALE_RANGE, TrainTransform

BATCH = 64
CROP = 224


def images_per_second(batches, epochs: int = 2) -> float:
    """Rate of the last epoch (the first warms up worker processes and caches)."""
    for _ in range(epochs):
        started, images = time.perf_counter(), 0
        for batch in batches():
            images += len(batch[1])
        rate = images / (time.perf_counter() - started)
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "torchonspark-bench")
    args = parser.parse_args()
    parquet = args.work / "parquet" / "train"
    if not parquet.exists():
        raise SystemExit(f"{parquet} is missing: run benchmarks/convert.py first")
    torch.set_num_threads(1)

    loader = ShardedLoader(fs.resolve(str(parquet)), 0, 1, BATCH, TrainTransform(CROP), train=True, decode_threads=args.cores)
    epoch = iter(range(100))

    def ours():
        loader.set_epoch(next(epoch))
        return loader

    transform = v2.Compose(
        [
            v2.PILToTensor(),
            v2.RandomShortestSize(min_size=list(range(SEED_SCALE_RANGE[0], SEED_SCALE_RANGE[1] + 1)), antialias=True),
            v2.RandomCrop(CROP),
            v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    folder = tv_datasets.ImageFolder(str(args.work / "tree" / "train"), transform=transform)
    baseline_loader = DataLoader(
        folder, batch_size=BATCH, shuffle=True, num_workers=args.cores, drop_last=True, persistent_workers=True
    )
    ours_rate = images_per_second(ours) / args.cores
    baseline_rate = images_per_second(lambda: baseline_loader) / args.cores
    print(f"{len(folder)} images, batch {BATCH}, {CROP} crops, {args.cores} cores")
    print(f"torchvision ImageFolder + DataLoader ({args.cores} workers)  {baseline_rate:6.0f} images/s per core")
    print(f"ShardedLoader ({args.cores} decode threads)                  {ours_rate:6.0f} images/s per core")
    print(f"ratio                                               {ours_rate / baseline_rate:6.2f}   (goal >= 1.0)")


if __name__ == "__main__":
    main()
