"""Checkpoint writes that stop half-way (half the bytes sent to HDFS, the file open) until the test has
injected a fault, then finish: a NameNode restart or a lost DataNode then meets a write in flight
every time, not by luck of timing. As a training worker whose rank 0 writes so (shipped to the
barrier tasks by value: they import no test module), or patched into this process."""

import os
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from torchonspark.datasets import fs
from torchonspark.sparkjobs.engine.worker import train_worker

CHECKPOINT_TEMP = re.compile(r"^\.iter-(\d{8})\.pt\.[0-9a-f]+\.tmp$")  # fs.Location.write_bytes_atomically's name


def pausing_checkpoints(iterations: Iterable[int], handshake: Path, wait_s: float = 120) -> Callable:
    """A worker like train_worker whose rank 0 asks for a fault (handshake/request-N) half-way through
    writing checkpoint N, and goes on once it is done (handshake/done-N), at most wait_s later."""
    iterations = frozenset(iterations)

    def worker(job):
        if os.environ.get("RANK") == "0":
            fs.Location.write_bytes = paused_write_bytes(fs.Location.write_bytes, iterations, Path(handshake), wait_s)
        return train_worker(job)

    return worker


def paused_write_bytes(write_bytes: Callable, iterations: Iterable[int], handshake: Path, wait_s: float = 120) -> Callable:
    """``fs.Location.write_bytes`` that pauses in checkpoint N's write, once for each N of iterations."""
    waiting = set(iterations)

    def paused(location, data):
        match = CHECKPOINT_TEMP.match(location.name)
        if match is None or int(match.group(1)) not in waiting:
            return write_bytes(location, data)
        iteration = int(match.group(1))
        waiting.discard(iteration)  # the write's retry goes straight through
        with location.fs.open_output_stream(location.path, compression=None) as stream:
            stream.write(data[: len(data) // 2])
            stream.flush()
            (handshake / f"request-{iteration}").touch()
            deadline = time.monotonic() + wait_s
            while not (handshake / f"done-{iteration}").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            stream.write(data[len(data) // 2:])

    return paused
