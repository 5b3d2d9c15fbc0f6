"""The one filesystem layer: every path may be a local path or a URL (``file://``, ``hdfs://``, ...).

Built on ``pyarrow.fs``, which pyarrow (and so petastorm) already brings; HDFS goes through
hdfs-native, a pip-only client (``hdfs.py``). Paths are never joined or split as strings of a URL: a
``Location`` keeps the filesystem and the path inside it apart.
"""

from __future__ import annotations

import errno
import posixpath
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import pyarrow.fs as pafs
from pyarrow.fs import FileType  # noqa: F401 (callers tell entry types apart as fs.FileType)

from . import hdfs

# How long a write to HDFS is retried while the cluster answers as one that is restarting its NameNode
# or losing a DataNode (hdfs.is_transient): a restart of a small NameNode, its safe mode and a
# DataNode declared dead take seconds to a minute. Longer outages are the supervisor's (a relaunch).
STORAGE_RETRY_S = 120.0
RetryResult = TypeVar("RetryResult")

# Object stores (s3://, gs://) are left out on purpose: the jobs publish folders by renaming them
# and append metrics lines, which those stores cannot do.
SUPPORTED_SCHEMES = ("file", "hdfs", "viewfs")


@dataclass(frozen=True)
class Location:
    """A place on some filesystem: the URL the user gave, the filesystem, and the path inside it."""

    url: str
    fs: pafs.FileSystem
    path: str

    def join(self, *parts: str) -> Location:
        path = posixpath.join(self.path, *parts)
        return Location(_url_of(self, path), self.fs, path)

    @property
    def name(self) -> str:
        return posixpath.basename(self.path.rstrip("/"))

    def parent(self) -> Location:
        path = posixpath.dirname(self.path.rstrip("/"))
        return Location(_url_of(self, path), self.fs, path)

    def exists(self) -> bool:
        return self.fs.get_file_info(self.path).type != pafs.FileType.NotFound

    def is_dir(self) -> bool:
        return self.fs.get_file_info(self.path).type == pafs.FileType.Directory

    # compression=None: pyarrow's default ("detect") would gzip whatever is written to a name ending in
    # .gz and gunzip it on the way back, so a round trip looked right while the file on disk was gzipped
    # twice (YARN then failed to unpack an env.tar.gz put there this way). Bytes stay bytes.
    def read_bytes(self) -> bytes:
        with self.fs.open_input_stream(self.path, compression=None) as stream:
            return stream.read()

    def write_bytes(self, data: bytes) -> None:
        with self.fs.open_output_stream(self.path, compression=None) as stream:
            stream.write(data)

    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def write_bytes_atomically(self, data: bytes) -> None:
        """Write under a temporary name beside the target, then rename: readers never see half a file.
        On HDFS a write that a restarting cluster broke is done again whole (``retrying``), and the
        temporary files of broken tries are removed once the cluster answers again."""
        left: list[Location] = []
        try:
            retrying(self, "writing", lambda: self._write_bytes_atomically_once(data, left))
        finally:
            for temp in left:
                try:
                    retrying(temp, "removing", lambda temp=temp: temp.fs.delete_file(temp.path))
                except (OSError, RuntimeError):  # gone already, or the storage is down for good: the write's error says so
                    pass

    def _write_bytes_atomically_once(self, data: bytes, left: list[Location]) -> None:
        temp = self.parent().join(f".{self.name}.{uuid.uuid4().hex}.tmp")
        try:
            temp.write_bytes(data)
            self.fs.move(temp.path, self.path)
        except BaseException:
            try:
                if temp.exists():
                    temp.fs.delete_file(temp.path)
            except (OSError, RuntimeError):  # the storage that failed the write may refuse this too: later
                left.append(temp)
            raise

    def write_text_atomically(self, text: str) -> None:
        self.write_bytes_atomically(text.encode("utf-8"))


def retrying(location: Location, doing: str, operation: Callable[[], RetryResult]) -> RetryResult:
    """``operation`` on ``location``, done again while HDFS answers as a cluster that is restarting
    (``hdfs.is_transient``), backing off from 0.5 s to 8 s, for at most STORAGE_RETRY_S; each retry is
    a line on stderr (a worker's output reaches the driver). Local storage is never retried (a full
    disk stays full). hdfs-native's errors are raised as OSErrors (``hdfs.as_storage_error``). The
    operation must be one that can be done again whole: an atomic write, a read."""
    if location.is_local():
        return operation()
    deadline, wait = time.monotonic() + STORAGE_RETRY_S, 0.5
    while True:
        try:
            return operation()
        except (OSError, RuntimeError) as raised:
            error = hdfs.as_storage_error(raised)
            if not hdfs.is_transient(error) or time.monotonic() + wait > deadline:
                raise error from None
            print(f"{doing} {location.url}: {hdfs.first_line(error)}; retrying in {wait:.1f} s", file=sys.stderr, flush=True)
            time.sleep(wait)
            wait = min(2 * wait, 8.0)


def out_of_space(error: BaseException) -> bool:
    """Whether a write failed for want of room (a full disk, an HDFS quota): a retry would fail alike."""
    return isinstance(error, hdfs.QuotaExceeded) or getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT)


