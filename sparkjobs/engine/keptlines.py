"""A text stream that writes through to another and keeps the last complete lines written to it: the
driver keeps what the workers print (to name the cause of a failure), and each worker keeps its own
output (to leave it in the run folder when it fails)."""

from __future__ import annotations

import io
import threading
from collections import deque
from typing import TextIO


class KeptLines(io.TextIOBase):
    def __init__(self, through: TextIO, lines: deque[str]) -> None:
        super().__init__()
        self.through, self.lines, self._partial = through, lines, ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        self.through.write(text)
        with self._lock:
            *complete, self._partial = (self._partial + text).split("\n")
            self.lines.extend(complete)
        return len(text)

    def flush(self) -> None:
        self.through.flush()

    def fileno(self) -> int:
        return self.through.fileno()

    def isatty(self) -> bool:
        return self.through.isatty()
