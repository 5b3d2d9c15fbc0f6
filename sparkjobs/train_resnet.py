"""Train a ResNet variant with synchronous SGD on barrier-mode Spark tasks.

    torchonspark train --conf conf/digits.yaml --data ./digits-parquet --output ./run --workers 2
    spark-submit --master yarn ... sparkjobs/train_resnet.py --conf conf/imagenet_resnet_50.yaml \\
        --data hdfs:///data/imagenet-parquet --output hdfs:///runs/resnet50 --workers 16

The driver validates the recipe, the data and the output before anything starts, then launches
``--workers`` barrier tasks with PySpark's TorchDistributor (``local_mode=False``, so even on
``local[*]`` each worker is a real barrier task in an executor). Each task runs the engine's
``train_worker`` under torchrun. Rank 0's output streams to this console; the run folder gets the
metrics, checkpoints, plots, summary and exported model.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from typing import Any

from pyspark.sql import SparkSession

from torchonspark.datasets.outputlock import OutputLock
from torchonspark.sparkjobs.cluster.launch import TrainingFailed, use_gpus
from torchonspark.sparkjobs.cluster.preflight import PreflightError, preflight, registered_executor_cores, spark_conf
from torchonspark.sparkjobs.cluster.session import spark_session, task_cpus
from torchonspark.sparkjobs.cluster.supervisor import Supervisor
from torchonspark.sparkjobs.cluster.yarn import yarn_capacity
from torchonspark.sparkjobs.commandline import job_main
from torchonspark.sparkjobs.engine import job as train_job
from torchonspark.sparkjobs.engine.onnxexport import check_onnx_installed, export_and_check
from torchonspark.sparkjobs.engine.runfolder import RunFolder


def train_summary_lines(summary: dict[str, Any], output_url: str) -> list[str]:
    """What the driver prints when training has finished."""
    speed = summary["train_images_per_sec"]
    return [
        f"val top-1 {summary['val_top1']:.4f}, top-5 {summary['val_top5']:.4f} after {summary['iterations']} iterations "
        f"({summary['epochs']:.1f} epochs) on {summary['world_size']} {summary['device']} workers, "
        + (f"{speed:.0f} images/s, " if speed is not None else "")
        + f"{summary['wall_seconds']:.0f} s",
        f"run folder: {RunFolder.contents(output_url)}",
    ]


def get_args_parser() -> argparse.ArgumentParser:
    return train_job.get_args_parser(prog="train_resnet", spark=True)


def run(args: argparse.Namespace) -> int:
    min_workers = args.workers if args.min_workers is None else args.min_workers
    for flag, value, least in (("--workers", args.workers, 1), ("--max-restarts", args.max_restarts, 0),
                               ("--stall-timeout", args.stall_timeout, 1), ("--min-workers", min_workers, 1),
                               ("--elastic-wait", args.elastic_wait, 0)):
        if value < least:
            raise ValueError(f"{flag} must be at least {least}; got {value}")
    if min_workers > args.workers:
        raise ValueError(f"--min-workers {args.min_workers} is more than --workers {args.workers}")
    if args.onnx:
        check_onnx_installed()
    job = train_job.job_from_args(args, threads=1, device="cpu")  # everything that needs no Spark, checked first
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a stopped driver still stops Spark and its lock
    try:
        with OutputLock(job.output, "--output", take_over=args.take_over_lock), spark_session("torchonspark train", args.master) as spark:
            return _train_on(spark, job, args)
    except KeyboardInterrupt:
        print(f"train: interrupted; the run folder keeps its checkpoints: continue it with --resume ({job.output.url})",
              file=sys.stderr)
        return 130


def _train_on(spark: SparkSession, job: train_job.TrainJob, args: argparse.Namespace) -> int:
    conf = spark_conf(spark)
    gpu = use_gpus(conf, args.gpu, args.cpu)
    job = job.replace(threads=task_cpus(spark), device="cuda" if gpu else "cpu")
    yarn = yarn_capacity(spark) if conf.get("spark.master") == "yarn" else None
    try:
        preflight(conf, args.min_workers or args.workers, gpu, registered_executor_cores(spark), yarn)
    except PreflightError as problem:
        print(f"train: {problem}", file=sys.stderr)
        return 2
    supervisor = Supervisor(spark, job, args.workers, gpu, max_restarts=args.max_restarts, stall_timeout_s=args.stall_timeout,
                            min_workers=args.min_workers, elastic_wait_s=args.elastic_wait)
    try:
        summary = supervisor.run()
    except TrainingFailed as failure:
        if failure.stop is None and failure.tail:
            print(f"train: the end of the failed worker's output:\n{failure.tail}", file=sys.stderr)
        run = job.run_folder()
        if run.log.exists():  # before the verdict, which stays the last line
            print(f"train: the run's log: {run.log.url}; a failed rank's output: {run.rank_logs.url}/", file=sys.stderr)
        print(f"train: a worker failed: {failure.cause}", file=sys.stderr)
        return 1
    print("\n".join(train_summary_lines(summary, job.output.url)))
    if args.onnx:  # model/model.onnx, checked on the val split
        return export_and_check(RunFolder(job.output).model, job.data.join("val"), job.recipe.batch_size,
                                task_cpus(spark), "train")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return job_main(get_args_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
