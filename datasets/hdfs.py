"""HDFS (``hdfs://``, ``viewfs://``) for the one filesystem layer, with nothing but pip.

The default client is hdfs-native, a Rust implementation of HDFS's protocol with an fsspec
filesystem: no JVM, no libhdfs.so, no CLASSPATH. It reads ``HADOOP_CONF_DIR`` (``fs.defaultFS``, HA
name services, viewfs mount tables) and uses Kerberos and the delegation tokens YARN gives its
containers (``HADOOP_TOKEN_FILE_LOCATION``). On a Kerberized cluster each process checks, before it
connects, that it has one or the other (``kerberos.usable_credentials``): hdfs-native alone fails late
and unclearly without. pyarrow sees it through ``PyFileSystem``.

pyarrow's own libhdfs client (JNI: ``JAVA_HOME``, ``HADOOP_HOME``, ``ARROW_LIBHDFS_DIR``, a Hadoop
``CLASSPATH`` in every process) stays selectable with ``TORCHONSPARK_HDFS_CLIENT=libhdfs``, for what
hdfs-native does not do: reading and writing inside HDFS encryption zones. The variable is read in each
process, so on a cluster set it for the executors too (``spark.executorEnv.TORCHONSPARK_HDFS_CLIENT``).
"""

from __future__ import annotations

import io
import os
import posixpath
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.fs as pafs

from . import kerberos

CLIENT_VARIABLE = "TORCHONSPARK_HDFS_CLIENT"
HDFS_NATIVE = "hdfs-native"
LIBHDFS = "libhdfs"
CLIENTS = (HDFS_NATIVE, LIBHDFS)
LIBHDFS_HINT = (
    "pyarrow's libhdfs client needs, in this process: JAVA_HOME, HADOOP_HOME, ARROW_LIBHDFS_DIR (the folder of "
    f"libhdfs.so) and CLASSPATH=$(hadoop classpath --glob); or unset {CLIENT_VARIABLE} to use hdfs-native"
)


# Hadoop's client keeps retrying a NameNode that does not answer for about three minutes (15 failover
# attempts, backing off to 15 s each); 4 attempts give up after about 12 s, so that a job says the
# NameNode is down in seconds. A cluster's own setting of the key (HA clusters may want more) wins.
CLIENT_DEFAULTS = {"dfs.client.failover.max.attempts": "4"}
SITE_FILES = ("core-site.xml", "hdfs-site.xml")
UMASK_KEY = "fs.permissions.umask-mode"
DEFAULT_UMASK = 0o022  # Hadoop's


# Spark on YARN copies the submitting client's Hadoop configuration into every container (driver in
# cluster mode, executors), where HADOOP_CONF_DIR itself is often not set.
SPARK_SHIPPED_HADOOP_CONF = Path("__spark_conf__") / "__hadoop_conf__"


def hadoop_conf_dir(env: Mapping[str, str] = os.environ) -> str | None:
    """The Hadoop client configuration this process uses: HADOOP_CONF_DIR, else the copy Spark put in
    this YARN container."""
    if env.get("HADOOP_CONF_DIR"):
        return env["HADOOP_CONF_DIR"]
    return str(SPARK_SHIPPED_HADOOP_CONF.resolve()) if SPARK_SHIPPED_HADOOP_CONF.is_dir() else None


def configured_properties(conf_dir: str | None) -> dict[str, str]:
    """The properties set in a Hadoop configuration folder's core-site.xml and hdfs-site.xml."""
    properties: dict[str, str] = {}
    for name in SITE_FILES if conf_dir else ():
        try:
            root = ElementTree.parse(Path(conf_dir) / name).getroot()
        except (OSError, ElementTree.ParseError):
            continue
        properties.update({(prop.findtext("name") or "").strip(): (prop.findtext("value") or "").strip() for prop in root.iter("property")})
    return properties


def configured_keys(conf_dir: str | None) -> set[str]:
    """The property names set in a Hadoop configuration folder's core-site.xml and hdfs-site.xml."""
    return set(configured_properties(conf_dir))


