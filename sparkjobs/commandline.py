"""What every command line of the jobs shares: the parser whose usage errors are one line, and the
rule that a job's ValueError is a usage error too (one line on stderr, exit status 2), whether the job
runs as ``torchonspark JOB``, as ``spark-submit sparkjobs/JOB.py`` or as the torchrun worker.
Imports no Spark."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from torchonspark.datasets.hdfs import first_line

Run = Callable[[argparse.Namespace], int]


class PrintAndExit(argparse.Action):
    """A flag that prints what ``text()`` returns and exits 0, before required arguments are checked
    (as argparse's own --version does): ``--list-recipes`` needs no --data or --output."""

    def __init__(self, option_strings: list[str], dest: str, text: Callable[[], str], help: str | None = None) -> None:
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0, help=help)
        self.text = text

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        print(self.text())
        parser.exit(0)


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit status 2, as argparse)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


def run_job(run: Run, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        return run(args)
    except ValueError as error:
        parser.error(str(error))
    except OSError as error:  # a filesystem that refuses (HDFS down, no permission): not a usage error
        print(f"{parser.prog}: {type(error).__name__}: {first_line(error)}", file=sys.stderr)
        return 1


def job_main(get_args_parser: Callable[[], argparse.ArgumentParser], run: Run, argv: Sequence[str] | None) -> int:
    parser = get_args_parser()
    return run_job(run, parser.parse_args(argv), parser)
