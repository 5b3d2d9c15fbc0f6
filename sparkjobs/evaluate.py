"""Top-1 / top-5 centre-crop accuracy of an exported model on a split, in parallel on the cluster.

    torchonspark evaluate --model ./run/model --data ./digits-parquet --output ./eval.json

Each Spark task scores one shard of the split (row groups i mod N); the driver adds the counts,
so the result is exact over every image.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from functools import partial
from typing import Any

from pyspark.sql import SparkSession

from torchonspark.datasets import fs
from torchonspark.netdefs.cli import OneLineErrorParser
from torchonspark.sparkjobs.inference import add_arguments, check_arguments, check_model, count_shard, shard_count, on_shards, split_url
from torchonspark.sparkjobs.jobcli import job_main
from torchonspark.sparkjobs.session import get_spark, task_cpus


def _count_task(model_url: str, split: str, batch_size: int, threads: int, rank: int, world_size: int):
    yield count_shard(model_url, split, rank, world_size, batch_size, threads)


def evaluate(spark: SparkSession, model_url: str, data_url: str, split: str = "val", workers: int | None = None,
             batch_size: int = 64) -> dict[str, Any]:
    check_model(model_url)
    split_location = split_url(data_url, split)
    workers = shard_count(spark, split_location, workers)
    task = partial(_count_task, model_url, split_location, batch_size, task_cpus(spark))
    shards = on_shards(spark, workers, f"evaluate {model_url} on {split}", task).collect()
    totals = {key: sum(shard[key] for shard in shards) for key in ("images", "top1", "top5")}
    return {
        "model": model_url,
        "data": data_url,
        "split": split,
        "images": totals["images"],
        "top1": totals["top1"] / totals["images"],
        "top5": totals["top5"] / totals["images"],
        "correct_top1": totals["top1"],
        "correct_top5": totals["top5"],
        "workers": workers,
    }


def get_args_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="evaluate", description="Top-1/top-5 centre-crop accuracy of an exported model on a split.")
    return add_arguments(parser, "where to write the result (JSON)")


def run(args: argparse.Namespace) -> int:
    output = fs.resolve(args.output)
    fs.refuse_existing(output, args.overwrite, "--output")
    check_arguments(args)
    check_model(args.model)  # before Spark starts: a mistake costs a second, not a session
    split_url(args.data, args.split)
    result = evaluate(get_spark("torchonspark evaluate", args.master), args.model, args.data, args.split,
                      args.workers, args.batch_size)
    output.write_text_atomically(json.dumps(result, indent=2) + "\n")
    print(f"{args.split}: top-1 {result['top1']:.4f}, top-5 {result['top5']:.4f} over {result['images']} images -> {args.output}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return job_main(get_args_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
