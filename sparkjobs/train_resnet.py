"""Train a ResNet variant with synchronous SGD on barrier-mode Spark tasks.

    torchonspark train --conf conf/digits.yaml --data ./digits-parquet --output ./run --workers 2
    spark-submit --master yarn ... sparkjobs/train_resnet.py --conf conf/imagenet_resnet_50.yaml \\
        --data hdfs:///data/imagenet-parquet --output hdfs:///runs/resnet50 --workers 16

The driver validates the recipe, the data and the output before anything starts, then launches
``--workers`` barrier tasks with PySpark's TorchDistributor (``local_mode=False``, so even on
``local[*]`` each worker is a real barrier task in an executor). Each task runs ``train_worker``
(train_worker.py) under torchrun. Rank 0's output streams to this console; the run folder gets the
metrics, checkpoints, plots, summary and exported model.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from collections.abc import Sequence
from typing import Any

from pyspark.ml.torch.distributor import TorchDistributor
from pyspark.sql import SparkSession

from torchonspark.sparkjobs.jobcli import job_main
from torchonspark.sparkjobs.preflight import PreflightError, preflight, registered_executor_cores, spark_conf
from torchonspark.sparkjobs.session import get_spark, task_cpus
from torchonspark.sparkjobs.train_args import get_args_parser as _train_parser
from torchonspark.sparkjobs.train_args import job_from_args
from torchonspark.sparkjobs.train_worker import TrainJob, train_worker

GPU_TASK_AMOUNT = "spark.task.resource.gpu.amount"
WORKER_TAIL_LINES = 30


class TrainingFailed(RuntimeError):
    """A worker failed; the message holds the tail of its output."""


def use_gpus(spark: SparkSession, force_gpu: bool, force_cpu: bool) -> bool:
    """GPUs when asked, or when Spark schedules GPUs to tasks (and not told --cpu)."""
    if force_gpu or force_cpu:
        return force_gpu
    return float(spark.conf.get(GPU_TASK_AMOUNT, "0")) > 0


def worker_output_tail(error: BaseException, lines: int = WORKER_TAIL_LINES) -> str:
    """The end of the failed worker's own output, out of the layers Spark and TorchDistributor wrap it in."""
    text = str(error)
    marker = re.search(r"included below: ", text)
    if marker:
        text = text[marker.end() :]
    text = text.split("\n\tat org.apache.spark", 1)[0].split("\nJVM stacktrace:", 1)[0]
    kept = [line for line in text.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def launch(job: TrainJob, workers: int, use_gpu: bool) -> dict[str, Any]:
    """Run the job on ``workers`` barrier tasks; return rank 0's summary."""
    distributor = TorchDistributor(num_processes=workers, local_mode=False, use_gpu=use_gpu)
    try:
        return distributor.run(train_worker, job)
    except Exception as error:  # py4j, PythonException or RuntimeError, depending on where it broke
        raise TrainingFailed(worker_output_tail(error)) from None


def summary_lines(summary: dict[str, Any], output: str) -> list[str]:
    speed = summary["train_images_per_sec"]
    return [
        f"val top-1 {summary['val_top1']:.4f}, top-5 {summary['val_top5']:.4f} after {summary['iterations']} iterations "
        f"({summary['epochs']:.1f} epochs) on {summary['world_size']} {summary['device']} workers, "
        + (f"{speed:.0f} images/s, " if speed is not None else "")
        + f"{summary['wall_seconds']:.0f} s",
        f"run folder: {output} (metrics.jsonl, summary.json, plots/loss.png, plots/accuracy.png, model/)",
    ]


def get_args_parser() -> argparse.ArgumentParser:
    return _train_parser(prog="train_resnet", spark=True)


def run(args: argparse.Namespace) -> int:
    if args.workers < 1:
        raise ValueError(f"--workers must be at least 1; got {args.workers}")
    job = job_from_args(args, threads=1, device="cpu")  # everything that needs no Spark, checked first
    spark = get_spark("torchonspark train", args.master)
    gpu = use_gpus(spark, args.gpu, args.cpu)
    job = dataclasses.replace(job, threads=task_cpus(spark), device="cuda" if gpu else "cpu")
    try:
        preflight(spark_conf(spark), args.workers, gpu, registered_executor_cores(spark))
    except PreflightError as problem:
        print(f"train: {problem}", file=sys.stderr)
        return 2
    try:
        summary = launch(job, args.workers, gpu)
    except TrainingFailed as failure:
        print(f"train: a worker failed; the end of its output:\n{failure}", file=sys.stderr)
        return 1
    print("\n".join(summary_lines(summary, args.output)))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return job_main(get_args_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
