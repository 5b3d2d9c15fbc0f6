"""One writer per output: a lock file beside the output (``.NAME.lock`` next to ``NAME``), created
exclusively, naming its holder (host, process, start time, command).

A second job into the same output refuses with a line naming the holder. A lock whose holder is gone
(a killed driver) stays until someone takes it over explicitly (``--take-over-lock``): on a shared
cluster only the user can tell a dead job from a slow one on another host.

Exclusive creation is the filesystem's own: ``O_CREAT | O_EXCL`` on a local disk, a create that
refuses to overwrite on HDFS (the NameNode decides atomically). Neither needs a lock server.
(pyarrow's libhdfs client has no such create; with it the lock only looks before it writes.)
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from dataclasses import asdict, dataclass

import pyarrow.fs as pafs

from . import fs
from .hdfs import HdfsNativeHandler


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    started: str  # local time, ISO 8601
    command: str

    @staticmethod
    def this_process() -> Holder:
        return Holder(socket.gethostname(), os.getpid(), time.strftime("%Y-%m-%dT%H:%M:%S%z"), " ".join(sys.argv)[:300])

    def describe(self) -> str:
        return f"process {self.pid} on {self.host}, since {self.started} ({self.command})"

    def is_gone(self) -> bool | None:
        """True if the holder is known to be dead (a process of this host that no longer runs); None
        if it cannot be told from here (another host)."""
        if self.host != socket.gethostname():
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False  # alive, someone else's
        return False


class OutputLocked(ValueError):
    """Another job holds the output; the message names it and what to do."""


def lock_location(output: fs.Location) -> fs.Location:
    return output.parent().join(f".{output.name}.lock")


def _create_exclusively(location: fs.Location, data: bytes) -> bool:
    """Create the file with ``data``, or return False if it exists (never overwrite it)."""
    if isinstance(location.fs, pafs.LocalFileSystem):
        try:
            descriptor = os.open(location.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
        return True
    handler = getattr(location.fs, "handler", None)
    if isinstance(handler, HdfsNativeHandler):
        try:
            with handler.fs.open(location.path, "wb", overwrite=False) as stream:
                stream.write(data)
        except FileExistsError:
            return False
        return True
    # pyarrow's libhdfs client has no exclusive create: look, then write. Two jobs that start in the
    # same instant could both pass; with hdfs-native (the default) they cannot.
    if location.exists():
        return False
    location.write_bytes(data)
    return True


class OutputLock:
    """The lock of one output; a context manager that holds it for the block."""

    def __init__(self, output: fs.Location, label: str, take_over: bool = False) -> None:
        self.output, self.label, self.take_over = output, label, take_over
        self.location = lock_location(output)
        self.holder = Holder.this_process()
        self.held = False

    def holder_now(self) -> Holder | None:
        try:
            return Holder(**json.loads(self.location.read_bytes()))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError):  # half-written or foreign: treat as held by someone unknown
            return Holder("unknown host", -1, "unknown time", f"unreadable lock file {self.location.url}")

    def acquire(self) -> None:
        self.location.parent().fs.create_dir(self.location.parent().path)
        data = json.dumps(asdict(self.holder)).encode()
        if _create_exclusively(self.location, data):
            self.held = True
            return
        other = self.holder_now()
        if other is not None and self.take_over:
            self.location.fs.delete_file(self.location.path)
            if _create_exclusively(self.location, data):
                self.held = True
                return
            other = self.holder_now()
        if other is None:  # released between our two looks: try once more
            if _create_exclusively(self.location, data):
                self.held = True
                return
            other = self.holder_now()
        gone = other.is_gone() if other is not None else None
        state = "that process is gone; " if gone else ""
        raise OutputLocked(f"{self.label} {self.output.url} is being written by {other.describe() if other else 'another job'}: "
                           f"{state}if no job writes it any more, pass --take-over-lock (lock file {self.location.url})")

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        current = self.holder_now()
        if current == self.holder:  # never remove a lock someone took over from us
            self.location.fs.delete_file(self.location.path)

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()
