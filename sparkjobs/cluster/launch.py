"""The launch of a training job on barrier-mode Spark tasks, with PySpark's TorchDistributor: one
DDP process per task, rank 0's summary back to the driver, a failed worker's own output pulled out
of the layers Spark wraps it in."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pyspark.ml.torch.distributor import TorchDistributor

from torchonspark.sparkjobs.engine.job import TrainJob
from torchonspark.sparkjobs.engine.worker import train_worker

GPU_TASK_AMOUNT = "spark.task.resource.gpu.amount"
WORKER_TAIL_LINES = 30


class TrainingFailed(RuntimeError):
    """A worker failed; the message holds the tail of its output."""


def use_gpus(conf: Mapping[str, str], force_gpu: bool, force_cpu: bool) -> bool:
    """GPUs when asked, or when Spark schedules GPUs to tasks (and not told --cpu); ``conf`` is
    Spark's configuration (``preflight.spark_conf``)."""
    if force_gpu or force_cpu:
        return force_gpu
    return float(conf.get(GPU_TASK_AMOUNT, "0") or 0) > 0


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
    """Run the job on ``workers`` barrier tasks; return rank 0's summary. An unfinished replacement
    of an existing run (``--overwrite``) is removed when a worker fails."""
    distributor = TorchDistributor(num_processes=workers, local_mode=False, use_gpu=use_gpu)
    try:
        return distributor.run(train_worker, job)
    except Exception as error:  # py4j, PythonException or RuntimeError, depending on where it broke
        job.run_folder().discard()
        raise TrainingFailed(worker_output_tail(error)) from None
