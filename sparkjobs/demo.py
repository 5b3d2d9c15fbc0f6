"""The main job on its embedded default: digits -> Parquet -> 2 barrier workers -> evaluate.

    torchonspark demo ./demo-out          (what `make demo` runs)

Everything runs on ``local[*]`` (or the master spark-submit gives) with real Spark, petastorm and
torch.distributed; the data is scikit-learn's handwritten digits, so nothing is downloaded.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from pyspark.sql import SparkSession

from torchonspark.datasets import fs
from torchonspark.datasets.digits import make_digits
from torchonspark.sparkjobs.cluster.launch import TrainingFailed, launch
from torchonspark.sparkjobs.cluster.session import spark_session, task_cpus
from torchonspark.sparkjobs.commandline import OneLineErrorParser, job_main
from torchonspark.sparkjobs.convert_imagenet import convert_imagenet, convert_report_lines
from torchonspark.sparkjobs.engine import job as train_job
from torchonspark.sparkjobs.engine.recipe import load_recipe
from torchonspark.sparkjobs.engine.runfolder import MODEL, PLOT_FILES, PLOTS
from torchonspark.sparkjobs.engine.scoring import dataset_split
from torchonspark.sparkjobs.evaluate import score_split, write_evaluation
from torchonspark.sparkjobs.train_resnet import train_summary_lines

DEMO_WORKERS = 2


def get_args_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="demo", description="Digits -> Parquet -> distributed training -> evaluation, on Spark.")
    parser.add_argument("output", metavar="DIR", help="folder for the data, the run and the evaluation")
    parser.add_argument("--workers", type=int, default=DEMO_WORKERS, help="training workers (default %(default)s)")
    parser.add_argument("--recipe", "--conf", dest="recipe", default="digits", metavar="NAME|FILE",
                        help="training recipe, packaged (by name) or a file (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing DIR")
    parser.add_argument("--master", help="Spark master when not run by spark-submit (default: local[*])")
    return parser


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    root = fs.resolve(args.output)
    fs.refuse_existing(root, args.overwrite, "DIR")
    load_recipe(args.recipe)  # a bad recipe is refused before DIR is touched
    if root.exists():
        root.fs.delete_dir(root.path)
    root.fs.create_dir(root.path)
    with spark_session("torchonspark demo", args.master) as spark:
        status = _demo(spark, root, args)
    print(f"demo took {time.monotonic() - started:.0f} s")
    return status


def _demo(spark: SparkSession, root: fs.Location, args: argparse.Namespace) -> int:
    digits, parquet, run_folder, result = (root.join(name) for name in ("digits", "digits-parquet", "run", "eval.json"))
    print(f"1/4 make-digits {digits.url}")
    make_digits(digits.url)
    print(f"2/4 convert {digits.url} {parquet.url}")
    print("\n".join(convert_report_lines(convert_imagenet(digits.url, parquet.url, spark=spark))))
    print(f"3/4 train on {args.workers} barrier workers -> {run_folder.url}")
    train_args = train_job.get_args_parser().parse_args(
        ["--recipe", args.recipe, "--data", parquet.url, "--output", run_folder.url])
    job = train_job.job_from_args(train_args, threads=task_cpus(spark), device="cpu")
    try:
        summary = launch(job, args.workers, use_gpu=False)
    except TrainingFailed as failure:
        print(f"demo: a training worker failed; the end of its output:\n{failure}", file=sys.stderr)
        return 1
    print("\n".join(train_summary_lines(summary, run_folder.url)))
    print(f"4/4 evaluate {run_folder.join(MODEL).url} on the val split")
    evaluation = score_split(spark, run_folder.join(MODEL), dataset_split(parquet, "val"))
    heat_map, _ = write_evaluation(evaluation, result)
    summary = evaluation.summary
    print(f"val top-1 {summary['top1']:.4f} ({summary['correct_top1']}/{summary['images']}), "
          f"top-5 {summary['top5']:.4f} -> {result.url} (confusion matrix: {heat_map.url})")
    plots = ", ".join(run_folder.join(PLOTS, name).url for name in PLOT_FILES)
    print(f"plots: {plots}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return job_main(get_args_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
