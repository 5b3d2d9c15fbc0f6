"""``torchonspark``: one command, a subcommand per job. Each job is also a ``sparkjobs/*.py`` file
that spark-submit runs with the same arguments (the same parser serves both)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from torchonspark.sparkjobs import convert_imagenet, demo, doctor, evaluate, features, make_digits, pack_env, train_resnet
from torchonspark.sparkjobs.commandline import OneLineErrorParser, run_job

JOBS = {
    "make-digits": make_digits,
    "convert": convert_imagenet,
    "train": train_resnet,
    "evaluate": evaluate,
    "features": features,
    "demo": demo,
    "pack-env": pack_env,
    "doctor": doctor,
}


def get_args_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="torchonspark", description="TorchOnSpark jobs.")
    subcommands = parser.add_subparsers(dest="job", required=True, metavar="JOB", parser_class=OneLineErrorParser)
    for name, job in JOBS.items():
        job_parser = job.get_args_parser()
        subcommand = subcommands.add_parser(
            name, parents=[job_parser], add_help=False, help=job_parser.description, description=job_parser.description
        )
        subcommand.set_defaults(run=job.run, parser=subcommand)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    return run_job(args.run, args, args.parser)


if __name__ == "__main__":
    sys.exit(main())
