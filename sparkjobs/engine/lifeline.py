"""A training worker's lifeline to the Spark task that started its torchrun: when that task is gone
(finished, killed by a cancelled stage, its executor or the whole driver ended), the worker and its
torchrun are killed within a second.

Why a process of its own: TorchDistributor starts torchrun without tying it to its task (a killed
task leaves torchrun running with init as its parent), and torchrun starts each worker in a session of
its own, so neither Spark's kill nor YARN's kill of a container's process group reaches them. The
worker's own orphan check (a thread) cannot act when the worker is stopped (SIGSTOP) or holds the GIL
in a hung call; a small separate process can, and SIGKILL ends a stopped process too.

The watcher is this file run by path (``python lifeline.py WORKER TORCHRUN TASK``): it imports no
package, starts in about 20 ms, and ends when its worker does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

POLL_S = 0.5


def start_lifeline() -> subprocess.Popen | None:
    """Watch this worker from a separate process, if it runs under a torchrun whose parent (the
    Spark task) is known; the watcher is in a session of its own, so a signal to the worker's
    group does not end it first."""
    torchrun = os.getppid()
    found = _process(torchrun)
    if found is None:
        return None
    task = found[0]
    # An empty environment: nothing that finds the workers by theirs (TORCHELASTIC_RUN_ID, RANK: a
    # fault sent to "rank 0", a stale-worker sweep) takes the watcher for one of them.
    return subprocess.Popen([sys.executable, "-S", os.path.abspath(__file__), str(os.getpid()), str(torchrun), str(task)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={}, start_new_session=True, close_fds=True)


def _process(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time) of a live process, from /proc; None if it is gone (or a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[1]), int(fields[19])


def watch(worker: int, torchrun: int, task: int, poll_s: float = POLL_S) -> str:
    """Until the worker ends (then nothing to do), or until torchrun is no longer the task's child
    (then kill both). Returns what happened."""
    worker_seen, torchrun_seen = _process(worker), _process(torchrun)
    if worker_seen is None or torchrun_seen is None:
        return "gone before the watch began"
    while True:
        now = _process(worker)
        if now is None or now[1] != worker_seen[1]:
            return "the worker ended"
        launcher = _process(torchrun)
        if launcher is None or launcher[1] != torchrun_seen[1] or launcher[0] != task:
            _kill(worker)
            if launcher is not None and launcher[1] == torchrun_seen[1]:
                _kill(torchrun)
            return "the task was gone: killed the worker and its torchrun"
        time.sleep(poll_s)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:  # ended on its own meanwhile
        pass


if __name__ == "__main__":
    watch(*(int(argument) for argument in sys.argv[1:4]))
