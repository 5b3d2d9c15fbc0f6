"""A training worker's HDFS delegation tokens, kept fresh for a run that outlives them.

In a YARN container the worker reaches a Kerberized HDFS with the tokens of the container's token
file (``HADOOP_TOKEN_FILE_LOCATION``), which hdfs-native reads at every new connection. YARN wrote
that file when the container started and nobody rewrites it: Spark renews its executors' JVM
credentials in memory only. So the driver relays its fresh tokens (sparkjobs/cluster/credentials.py)
in the job, for the start, and through a file in the app's private staging folder on HDFS, which
``TokenFollower`` watches and copies over the container's token file: the worker's next connections
then use the new tokens, and its open ones go on. Rank 0 says each new set in train.log. Imports no
Spark.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time

from torchonspark.datasets import fs
from torchonspark.datasets.hadooptokens import Token, parse_tokens, replace_token_file
from torchonspark.datasets.hdfs import first_line
from torchonspark.datasets.kerberos import TOKEN_FILE_VARIABLE

POLL_BOUNDS_S = (2.0, 60.0)
POLL_SHARE = 30  # look this many times in the life the tokens have left: each set is replaced long before it ends


def poll_interval_s(tokens: list[Token], now_ms: int | None = None) -> float:
    """How often to look for fresh tokens: a thirtieth of the time the soonest-ending one has left
    (a minute at most, for a cluster's week-long tokens; a few seconds for short-lived test ones)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    left_ms = [token.max_date_ms - now_ms for token in tokens if token.max_date_ms is not None]
    share = min(left_ms, default=POLL_BOUNDS_S[1] * 1000 * POLL_SHARE) / 1000 / POLL_SHARE
    return min(max(share, POLL_BOUNDS_S[0]), POLL_BOUNDS_S[1])


def valid_until(tokens: list[Token]) -> str:
    dates = [token.max_date_ms for token in tokens if token.max_date_ms is not None]
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(min(dates) / 1000)) if dates else "an unknown date"


class TokenFollower:
    """Copies the driver's relayed tokens over this container's token file as they change, in a
    thread; ``notices()`` gives the lines to say about it (from the caller's thread)."""

    def __init__(self, relay: fs.Location, token_file: str, first: bytes) -> None:
        self.relay, self.token_file = relay, token_file
        self._tokens = parse_tokens(first, "the job's tokens")
        self._data = first
        self._notices: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True, name="torchonspark-token-follower")

    def start(self) -> TokenFollower:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def notices(self) -> list[str]:
        lines = []
        while not self._notices.empty():
            lines.append(self._notices.get_nowait())
        return lines

    def _follow(self) -> None:
        failed = False
        while not self._stop.wait(poll_interval_s(self._tokens)):
            try:
                self._look()
                failed = False
            except (OSError, ValueError) as error:  # said once a spell; the next look may succeed
                if not failed:
                    print(f"tokens: could not read the driver's fresh delegation tokens at {self.relay.url}: "
                          f"{first_line(error)}", file=sys.stderr, flush=True)
                failed = True

    def _look(self) -> None:
        try:
            data = self.relay.read_bytes()  # a small file, read whole: a look a minute costs nothing
        except FileNotFoundError:  # not written yet, or the app is ending
            return
        if data == self._data:
            return
        self._tokens = replace_token_file(self.token_file, data)
        self._data = data
        self._notices.put(f"tokens: fresh HDFS delegation tokens from the driver, valid until {valid_until(self._tokens)}")


def follow_tokens(tokens: bytes | None, relay: fs.Location | None) -> TokenFollower | None:
    """In a YARN container, before this process first reaches HDFS: put the job's tokens (the driver's
    newest, which a relaunch needs once the container's own have ended) in the container's token file,
    and follow the relay. None where there is nothing to do (no tokens relayed, or no token file: a
    process on its own ticket)."""
    token_file = os.environ.get(TOKEN_FILE_VARIABLE)
    if tokens is None or not token_file:
        return None
    replace_token_file(token_file, tokens)
    return TokenFollower(relay, token_file, tokens).start() if relay is not None else None
