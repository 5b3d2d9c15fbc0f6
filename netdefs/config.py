"""Configuration is data: YAML read with ``yaml.safe_load`` into validating dataclasses, every
error one line that names the file and the key. Netdefs and the training recipes both load this way."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

import yaml

T = TypeVar("T")


def parse_yaml(text: str | bytes, source: str) -> object:
    """Parsed YAML, or a one-line ValueError naming ``source``. ``safe_load`` builds plain values only:
    a tag that would construct an object (``!!python/object``) is refused here, not run."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"{source}: not valid YAML or not plain data ({first})") from None


def load_yaml(path: str | Path) -> object:
    """A local YAML file, parsed; a missing or unreadable file is a one-line ValueError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file (not UTF-8)") from None
    return parse_yaml(text, str(path))


def dataclass_from_mapping(cls: type[T], data: object, source: str) -> T:
    """Build a validating dataclass from parsed YAML; every error is one line that starts with
    ``source`` and names the offending key (unknown, missing, or refused by the class)."""
    fields = [field.name for field in dataclasses.fields(cls)]
    if not isinstance(data, Mapping):
        raise ValueError(f"{source}: expected a mapping of {', '.join(fields)}; got {type(data).__name__}")
    unknown = sorted(set(map(str, data)) - set(fields))
    if unknown:
        raise ValueError(f"{source}: unknown key {unknown[0]!r}; allowed keys: {', '.join(fields)}")
    required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [key for key in required if key not in data]
    if missing:
        raise ValueError(f"{source}: missing key {missing[0]!r}")
    try:
        return cls(**data)
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from None
