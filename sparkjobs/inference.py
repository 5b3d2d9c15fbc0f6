"""What the evaluate and features jobs share: an exported model applied to one shard of a split,
inside a Spark task, and the launch of one such task per shard. The per-shard functions do not
need Spark and are tested alone."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch
from pyspark.sql import SparkSession

from torchonspark.datasets import fs
from torchonspark.datasets.loader import ShardedLoader, list_row_groups
from torchonspark.datasets.transforms import EvalTransform
from torchonspark.sparkjobs.export import REQUIRED_MODEL_FILES, load_model_folder
from torchonspark.sparkjobs.train_worker import count_hits

T = TypeVar("T")


def split_url(data_url: str, split: str) -> str:
    location = fs.resolve(data_url).join(split)
    if not location.is_dir():
        raise ValueError(f"--data {data_url} has no {split}/ split (make one with `torchonspark convert`)")
    return location.url


def check_model(model_url: str) -> None:
    folder = fs.resolve(model_url)
    missing = [name for name in REQUIRED_MODEL_FILES if not folder.join(name).exists()]
    if missing:
        raise ValueError(f"--model {model_url} is not an exported model folder (RUN/model of `torchonspark train`): "
                         f"no {', '.join(missing)}")


def shard_count(spark: SparkSession, split: str, workers: int | None) -> int:
    """One task per core by default; never more tasks than the split has row groups (each shard is
    a set of row groups)."""
    row_groups = len(list_row_groups(fs.resolve(split)))
    if workers is not None and workers > row_groups:
        raise ValueError(f"--workers {workers} is more than the {row_groups} row groups of {split}; use at most {row_groups}")
    return workers or max(1, min(spark.sparkContext.defaultParallelism, row_groups))


def shard_batches(model_url: str, split: str, rank: int, world_size: int, batch_size: int, threads: int) -> tuple[torch.nn.Module, Iterator]:
    torch.set_num_threads(threads)
    net, netdef, _ = load_model_folder(model_url)
    loader = ShardedLoader(split, rank, world_size, batch_size, EvalTransform(netdef.input_size), train=False,
                           decode_threads=threads, with_paths=True)
    return net, iter(loader)


def count_shard(model_url: str, split: str, rank: int, world_size: int, batch_size: int, threads: int) -> dict[str, int]:
    """Top-1 and top-5 hits and images of one shard (centre crops)."""
    net, batches = shard_batches(model_url, split, rank, world_size, batch_size, threads)
    counts = {"images": 0, "top1": 0, "top5": 0}
    with torch.no_grad():
        for images, labels, _ in batches:
            top1, top5 = count_hits(net(images), labels)
            counts["images"] += len(labels)
            counts["top1"] += int(top1)
            counts["top5"] += int(top5)
    return counts


def on_shards(spark: SparkSession, workers: int, description: str, task: Callable[[int, int], Iterator[T]]) -> Any:
    """An RDD with one partition per shard, partition i running ``task(i, workers)``."""
    context = spark.sparkContext
    context.setJobDescription(description)
    return context.parallelize(range(workers), workers).mapPartitionsWithIndex(lambda index, _: task(index, workers))


def add_arguments(parser: argparse.ArgumentParser, output_help: str) -> argparse.ArgumentParser:
    """The arguments evaluate and features share."""
    parser.add_argument("--model", required=True, help="an exported model folder (RUN/model)")
    parser.add_argument("--data", required=True, help="a converted data set")
    parser.add_argument("--output", required=True, help=output_help)
    parser.add_argument("--split", default="val", help="default %(default)s")
    parser.add_argument("--workers", type=int, help="Spark tasks, one shard each (default: one per core)")
    parser.add_argument("--batch-size", type=int, default=64, help="default %(default)s")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    parser.add_argument("--master", help="Spark master when not run by spark-submit (default: local[*])")
    return parser


def check_arguments(args: argparse.Namespace) -> None:
    if args.workers is not None and args.workers < 1 or args.batch_size < 1:
        raise ValueError("--workers and --batch-size must be at least 1")
