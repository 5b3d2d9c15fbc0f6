"""The netdef: a network as data (YAML), and the named models of ``conf/models``.

A netdef file holds exactly ``build_resnet``'s arguments plus a name, so the training job rebuilds
the same module that ``build_resnet -o`` sized and wrote as prototxt.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TypeVar

import yaml

from .resnet import ResNet, build_resnet, check_resnet_arguments

NETDEF_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class NetDef:
    """A ResNet variant by its ``build_resnet`` arguments; validated on construction."""

    name: str
    main_branch: str
    num_output_stage1: int
    blocks: tuple[int, int, int, int]
    fc_layers: bool = False
    num_classes: int = 1000
    input_size: int = 224

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty string; got {self.name!r}")
        check_resnet_arguments(
            self.main_branch, self.num_output_stage1, self.blocks, self.fc_layers, self.num_classes, self.input_size
        )
        object.__setattr__(self, "blocks", tuple(self.blocks))

    def build(self) -> ResNet:
        return build_resnet(
            self.main_branch, self.num_output_stage1, self.blocks, self.fc_layers, self.num_classes, self.input_size
        )

    def replace(self, **changes: object) -> NetDef:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, object]:
        data = dataclasses.asdict(self)
        data["blocks"] = list(self.blocks)
        return data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)


T = TypeVar("T")


def dataclass_from_mapping(cls: type[T], data: object, source: str) -> T:
    """Build a validating dataclass from parsed YAML; every error is one line that starts with
    ``source`` and names the offending key (unknown, missing, or refused by the class)."""
    fields = [field.name for field in dataclasses.fields(cls)]
    if not isinstance(data, Mapping):
        raise ValueError(f"{source}: expected a mapping of {', '.join(fields)}; got {type(data).__name__}")
    unknown = sorted(set(data) - set(fields))
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


def netdef_from_dict(data: object, source: str) -> NetDef:
    """A NetDef from parsed YAML; errors start with ``source`` and name the offending key."""
    return dataclass_from_mapping(NetDef, data, source)


def load_netdef(path: str | Path) -> NetDef:
    """Read a netdef YAML file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ValueError(f"cannot read netdef {path}: {error.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    return netdef_from_dict(data, str(path))


def models_dir() -> Path:
    """``conf/models``, wherever the package was installed from."""
    return Path(str(resources.files("torchonspark.conf") / "models"))


def model_names() -> list[str]:
    """Names of the models defined in ``conf/models``, sorted."""
    return sorted(path.stem for path in models_dir().glob("*.yaml"))


def load_model(name_or_path: str) -> NetDef:
    """A model of ``conf/models`` by name, or a netdef file by path."""
    if name_or_path.endswith(NETDEF_SUFFIXES):
        return load_netdef(name_or_path)
    path = models_dir() / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown model {name_or_path!r}; known models: {', '.join(model_names())} (or a path to a .yaml netdef)")
    return load_netdef(path)
