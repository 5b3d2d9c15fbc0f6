"""The one filesystem layer: every path may be a local path or a URL (``file://``, ``hdfs://``, ...).

Built on ``pyarrow.fs``, which pyarrow (and so petastorm) already brings; HDFS goes through
hdfs-native, a pip-only client (``hdfs.py``). Paths are never joined or split as strings of a URL: a
``Location`` keeps the filesystem and the path inside it apart.
"""

from __future__ import annotations

import posixpath
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow.fs as pafs
from pyarrow.fs import FileType  # noqa: F401 (callers tell entry types apart as fs.FileType)

from . import hdfs

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

    def write_bytes_atomically(self, data: bytes) -> None:
        """Write under a temporary name beside the target, then rename: readers never see half a file."""
        temp = self.parent().join(f".{self.name}.{uuid.uuid4().hex}.tmp")
        try:
            temp.write_bytes(data)
            self.fs.move(temp.path, self.path)
        except BaseException:
            if temp.exists():
                temp.fs.delete_file(temp.path)
            raise

    def write_text_atomically(self, text: str) -> None:
        self.write_bytes_atomically(text.encode("utf-8"))


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
