"""How a torch.distributed worker process ends: at once, with its status, without Python's finalization.

Why: once DDP has been built, torch 2.14's gloo process group outlives ``destroy_process_group`` (a
reference stays in C++), so its two run-loop threads are still running when the interpreter exits.
Such a thread releases the last collective's work object (the final barrier, which holds the
all-reduces before it) after the main thread has already returned from the barrier. When that
happens during finalization, the work's thread-local state drops a Python reference, the thread
cannot take the GIL any more, CPython ends it with ``pthread_exit``, and the unwind through the
``noexcept`` destructor calls ``std::terminate``: "terminate called without an active exception",
SIGABRT, a failed worker after a finished run. Seen in one exit in three on a loaded 2-core machine
(benchmarks/worker_exit.py reproduces it with a bare DDP script; a gdb backtrace shows
``ProcessGroupGloo::runLoop -> ~AsyncBarrierWork -> ~ThreadLocalState -> take_gil -> pthread_exit``).

No torch call stops those threads (``ProcessGroup.shutdown``/``abort`` leave them running), so the
worker ends the way a forked worker does: ``os._exit`` with the status it would have had, after the
work is done, its output flushed and its own clean-up run. The handler is registered when the
worker starts, so it runs after every exit handler registered later (torch's, TensorBoard's); the
ones registered at import time are replaced by flushing stdio and logging here.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
from types import TracebackType

_status: int | None = None
_installed = False


def end_without_finalizing() -> None:
    """From now on, this process ends with ``os._exit`` at interpreter exit: status 0 unless
    ``exit_status`` says otherwise or an exception reaches the top (1, after Python printed it)."""
    global _installed, _status
    _status = 0
    if _installed:
        return
    _installed = True
    previous_hook = sys.excepthook

    def note_failure(kind: type[BaseException], value: BaseException, traceback: TracebackType | None) -> None:
        exit_status(1)
        previous_hook(kind, value, traceback)

    sys.excepthook = note_failure
    atexit.register(_exit_now)


def exit_status(status: int) -> None:
    """The status the process ends with (a worker that raises SystemExit(status) says it here first:
    SystemExit reaches no hook)."""
    global _status
    if _status is not None:
        _status = status


def _exit_now() -> None:
    if _status is None:
        return
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # closed, or a pipe whose reader is gone
            pass
    os._exit(_status)
