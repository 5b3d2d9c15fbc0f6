"""Failures a restart would only repeat, and how a worker tells its launcher about one.

A lost process, a killed executor or a network that broke are worth a relaunch from the last
checkpoint; a usage error, bad data or a diverged loss are not: the run would fail again the same way.
A worker that meets one of those prints one line, ``STOP_MARKER`` and a JSON record, as its last
output and exits with ``STOP_EXIT_STATUS``; the driver finds the line in the worker's output (Spark
hands the driver its tail) and stops instead of relaunching. Imports no Spark.
"""

from __future__ import annotations

import json
import re

STOP_MARKER = "torchonspark-stop:"
STOP_EXIT_STATUS = 3
_STOP_LINE = re.compile(re.escape(STOP_MARKER) + r" (\{.*\})")


class TrainingStopped(Exception):
    """A failure that a relaunch would repeat; ``kind`` says which ("diverged", "data", "usage")."""

    kind = "stopped"


class Diverged(TrainingStopped):
    kind = "diverged"


class InputRefused(TrainingStopped):
    """Bad data or arguments, found by the worker (its ValueError)."""

    kind = "input"


class StorageFull(TrainingStopped):
    """The run folder has no room (a full disk, an HDFS quota): a relaunch would fail at the same write."""

    kind = "storage"


def stop_line(kind: str, message: str, rank: int, iteration: int | None) -> str:
    return f"{STOP_MARKER} {json.dumps({'kind': kind, 'message': message, 'rank': rank, 'iteration': iteration})}"


def find_stop(output: str) -> dict | None:
    """The stop record a worker printed, if its output holds one (the last, if several ranks did)."""
    found = None
    for match in _STOP_LINE.finditer(output):
        try:
            found = json.loads(match.group(1))
        except ValueError:
            continue
    return found
