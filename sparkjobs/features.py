"""Features of a split from an exported model, computed on the executors, written as Parquet.

    torchonspark features --model ./run/model --data ./digits-parquet --output ./features

Each row: ``path``, ``label``, ``features`` (the vector the classifier reads: the pooled last stage,
or the FC stage's 4096-wide layer), ``logits``, ``predicted`` (the top-1 class index, as labels.json
numbers them) and ``probability`` (its softmax probability). Written under a temporary name and renamed.
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
from torchonspark.sparkjobs.cluster.session import spark_session, task_cpus
from torchonspark.sparkjobs.cluster.shards import on_shards, shard_count
from torchonspark.sparkjobs.commandline import OneLineErrorParser, job_main
from torchonspark.sparkjobs.engine.export import check_model_folder
from torchonspark.sparkjobs.engine.scoring import shard_batches, top1_predictions
from torchonspark.sparkjobs.evaluate import add_scoring_arguments, check_scoring_arguments

SCHEMA = StructType(
    [
        StructField("path", StringType(), False),
        StructField("label", IntegerType(), False),
        StructField("features", ArrayType(FloatType(), False), False),
        StructField("logits", ArrayType(FloatType(), False), False),
        StructField("predicted", IntegerType(), False),
        StructField("probability", FloatType(), False),
    ]
)


def feature_rows(model: fs.Location, split_data: fs.Location, rank: int, world_size: int, batch_size: int, threads: int) -> Iterator[Row]:
    net, batches = shard_batches(model, split_data, rank, world_size, batch_size, threads)
    with torch.no_grad():
        for images, labels, paths in batches:
            features, logits = net.forward_features(images)
            predicted, probabilities = top1_predictions(logits)
            for path, label, vector, scores, top1, probability in zip(paths, labels.tolist(), features.tolist(), logits.tolist(),
                                                                      predicted.tolist(), probabilities.tolist()):
                yield Row(path=path, label=label, features=vector, logits=scores, predicted=top1, probability=probability)


def _rows_task(model: fs.Location, split_data: fs.Location, batch_size: int, threads: int, rank: int, world_size: int):
    return feature_rows(model, split_data, rank, world_size, batch_size, threads)


def extract_features(spark: SparkSession, model: fs.Location, split_data: fs.Location, output: fs.Location,
                     workers: int | None = None, batch_size: int = 64, overwrite: bool = False) -> dict[str, Any]:
    """Write the features of every image of ``split_data`` as a Parquet folder at ``output``."""
    check_model_folder(model)
    fs.refuse_existing(output, overwrite, "--output")
    workers = shard_count(spark, split_data, workers)
    task = partial(_rows_task, model, split_data, batch_size, task_cpus(spark))
    with fs.building(output) as temporary:
        rows = on_shards(spark, workers, f"features of {split_data.url} from {model.url}", task)
        spark.createDataFrame(rows, SCHEMA).write.mode("overwrite").parquet(fs.to_url(temporary))
    count = spark.read.parquet(fs.to_url(output)).count()
    return {"rows": count, "output": output.url, "workers": workers}


def get_args_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="features", description="Write (path, label, features, logits, predicted, probability) of a split as Parquet.")
    return add_scoring_arguments(parser, "the Parquet folder to write")


def run(args: argparse.Namespace) -> int:
    model, split_data, output = check_scoring_arguments(args)
    with spark_session("torchonspark features", args.master) as spark:
        result = extract_features(spark, model, split_data, output, args.workers, args.batch_size, args.overwrite)
    print(f"{args.split}: {result['rows']} rows of features -> {output.url}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return job_main(get_args_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
