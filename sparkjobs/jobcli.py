"""What every job's command line shares: a ValueError from the job is a usage error (one line on
stderr, exit status 2), whether the job runs as ``torchonspark JOB`` or as ``spark-submit JOB.py``."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

Run = Callable[[argparse.Namespace], int]


def run_job(run: Run, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        return run(args)
    except ValueError as error:
        parser.error(str(error))


def job_main(get_args_parser: Callable[[], argparse.ArgumentParser], run: Run, argv: Sequence[str] | None) -> int:
    parser = get_args_parser()
    return run_job(run, parser.parse_args(argv), parser)
