"""Hadoop's token storage file (``HADOOP_TOKEN_FILE_LOCATION``), read: the delegation tokens YARN gives
a container, with what each says of itself (kind, service, owner, maximum date); and replaced whole
when a long run's fresh tokens arrive (see sparkjobs/engine/credentials.py).

Read by hand because nothing on pip reads it (Hadoop's own reader is Java, hdfs-native keeps its
reader private): the jobs need to know, before they connect, which NameNode address a token was
issued for and whether it is past its maximum lifetime, to say so in one line rather than fail
later with a Kerberos error about a ticket the container was never meant to have. Both of Hadoop's
formats are read: Writable (``Credentials.writeTokenStorageToStream``'s default) and protobuf.
"""

from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"HDTS"
WRITABLE, PROTOBUF = 0, 1
HDFS_DELEGATION_TOKEN = "HDFS_DELEGATION_TOKEN"


@dataclass(frozen=True)
class Token:
    kind: str
    service: str
    owner: str | None = None  # from the identifier of a delegation token; None for other kinds
    max_date_ms: int | None = None  # when the token stops being renewable (its max lifetime)


def read_tokens(path: str | Path) -> list[Token]:
    """The tokens in a token storage file; ValueError (one line) if it is not one."""
    return parse_tokens(Path(path).read_bytes(), str(path))


def parse_tokens(data: bytes, path: str = "the token data") -> list[Token]:
    """The tokens in a token storage file's bytes; ValueError (one line, naming path) if they are not one."""
    if data[:4] != MAGIC or len(data) < 5:
        raise ValueError(f"{path} is not a Hadoop token file (it does not start with {MAGIC!r})")
    stream = io.BytesIO(data[5:])
    try:
        if data[4] == WRITABLE:
            return _writable_tokens(stream)
        if data[4] == PROTOBUF:  # one length-delimited CredentialsProto (writeDelimitedTo)
            return _protobuf_tokens(_read(stream, _varint(stream)))
    except (EOFError, IndexError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is a damaged Hadoop token file ({error or type(error).__name__})") from None
    raise ValueError(f"{path} is a Hadoop token file of an unknown format version {data[4]}")


def replace_token_file(path: str | Path, data: bytes) -> list[Token]:
    """Put data (a whole token storage file, checked first) at path as one step, readable by its owner
    alone: a process that opens path then reads either the old file or the new one, never a part; the
    tokens written."""
    tokens = parse_tokens(data)
    target = Path(path)
    descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")  # mode 0600
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return tokens


def _token(identifier: bytes, kind: str, service: str) -> Token:
    owner, max_date = _delegation_identifier(identifier) if kind.endswith("_DELEGATION_TOKEN") else (None, None)
    return Token(kind, service, owner, max_date)


def _writable_tokens(stream: io.BytesIO) -> list[Token]:
    tokens = []
    for _ in range(_vlong(stream)):
        _text(stream)  # the alias
        identifier = _bytes(stream)
        _bytes(stream)  # the password
        kind, service = _text(stream), _text(stream)
        tokens.append(_token(identifier, kind, service))
    return tokens


def _delegation_identifier(identifier: bytes) -> tuple[str | None, int | None]:
    """AbstractDelegationTokenIdentifier's fields: version, owner, renewer, real user, issue date, max date."""
    stream = io.BytesIO(identifier)
    try:
        _read(stream, 1)
        owner = _text(stream)
        _text(stream), _text(stream)
        _vlong(stream)
        return owner, _vlong(stream)
    except (EOFError, UnicodeDecodeError):
        return None, None


def _read(stream: io.BytesIO, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise EOFError("the file ends inside a token")
    return data


def _vlong(stream: io.BytesIO) -> int:
    """Hadoop's WritableUtils.readVLong."""
    first = int.from_bytes(_read(stream, 1), "big", signed=True)
    if first >= -112:
        return first
    negative = first < -120
    size = -(first + 120) if negative else -(first + 112)
    value = int.from_bytes(_read(stream, size), "big")
    return ~value if negative else value


def _bytes(stream: io.BytesIO) -> bytes:
    return _read(stream, _vlong(stream))


def _text(stream: io.BytesIO) -> str:
    return _bytes(stream).decode()


def _protobuf_tokens(message: bytes) -> list[Token]:
    """CredentialsProto: field 1 repeated CredentialsKVProto {1 alias, 2 TokenProto {1 identifier,
    2 password, 3 kind, 4 service}, 3 secret}."""
    tokens = []
    for number, value in _fields(message):
        if number != 1:
            continue
        for entry_number, entry in _fields(value):
            if entry_number == 2:
                token = dict(_fields(entry))
                tokens.append(_token(token.get(1, b""), token.get(3, b"").decode(), token.get(4, b"").decode()))
    return tokens


def _fields(message: bytes) -> list[tuple[int, bytes]]:
    """The length-delimited fields of a protobuf message (the only wire type these messages use)."""
    stream, fields = io.BytesIO(message), []
    while stream.tell() < len(message):
        key = _varint(stream)
        if key & 7 != 2:
            raise EOFError(f"unexpected protobuf wire type {key & 7}")
        fields.append((key >> 3, _read(stream, _varint(stream))))
    return fields


def _varint(stream: io.BytesIO) -> int:
    value, shift = 0, 0
    while True:
        byte = _read(stream, 1)[0]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value
        shift += 7
