"""The netdef: a network as data (YAML), and the named models of ``conf/models``.

A netdef file holds exactly ``build_resnet``'s arguments plus a name, so the training job rebuilds
the same module that ``build_resnet -o`` sized and wrote as prototxt.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from .config import dataclass_from_mapping, load_yaml
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

    @property
    def description(self) -> str:
        """The network in a few words, as the seed's tables described it: ``bottleneck, 3 4 6 3, 256``
        (main branch, blocks per stage, first stage's width), and ``4k fc`` with the FC stage."""
        words = [self.main_branch, " ".join(map(str, self.blocks)), str(self.num_output_stage1)]
        return ", ".join(words + (["4k fc"] if self.fc_layers else []))

    def replace(self, **changes: object) -> NetDef:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, object]:
        data = dataclasses.asdict(self)
        data["blocks"] = list(self.blocks)
        return data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)


def netdef_from_dict(data: object, source: str) -> NetDef:
    """A NetDef from parsed YAML; errors start with ``source`` and name the offending key."""
    return dataclass_from_mapping(NetDef, data, source)


def load_netdef(path: str | Path) -> NetDef:
    """Read a netdef YAML file."""
    return netdef_from_dict(load_yaml(path), str(path))


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
