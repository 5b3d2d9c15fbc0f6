"""Features of a split from an exported model, computed on the executors, written as Parquet.

    torchonspark features --model ./run/model --data ./digits-parquet --output ./features

Each row: ``path``, ``label``, ``features`` (the vector the classifier reads: the pooled last stage,
or the FC stage's 4096-wide layer) and ``logits``. Written under a temporary name and renamed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any

import torch
from pyspark.sql import Row, SparkSession
from pyspark.sql.types import ArrayType, FloatType, IntegerType, StringType, StructField, StructType

from torchonspark.datasets import fs
from torchonspark.netdefs.cli import OneLineErrorParser
from torchonspark.sparkjobs.inference import add_arguments, check_arguments, check_model, shard_count, on_shards, shard_batches, split_url
from torchonspark.sparkjobs.jobcli import job_main
from torchonspark.sparkjobs.session import get_spark, task_cpus

SCHEMA = StructType(
    [
        StructField("path", StringType(), False),
        StructField("label", IntegerType(), False),
        StructField("features", ArrayType(FloatType(), False), False),
        StructField("logits", ArrayType(FloatType(), False), False),
    ]
)


def feature_rows(model_url: str, split: str, rank: int, world_size: int, batch_size: int, threads: int) -> Iterator[Row]:
    net, batches = shard_batches(model_url, split, rank, world_size, batch_size, threads)
    with torch.no_grad():
        for images, labels, paths in batches:
            features, logits = net.forward_features(images)
            for path, label, vector, scores in zip(paths, labels.tolist(), features.tolist(), logits.tolist()):
                yield Row(path=path, label=label, features=vector, logits=scores)


def _rows_task(model_url: str, split: str, batch_size: int, threads: int, rank: int, world_size: int):
    return feature_rows(model_url, split, rank, world_size, batch_size, threads)


def extract_features(spark: SparkSession, model_url: str, data_url: str, output_url: str, split: str = "val",
                     workers: int | None = None, batch_size: int = 64, overwrite: bool = False) -> dict[str, Any]:
    check_model(model_url)
    split_location = split_url(data_url, split)
    target = fs.resolve(output_url)
    fs.refuse_existing(target, overwrite, "--output")
    workers = shard_count(spark, split_location, workers)
    task = partial(_rows_task, model_url, split_location, batch_size, task_cpus(spark))
    with fs.building(target) as temporary:
        rows = on_shards(spark, workers, f"features of {split} from {model_url}", task)
        spark.createDataFrame(rows, SCHEMA).write.mode("overwrite").parquet(fs.to_url(temporary))
    count = spark.read.parquet(fs.to_url(target)).count()
    return {"rows": count, "output": output_url, "workers": workers}


def get_args_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="features", description="Write (path, label, features, logits) of a split as Parquet.")
    return add_arguments(parser, "the Parquet folder to write")


def run(args: argparse.Namespace) -> int:
    check_arguments(args)
    check_model(args.model)  # before Spark starts: a mistake costs a second, not a session
    split_url(args.data, args.split)
    fs.refuse_existing(fs.resolve(args.output), args.overwrite, "--output")
    result = extract_features(get_spark("torchonspark features", args.master), args.model, args.data, args.output,
                              args.split, args.workers, args.batch_size, args.overwrite)
    print(f"{args.split}: {result['rows']} rows of features -> {args.output}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return job_main(get_args_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
