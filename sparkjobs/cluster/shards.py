"""Plain (not barrier) Spark tasks over the shards of a data set's split: one partition per shard,
partition i running a function of (i, number of shards). Evaluate and features use it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from pyspark.sql import SparkSession

from torchonspark.datasets import fs
from torchonspark.datasets.loader import list_row_groups

T = TypeVar("T")


def shard_count(spark: SparkSession, split_data: fs.Location, workers: int | None) -> int:
    """One task per core by default; never more tasks than the split has row groups (each shard is
    a set of row groups)."""
    row_groups = len(list_row_groups(split_data))
    if workers is not None and workers > row_groups:
        raise ValueError(f"--workers {workers} is more than the {row_groups} row groups of {split_data.url}; use at most {row_groups}")
    return workers or max(1, min(spark.sparkContext.defaultParallelism, row_groups))


def on_shards(spark: SparkSession, workers: int, description: str, task: Callable[[int, int], Iterator[T]]) -> Any:
    """An RDD with one partition per shard, partition i running ``task(i, workers)``."""
    context = spark.sparkContext
    context.setJobDescription(description)
    return context.parallelize(range(workers), workers).mapPartitionsWithIndex(lambda index, _: task(index, workers))