def client_options(env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Our defaults for what the cluster's configuration leaves unset."""
    configured = configured_keys(hadoop_conf_dir(env))
    return {key: value for key, value in CLIENT_DEFAULTS.items() if key not in configured}


def umask(properties: Mapping[str, str]) -> int:
    """The permission bits this cluster's clients leave out of what they create: fs.permissions.umask-mode,
    octal (027) or symbolic as ``umask -S`` prints it (u=rwx,g=r-x,o=), 022 unset. The NameNode stores the
    permission a client asks for: Hadoop's Java client applies the umask itself, hdfs-native does not
    (it asks for 644 and 755 whatever the cluster says), so ``_TranslatingClient`` applies it."""
    value = properties.get(UMASK_KEY, "").strip()
    if not value:
        return DEFAULT_UMASK
    if re.fullmatch(r"[0-7]{1,4}", value):
        return int(value, 8) & 0o777
    allowed = 0o777
    for clause in value.split(","):
        match = re.fullmatch(r"([ugoa]*)=([rwx-]*)", clause.strip())
        if match is None:
            raise ValueError(f"{UMASK_KEY}={value!r} in the Hadoop configuration is not a umask: write it in octal (027) "
                             "or as u=rwx,g=r-x,o=")
        bits = sum(bit for letter, bit in (("r", 4), ("w", 2), ("x", 1)) if letter in match.group(2))
        for shift in {6 if who == "u" else 3 if who == "g" else 0 for who in match.group(1).replace("a", "ugo") or "ugo"}:
            allowed = allowed & ~(0o7 << shift) | bits << shift
    return 0o777 & ~allowed


def chosen_client(env: Mapping[str, str] = os.environ) -> str:
    """Which HDFS client this process uses."""
    client = env.get(CLIENT_VARIABLE) or HDFS_NATIVE
    if client not in CLIENTS:
        raise ValueError(f"{CLIENT_VARIABLE}={client!r}: use {' or '.join(CLIENTS)}")
    return client


def first_line(error: BaseException) -> str:
    """The message of an HDFS error without the NameNode's Java stack trace that follows it."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


_INHERITED_CLIENTS: list[object] = []  # a forked child's copies of its parent's clients, never dropped


class HdfsNativeHandler(pafs.FSSpecHandler):
    """pyarrow's view of hdfs-native's fsspec filesystem, with the two semantics the jobs rely on that
    HDFS's defaults lack: a rename replaces an existing file (as POSIX and pyarrow's local filesystem
    do; atomic on the NameNode), and appending to a file that is not there yet creates it.

    Forks: hdfs-native runs its I/O on a process-wide runtime whose threads a forked child does not
    have. In a child of a process that had used it, reading a file hangs for good (even with a new
    client; listing still works) and so does dropping the inherited client. So the child keeps the
    inherited client, unused, and refuses HDFS with a clear error (``_FsspecFactory``). Spark's Python
    workers are forked from a daemon that never touches HDFS, and torchrun's ranks are started
    fresh, so the jobs never meet this."""

    def __init__(self, make_filesystem: Callable[[], object]) -> None:  # not super().__init__: it would set fs
        self._make_filesystem = make_filesystem
        self._filesystem: object | None = None
        self._pid: int | None = None

    @property
    def fs(self) -> object:
        if self._pid != os.getpid():
            if self._filesystem is not None:
                _INHERITED_CLIENTS.append(self._filesystem)
            self._filesystem, self._pid = self._make_filesystem(), os.getpid()
        return self._filesystem

    def __reduce__(self) -> tuple:
        return HdfsNativeHandler, (self._make_filesystem,)

    def move(self, src: str, dest: str) -> None:
        self.fs.client.rename(src, dest, True)

    def open_append_stream(self, path: str, metadata: object) -> pa.NativeFile:
        mode = "ab" if self.fs.exists(path) else "wb"
        return pa.PythonFile(self.fs.open(path, mode=mode), mode="w")


def _fsspec_class(scheme: str) -> type:
    from hdfs_native.fsspec import HdfsFileSystem, ViewfsFileSystem

    return HdfsFileSystem if scheme == "hdfs" else ViewfsFileSystem


def hdfs_filesystem(url: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem of an ``hdfs://`` or ``viewfs://`` URL and the path inside it. A URL
    without a host (``hdfs:///data``) means the cluster's ``fs.defaultFS``."""
    parts = urlsplit(url)
    if chosen_client() == LIBHDFS:
        try:
            return pafs.FileSystem.from_uri(url)
        except (OSError, ValueError) as error:  # pyarrow.ArrowInvalid is a ValueError
            raise ValueError(f"cannot open {url}: {first_line(error)}; {LIBHDFS_HINT}") from None
    if not parts.hostname and not hadoop_conf_dir():
        raise ValueError(f"{url} names no NameNode and HADOOP_CONF_DIR is not set: give the NameNode "
                         f"({parts.scheme}://HOST:PORT/...) or export HADOOP_CONF_DIR=/etc/hadoop/conf (its fs.defaultFS)")
    handler = HdfsNativeHandler(_FsspecFactory(parts.scheme, parts.hostname, parts.port))
    try:
        handler.fs  # noqa: B018 (a bad configuration is reported here, not at the first read)
    except Exception as error:  # the Rust client reports a bad configuration as its own exception types
        raise ValueError(f"cannot open {url}: {first_line(error)}") from None
    return pafs.PyFileSystem(handler), parts.path or "/"


