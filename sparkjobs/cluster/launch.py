"""The launch of a training job on barrier-mode Spark tasks, with PySpark's TorchDistributor: one
DDP process per task, rank 0's summary back to the driver, a failed worker's own output pulled out
of the layers Spark wraps it in."""

from __future__ import annotations

import re
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from pyspark.ml.torch.distributor import TorchDistributor

from torchonspark.sparkjobs.engine.job import TrainJob
from torchonspark.sparkjobs.engine.keptlines import KeptLines
from torchonspark.sparkjobs.engine.stops import find_stop
from torchonspark.sparkjobs.engine.worker import train_worker

GPU_TASK_AMOUNT = "spark.task.resource.gpu.amount"
WORKER_TAIL_LINES = 30
KEPT_LINES = 400  # enough for torchrun's failure summaries of many ranks after their last lines


class TrainingFailed(RuntimeError):
    """A training attempt failed: ``cause`` in one line, the tail of the failed worker's output, and
    ``stop``, the record of a failure the worker says a relaunch would repeat (stops.py), if any."""

    def __init__(self, tail: str, stop: dict | None, cause: str) -> None:
        super().__init__(cause)
        self.tail, self.stop, self.cause = tail, stop, cause


def use_gpus(conf: Mapping[str, str], force_gpu: bool, force_cpu: bool) -> bool:
    """GPUs when asked, or when Spark schedules GPUs to tasks (and not told --cpu); ``conf`` is
    Spark's configuration (``preflight.spark_conf``)."""
    if force_gpu or force_cpu:
        return force_gpu
    return float(conf.get(GPU_TASK_AMOUNT, "0") or 0) > 0


@contextmanager
def workers_output_kept(lines: int = KEPT_LINES) -> Iterator[deque]:
    """The last lines the workers print, as they reach this driver. TorchDistributor's tasks stream
    their processes' output to a server in the driver, which writes it to sys.stderr; the exception it
    raises when one fails says only "View stdout logs" (its torchrun wrapper exits 0 either way), so the
    driver keeps the stream to say what happened. It goes on to stdout, where the same training lines
    go under plain torchrun: progress is the job's output, and stderr keeps the driver's own verdict."""
    original = sys.stderr
    kept = KeptLines(sys.stdout, deque(maxlen=lines))
    sys.stderr = kept
    try:
        yield kept.lines
    finally:
        sys.stderr = original


def output_tail(lines: Sequence[str], count: int = WORKER_TAIL_LINES) -> str:
    """The end of the workers' output, without blank lines."""
    kept = [line for line in lines if line.strip()]
    return "\n".join(kept[-count:])


def failure_cause(output: str) -> str:
    """One line naming what ended a barrier attempt, from what Spark and torchrun report: a lost
    executor, else the rank whose process died (by which signal) or exited (with which error)."""
    lost = re.search(r"ExecutorLostFailure \(executor (\S+) exited[^)]*\) Reason: ([^\n]+)", output)
    if lost:
        return f"executor {lost.group(1)} was lost ({lost.group(2).strip().rstrip('.')})"
    failures = []  # (rank, exit status) of each torchrun summary ("Root Cause (first observed failure)")
    for block in output.split("Root Cause (first observed failure):")[1:]:
        rank, status = re.search(r"rank\s*:\s*(\d+)", block), re.search(r"exitcode\s*:\s*(-?\d+)", block)
        if rank and status:
            failures.append((int(rank.group(1)), int(status.group(1))))
    killed = [(rank, status) for rank, status in failures if status < 0]
    if killed:  # the rank that died first is the cause; the others failed because it was gone
        rank, status = killed[0]
        return f"rank {rank} was killed by {_signal_name(-status)}"
    errors = [line.strip() for line in output.splitlines()
              if re.match(r"\s*(\[rank\d+\]:\s*)?\w+(\.\w+)*(Error|Exception)\b", line) and "TorchDistributor failed" not in line and "ChildFailedError" not in line]
    detail = f": {errors[-1][:300]}" if errors else ""
    if failures:
        rank, status = failures[0]
        return f"rank {rank} exited with status {status}{detail}"
    return f"a worker failed{detail}"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def launch(job: TrainJob, workers: int, use_gpu: bool, worker: Callable[[TrainJob], Any] = train_worker) -> dict[str, Any]:
    """Run the job on ``workers`` barrier tasks once, each process running ``worker`` (the training
    worker; tests wrap it to add a fault); return rank 0's summary (supervisor.py relaunches)."""
    distributor = TorchDistributor(num_processes=workers, local_mode=False, use_gpu=use_gpu)
    with workers_output_kept() as lines:
        try:
            return distributor.run(worker, job.replace(task_bound=True))
        except Exception as error:  # py4j, PythonException or RuntimeError, depending on where it broke
            text = "\n".join(lines) + "\n" + str(error)
            stop = find_stop(text)
            raise TrainingFailed(output_tail(lines), stop, stop["message"] if stop else failure_cause(text)) from None
