"""``torchonspark``: one command, a subcommand per job. Each job is also a ``sparkjobs/*.py`` file
that spark-submit runs with the same arguments (the same parser serves both).

Only the job that runs is imported (with ``-h`` or a mistyped job, all are, to list them): the Spark
jobs import pyspark, which costs ``predict`` or ``make-digits`` seconds they have no use for."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

from torchonspark.netdefs.cli import package_version
from torchonspark.sparkjobs.commandline import OneLineErrorParser, run_job

JOBS = {  # subcommand: module of torchonspark.sparkjobs
    "make-digits": "make_digits",
    "convert": "convert_imagenet",
    "train": "train_resnet",
    "evaluate": "evaluate",
    "features": "features",
    "predict": "predict",
    "onnx": "onnx_export",
    "status": "status",
    "report": "report",
    "demo": "demo",
    "pack-env": "pack_env",
    "doctor": "doctor",
}


def job_module(name: str) -> ModuleType:
    return importlib.import_module(f"torchonspark.sparkjobs.{JOBS[name]}")


def get_args_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command's parser, with every job's subcommand, or with job ``only``'s alone."""
    parser = OneLineErrorParser(prog="torchonspark", description="TorchOnSpark jobs.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    subcommands = parser.add_subparsers(dest="job", required=True, metavar="JOB", parser_class=OneLineErrorParser)
    for name in JOBS if only is None else (only,):
        job = job_module(name)
        job_parser = job.get_args_parser()
        subcommand = subcommands.add_parser(
            name, parents=[job_parser], add_help=False, help=job_parser.description, description=job_parser.description
        )
        subcommand.set_defaults(run=job.run, parser=subcommand)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = get_args_parser(only=argv[0] if argv and argv[0] in JOBS else None)
    args = parser.parse_args(argv)
    return run_job(args.run, args, args.parser)


if __name__ == "__main__":
    sys.exit(main())