def petastorm_filesystem_factory(url: str) -> Callable[[], object] | None:
    """A picklable function that makes the filesystem petastorm writes a dataset's metadata through
    (``materialize_dataset``'s ``filesystem_factory``), or None where petastorm's own resolver is right
    (local paths, and libhdfs)."""
    parts = urlsplit(url)
    if parts.scheme not in ("hdfs", "viewfs") or chosen_client() == LIBHDFS:
        return None
    return _PetastormFactory(_FsspecFactory(parts.scheme, parts.hostname, parts.port))


class _PetastormFactory:
    def __init__(self, make_filesystem: Callable[[], object]) -> None:
        self.make_filesystem = make_filesystem

    def __call__(self) -> object:
        import warnings

        from pyarrow.filesystem import DaskFileSystem

        class LegacyFilesystem(DaskFileSystem):
            """petastorm 0.12 uses pyarrow's legacy filesystem API (pyarrow < 15 is pinned for it);
            its fsspec wrapper leaves out the two calls the legacy ParquetDataset needs."""

            def isdir(self, path: str) -> bool:
                return self.fs.isdir(path)

            def isfile(self, path: str) -> bool:
                return self.fs.isfile(path)

            def open(self, path: str, mode: str = "rb") -> object:
                if "w" not in mode:
                    return super().open(path, mode)
                # pyarrow's metadata writer asks the file for tell(), which HDFS's write stream has
                # not: the (small) metadata file is built in memory and written whole on close.
                return _WrittenOnClose(self.fs, path)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # the legacy API's deprecation: known, pinned
            return LegacyFilesystem(self.make_filesystem())


class _WrittenOnClose(io.BytesIO):
    def __init__(self, filesystem: object, path: str) -> None:
        super().__init__()
        self.filesystem, self.path = filesystem, path

    def close(self) -> None:
        if not self.closed:
            with self.filesystem.open(self.path, "wb") as stream:
                stream.write(self.getvalue())
        super().close()


class QuotaExceeded(OSError):
    """An HDFS space or name quota refused a write (no retry helps: a person must raise the quota)."""


# hdfs-native reports the NameNode's refusals as RuntimeError('RPCError("<Java class>", "<message and
# Java stack>")'); the jobs say what went wrong in one line, so they become the OSError that fits.
_RPC_ERROR = re.compile(r'RPCError\("([\w.$]+)", "(.*)', re.DOTALL)
_OS_ERRORS = {
    "AccessControlException": PermissionError,
    "DSQuotaExceededException": QuotaExceeded,
    "NSQuotaExceededException": QuotaExceeded,
    "FileAlreadyExistsException": FileExistsError,
    "FileNotFoundException": FileNotFoundError,
    "ParentNotDirectoryException": NotADirectoryError,
}


def as_os_error(error: RuntimeError) -> OSError | None:
    """The OSError an hdfs-native RPC error stands for (None if it is not one)."""
    match = _RPC_ERROR.search(str(error))
    if match is None:
        return None
    java_class, message = match.group(1), re.split(r"\\n|\n", match.group(2), maxsplit=1)[0].replace('\\"', '"').rstrip('")')
    return _OS_ERRORS.get(java_class.rsplit(".", 1)[-1], OSError)(f"{message} ({java_class.rsplit('.', 1)[-1]})")


