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
from torchonspark.sparkjobs.cluster.session import spark_session, task_cpus
from torchonspark.sparkjobs.cluster.shards import on_shards, shard_count
from torchonspark.sparkjobs.commandline import OneLineErrorParser, job_main
from torchonspark.sparkjobs.engine.export import check_model_folder
from torchonspark.sparkjobs.engine.scoring import count_shard, dataset_split


def add_scoring_arguments(parser: argparse.ArgumentParser, output_help: str) -> argparse.ArgumentParser:
    """The arguments of the jobs that apply an exported model to a split (evaluate, features)."""
    parser.add_argument("--model", required=True, help="an exported model folder (RUN/model)")
    parser.add_argument("--data", required=True, help="a converted data set")
    parser.add_argument("--output", required=True, help=output_help)
    parser.add_argument("--split", default="val", help="default %(default)s")
    parser.add_argument("--workers", type=int, help="Spark tasks, one shard each (default: one per core)")
    parser.add_argument("--batch-size", type=int, default=64, help="default %(default)s")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    parser.add_argument("--master", help="Spark master when not run by spark-submit (default: local[*])")
    return parser


def check_scoring_arguments(args: argparse.Namespace) -> tuple[fs.Location, fs.Location, fs.Location]:
    """The model folder, the split and the output, checked before Spark starts (a mistake costs a
    second, not a session)."""
    if args.workers is not None and args.workers < 1 or args.batch_size < 1:
        raise ValueError("--workers and --batch-size must be at least 1")
    model = fs.resolve(args.model)
    check_model_folder(model)
    data = fs.resolve(args.data)
    check_same_classes(model, data)
    split_data = dataset_split(data, args.split)
    output = fs.resolve(args.output)
    fs.refuse_existing(output, args.overwrite, "--output")
    return model, split_data, output


def check_same_classes(model: fs.Location, data: fs.Location) -> None:
    """The model's classes must be the data's, in the same order: a label is an index into both
    labels.json files. The same wnids in another order are refused, not remapped: convert sorts the
    wnids, so another order means a data set from another tool or a hand-edited file, whose labels
    cannot be trusted to follow its labels.json either."""
    if not data.join("labels.json").exists():
        raise ValueError(f"--data {data.url} has no labels.json: is it the OUTPUT of `torchonspark convert`?")
    ours = [entry["wnid"] for entry in json.loads(model.join("labels.json").read_bytes())]
    theirs = [entry["wnid"] for entry in json.loads(data.join("labels.json").read_bytes())]
    if ours == theirs:
        return
    if sorted(ours) == sorted(theirs):
        raise ValueError(f"--model {model.url} and --data {data.url} have the same {len(ours)} classes in another order "
                         "(labels.json); the labels would be compared wrongly")
    missing, extra = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
    raise ValueError(f"--model {model.url} was trained on {len(ours)} classes and --data {data.url} has {len(theirs)}: "
                     f"{len(missing)} of the model's are not in the data (e.g. {missing[:3]}), {len(extra)} of the data's "
                     f"are not in the model (e.g. {extra[:3]})")


def _count_task(model: fs.Location, split_data: fs.Location, batch_size: int, threads: int, rank: int, world_size: int):
    yield count_shard(model, split_data, rank, world_size, batch_size, threads)


def evaluate(spark: SparkSession, model: fs.Location, split_data: fs.Location, workers: int | None = None,
             batch_size: int = 64) -> dict[str, Any]:
    """Top-1/top-5 of the model folder ``model`` over the split folder ``split_data``."""
    check_model_folder(model)
    workers = shard_count(spark, split_data, workers)
    task = partial(_count_task, model, split_data, batch_size, task_cpus(spark))
    shards = on_shards(spark, workers, f"evaluate {model.url} on {split_data.url}", task).collect()
    totals = {key: sum(shard[key] for shard in shards) for key in ("images", "top1", "top5")}
    return {
        "model": model.url,
        "data": split_data.parent().url,
        "split": split_data.name,
        "images": totals["images"],
        "top1": totals["top1"] / totals["images"],
        "top5": totals["top5"] / totals["images"],
        "correct_top1": totals["top1"],
        "correct_top5": totals["top5"],
        "workers": workers,
    }


def get_args_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="evaluate", description="Top-1/top-5 centre-crop accuracy of an exported model on a split.")
    return add_scoring_arguments(parser, "where to write the result (JSON)")


def run(args: argparse.Namespace) -> int:
    model, split_data, output = check_scoring_arguments(args)
    with spark_session("torchonspark evaluate", args.master) as spark:
        result = evaluate(spark, model, split_data, args.workers, args.batch_size)
    output.write_text_atomically(json.dumps(result, indent=2) + "\n")
    print(f"{args.split}: top-1 {result['top1']:.4f}, top-5 {result['top5']:.4f} over {result['images']} images -> {output.url}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return job_main(get_args_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
