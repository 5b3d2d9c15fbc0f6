"""The training worker under plain torchrun, without Spark or a JVM (a GPU machine, say):

    torchrun --nproc_per_node=2 -m torchonspark.sparkjobs.train_worker \\
        --conf conf/digits.yaml --data ./digits-parquet --output ./run

The same arguments as ``torchonspark train`` less the Spark ones, plus ``--device`` and ``--threads``.
Each process runs the engine's ``train_worker`` (engine/worker.py), as each barrier task does under
Spark. This module must not import pyspark.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import torch

from torchonspark.datasets.outputlock import OutputLock, OutputLocked
from torchonspark.sparkjobs.engine.job import get_args_parser, job_from_args
from torchonspark.sparkjobs.engine.processexit import end_without_finalizing, exit_status
from torchonspark.sparkjobs.engine.worker import train_worker


def main(argv: Sequence[str] | None = None) -> int:
    parser = get_args_parser(prog="torchonspark.sparkjobs.train_worker", spark=False)
    args = parser.parse_args(argv)
    try:
        # Only rank 0 may judge the output folder: it creates it, and another rank checking later would
        # find it there and refuse.
        job = job_from_args(args, threads=args.threads or torch.get_num_threads(), device=args.device,
                            check_output_folder=os.environ.get("RANK", "0") == "0")
    except ValueError as error:
        parser.error(str(error))
    end_without_finalizing()  # a process of its own, whose gloo threads would abort it at exit (processexit.py)
    if os.environ.get("RANK", "0") != "0":
        train_worker(job)
        return 0
    try:  # rank 0 writes the run folder, so it holds its lock
        with OutputLock(job.output, "--output", take_over=args.take_over_lock):
            train_worker(job)
    except OutputLocked as locked:
        exit_status(2)
        parser.error(str(locked))
    return 0


if __name__ == "__main__":
    sys.exit(main())