def as_storage_error(error: BaseException) -> BaseException:
    """What the jobs catch for an error hdfs-native raised on a path it was given: an OSError (the
    RPC's own class where there is one: file writers report the NameNode's refusals untranslated),
    any other exception as it was."""
    if isinstance(error, RuntimeError):
        return as_os_error(error) or OSError(first_line(error))
    return error


# What an HDFS that is restarting its NameNode or losing a DataNode answers, as hdfs-native reports it:
# the NameNode in safe mode or not serving yet, a connection lost or refused, a write pipeline broken.
# A write refused for these succeeds once the cluster is back; anything else is not retried.
_TRANSIENT = re.compile(
    r"SafeModeException|RetriableException|StandbyException|NotReplicatedYetException|RPC listener disconnected|"
    r"Connection refused|Connection reset|Broken pipe|DataTransferError|Failed to complete file in time|"
    r"could only be written to 0 of the", re.IGNORECASE)


def is_transient(error: BaseException) -> bool:
    """Whether an HDFS error is one of a cluster that is restarting or failing over (see _TRANSIENT)."""
    return isinstance(error, (OSError, RuntimeError)) and not isinstance(error, QuotaExceeded) \
        and _TRANSIENT.search(str(error)) is not None


class _TranslatingClient:
    """hdfs-native's client, its RPC errors raised as OSErrors (see ``as_os_error``), creating files and
    folders with the permissions Hadoop's Java client gives them (666 and 777 less the cluster's umask).
    A file's missing parent folders are made here first (one more RPC a file, which is cheap beside a
    file's writing): the NameNode makes them 777 otherwise."""

    def __init__(self, client: object, umask: int) -> None:
        self._client = client
        self._umask = umask

    def create(self, path: str, write_options: object = None) -> object:
        if write_options is None:
            from hdfs_native import WriteOptions

            write_options = WriteOptions()
        parent = posixpath.dirname(path.rstrip("/"))
        if write_options.create_parent:
            self.mkdirs(parent, 0o777, True)
        write_options.permission = 0o666 & ~self._umask
        return self.__getattr__("create")(path, write_options)

    def mkdirs(self, path: str, permission: int, create_parent: bool) -> None:
        self.__getattr__("mkdirs")(path, 0o777 & ~self._umask, create_parent)

    def __getattr__(self, name: str) -> object:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        def call(*args: object, **kwargs: object) -> object:
            try:
                return attribute(*args, **kwargs)
            except RuntimeError as error:
                translated = as_os_error(error)
                if translated is None:
                    raise
                raise translated from None

        return call


_RUNTIME_PID: int | None = None  # the process whose hdfs-native runtime is in use


class _FsspecFactory:
    def __init__(self, scheme: str, host: str | None, port: int | None) -> None:
        self.scheme, self.host, self.port = scheme, host, port

    def __call__(self) -> object:
        global _RUNTIME_PID
        if _RUNTIME_PID not in (None, os.getpid()):
            raise RuntimeError(
                f"this process was forked from process {_RUNTIME_PID} after it had used HDFS, and hdfs-native's "
                "runtime does not survive a fork (reads would hang): read HDFS from a process started afresh "
                f"(a subprocess, multiprocessing's 'spawn' context), or set {CLIENT_VARIABLE}=libhdfs")
        _RUNTIME_PID = os.getpid()
        conf_dir = hadoop_conf_dir()
        if conf_dir and not os.environ.get("HADOOP_CONF_DIR"):
            os.environ["HADOOP_CONF_DIR"] = conf_dir  # where hdfs-native looks for it
        host, port = self.host, self.port
        properties = configured_properties(conf_dir)
        # Checked here, in the process that connects (an executor, with its container's tokens).
        if self.scheme == "hdfs" and kerberos.security_enabled(properties):
            if not host:  # hdfs:/// is the default file system's NameNode (an HA name service has no port)
                default = urlsplit(properties.get("fs.defaultFS", ""))
                host, port = default.hostname, default.port
            if host:
                host = kerberos.usable_credentials(host, port, conf_dir)
        # Not from fsspec's instance cache: a forked child clears it, which would drop (and hang on)
        # the parent's clients; each filesystem here is held by its own handler instead.
        filesystem = _fsspec_class(self.scheme)(host=host, port=port, skip_instance_cache=True, **client_options())
        filesystem.client = _TranslatingClient(filesystem.client, umask(properties))
        return filesystem