class AppendedFile:
    """A file that grows by appends, from one writer at a time (a run's metrics.jsonl, its train.log).
    On HDFS an append that a restarting NameNode or a lost DataNode breaks half-way leaves the file open
    under this client's lease with its last block unreadable, and hdfs-native does not recover a write
    pipeline; so the writer keeps what the file holds, and after a broken append writes the whole file
    again (atomically, ``retrying``) instead."""

    def __init__(self, location: Location) -> None:
        self.location = location
        self._known: bytearray | None = None  # what the file holds (kept for HDFS only, read at the first append)

    def append(self, data: bytes) -> None:
        if self.location.is_local():
            self._append_once(data)
            return
        if self._known is None:
            self._known = bytearray(retrying(self.location, "reading", self._read_or_empty))
        try:
            self._append_once(data)
        except (OSError, RuntimeError) as raised:
            error = hdfs.as_storage_error(raised)
            if not hdfs.is_transient(error):
                raise error from None
            print(f"appending to {self.location.url}: {hdfs.first_line(error)}; writing it again whole", file=sys.stderr, flush=True)
            self.location.write_bytes_atomically(bytes(self._known) + data)
        self._known += data

    def replace(self, data: bytes) -> None:
        """The file's whole content, written atomically."""
        self.location.write_bytes_atomically(data)
        self._known = None if self.location.is_local() else bytearray(data)

    def _append_once(self, data: bytes) -> None:
        with self.location.fs.open_append_stream(self.location.path, compression=None) as stream:
            stream.write(data)

    def _read_or_empty(self) -> bytes:
        try:
            return self.location.read_bytes()
        except FileNotFoundError:
            return b""


def _url_of(base: Location, path: str) -> str:
    parts = urlsplit(base.url)
    if parts.scheme in ("", "file"):
        return path if parts.scheme == "" else f"file://{path}"
    return f"{parts.scheme}://{parts.netloc}{path}"


def resolve(url_or_path: str) -> Location:
    """A Location for a local path or a URL; a clear ValueError for anything else."""
    if not url_or_path:
        raise ValueError("empty path")
    scheme = urlsplit(url_or_path).scheme
    if scheme == "" or len(scheme) == 1:  # a plain path (one letter would be a Windows drive)
        path = str(Path(url_or_path).expanduser().absolute())
        return Location(path, pafs.LocalFileSystem(), path)
    if scheme not in SUPPORTED_SCHEMES:
        raise ValueError(
            f"unsupported URL scheme {scheme!r} in {url_or_path}; use a local path or one of "
            + ", ".join(f"{s}://" for s in SUPPORTED_SCHEMES)
        )
    if scheme in ("hdfs", "viewfs"):
        fs, path = hdfs.hdfs_filesystem(url_or_path)
    else:
        try:
            fs, path = pafs.FileSystem.from_uri(url_or_path)
        except (OSError, ValueError) as error:  # pyarrow.ArrowInvalid is a ValueError
            raise ValueError(f"cannot open {url_or_path}: {error}") from None
    return Location(url_or_path, fs, path)


def to_url(location: Location) -> str:
    """The URL petastorm and Spark want (a local path becomes ``file://``)."""
    if isinstance(location.fs, pafs.LocalFileSystem):
        return "file://" + location.path
    return location.url


def list_files(location: Location) -> list[pafs.FileInfo]:
    """Every entry below a folder that is not a folder, recursively, sorted by path: regular files
    (``FileType.File``) and special ones such as pipes (``FileType.Unknown``), which callers must not
    read. (pyarrow does not list dangling symbolic links at all.)"""
    infos = location.fs.get_file_info(pafs.FileSelector(location.path, recursive=True))
    return sorted((info for info in infos if info.type != pafs.FileType.Directory), key=lambda info: info.path)


def list_dirs(location: Location) -> list[pafs.FileInfo]:
    """The folders directly inside a folder, sorted by name."""
    infos = location.fs.get_file_info(pafs.FileSelector(location.path, recursive=False))
    return sorted((info for info in infos if info.type == pafs.FileType.Directory), key=lambda info: info.base_name)


def publish(temporary: Location, target: Location) -> None:
    """Rename a finished temporary folder to ``target``, replacing an old ``target`` only once the
    new one is complete: the old version is set aside for the instant of the rename and put back if
    the rename fails, so a whole version always exists under one of the two names."""
    old = None
    if target.exists():
        old = target.parent().join(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        target.fs.move(target.path, old.path)
    try:
        target.fs.move(temporary.path, target.path)
    except BaseException:
        if old is not None:  # put the old version back rather than leave none
            target.fs.move(old.path, target.path)
        raise
    if old is not None:
        old.fs.delete_dir(old.path)


def refuse_existing(location: Location, overwrite: bool, label: str) -> None:
    """The convention for every output: an existing one is left alone unless --overwrite."""
    if location.exists() and not overwrite:
        raise ValueError(f"{label} {location.url} already exists; pass --overwrite to replace it")


@contextmanager
def building(target: Location) -> Iterator[Location]:
    """A new folder beside ``target`` to build it in: published as ``target`` when the block ends,
    removed if the block fails, so ``target`` appears whole or not at all."""
    temporary = target.parent().join(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    temporary.fs.create_dir(temporary.path)
    try:
        yield temporary
        publish(temporary, target)
    except BaseException:
        if temporary.exists():
            temporary.fs.delete_dir(temporary.path)
        raise
