"""A training recipe: the model, the augmentation and the solver, as one flat YAML file in ``conf/``.

Keys use Caffe's solver names where Caffe had one (``base_lr``, ``lr_policy``, ``stepvalue``,
``gamma``, ``max_iter``, ``test_interval``, ``display``, ``snapshot``, ``mirror``), so the seed's
users can read them. Loaded with ``yaml.safe_load`` into a frozen dataclass that checks every value
and names the key that is wrong. Command-line flags override file values (``Recipe.replace``).

The ``model`` key (a ``conf/models`` name, a netdef file, or a netdef's keys inline) is resolved into
a ``NetDef`` once, when the recipe is loaded; from then on the recipe carries the network itself,
sized for ``crop_size``.

Keys Caffe had no name for follow Goyal et al. 2017 ("Accurate, Large Minibatch SGD") and
torchvision's reference scripts: ``base_lr_batch`` (linear scaling), ``warmup_epochs``,
``stepvalue_epochs``, ``norm_weight_decay``/``bias_weight_decay`` (Caffe's ``decay_mult: 0`` on those
layers' params), ``zero_init_residual``, DDP's ``gradient_compression``, ``bucket_cap_mb``,
``gradient_as_bucket_view`` and ``static_graph``, and ``torch_compile``. A recipe and the number of workers give a run its ``Schedule``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from torchonspark.netdefs import NetDef, load_model
from torchonspark.netdefs.config import dataclass_from_mapping, load_yaml
from torchonspark.netdefs.netdef import netdef_from_dict
from torchonspark.sparkjobs.engine.distributed import DdpOptions

LR_POLICIES = ("multistep", "cosine", "fixed")


@dataclass(frozen=True)
class Recipe:
    """What to train and how. Iterations count synchronous SGD steps of the whole job."""

    model: NetDef  # input_size follows crop_size
    batch_size: int  # per worker
    base_lr: float
    max_iter: int | None = None  # give exactly one of max_iter and epochs
    epochs: int | None = None
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_policy: str = "multistep"
    stepvalue: tuple[int, ...] = ()  # multistep: iterations where the rate is multiplied by gamma
    gamma: float = 0.1
    base_lr_batch: int = 0  # base_lr is the rate at this global batch, scaled linearly to the run's (0: as given)
    warmup_iters: int = 0  # linear warm-up (from base_lr / 10, or from base_lr when it is scaled up)
    warmup_epochs: float = 0  # the same in epochs (give at most one of the two)
    stepvalue_epochs: tuple[float, ...] = ()  # multistep in epochs (instead of stepvalue)
    norm_weight_decay: float | None = None  # weight decay of normalisation layers' params (None: weight_decay)
    bias_weight_decay: float | None = None  # of the other layers' biases (None: weight_decay)
    zero_init_residual: bool = False  # every residual block starts as the identity (Goyal et al.)
    gradient_compression: str = "none"  # none, bf16 or fp16 gradients on the wire
    bucket_cap_mb: float | None = None  # DDP's bucket size (None: its own, 1 MB first, then 25 MB)
    gradient_as_bucket_view: bool = False
    static_graph: bool = False
    torch_compile: bool = False  # the DDP model through torch.compile (minutes of compiling first)
    crop_size: int = 224
    scale_range: tuple[int, int] | None = None  # shorter side before the crop; default the seed's, scaled
    mirror: bool = True
    test_interval: int = 0  # validate every N iterations (0: at the end only)
    display: int = 20
    snapshot: int = 0  # checkpoint every N iterations (0: at the end only)
    snapshot_minutes: float = 0  # and at least this often, in training minutes (0: off)
    keep_snapshots: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        _check_types(self)
        if (self.max_iter is None) == (self.epochs is None):
            raise ValueError("give exactly one of max_iter and epochs")
        positive = ["batch_size", "crop_size", "display", "keep_snapshots"]
        positive += [key for key in ("max_iter", "epochs") if getattr(self, key) is not None]
        for key in positive:
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be at least 1; got {getattr(self, key)}")
        for key in ("test_interval", "snapshot", "warmup_iters", "seed", "snapshot_minutes"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must not be negative; got {getattr(self, key)}")
        if self.base_lr <= 0:
            raise ValueError(f"base_lr must be positive; got {self.base_lr}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1); got {self.momentum}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must not be negative; got {self.weight_decay}")
        if self.lr_policy not in LR_POLICIES:
            raise ValueError(f"lr_policy must be one of {', '.join(LR_POLICIES)}; got {self.lr_policy!r}")
        if list(self.stepvalue) != sorted(set(self.stepvalue)) or any(step < 1 for step in self.stepvalue):
            raise ValueError(f"stepvalue must be increasing positive iterations; got {list(self.stepvalue)}")
        if self.lr_policy == "multistep" and not 0 < self.gamma <= 1:
            raise ValueError(f"gamma must be in (0, 1]; got {self.gamma}")
        if self.warmup_iters and self.warmup_epochs:
            raise ValueError("give at most one of warmup_iters and warmup_epochs")
        if self.stepvalue and self.stepvalue_epochs:
            raise ValueError("give at most one of stepvalue and stepvalue_epochs")
        if list(self.stepvalue_epochs) != sorted(set(self.stepvalue_epochs)) or any(e <= 0 for e in self.stepvalue_epochs):
            raise ValueError(f"stepvalue_epochs must be increasing positive epochs; got {list(self.stepvalue_epochs)}")
        for key in ("base_lr_batch", "warmup_epochs", "norm_weight_decay", "bias_weight_decay"):
            if (getattr(self, key) or 0) < 0:
                raise ValueError(f"{key} must not be negative; got {getattr(self, key)}")
        self.ddp_options()  # checks the DDP keys
        if self.scale_range is not None and not self.crop_size <= self.scale_range[0] <= self.scale_range[1]:
            raise ValueError(f"scale_range must satisfy crop_size <= low <= high; got {list(self.scale_range)}")
        if self.model.input_size != self.crop_size:
            object.__setattr__(self, "model", self.model.replace(input_size=self.crop_size))

    def for_classes(self, num_classes: int) -> Recipe:
        """This recipe with its network's classifier sized for a data set's classes."""
        return dataclasses.replace(self, model=self.model.replace(num_classes=num_classes))

    def iterations(self, per_epoch: int) -> int:
        """The run's length in iterations, given the iterations of one epoch."""
        return self.max_iter if self.max_iter is not None else self.epochs * per_epoch

    def replace(self, **changes: Any) -> Recipe:
        """A copy with ``changes`` (None values ignored, as from unset flags); validated again."""
        given = {key: value for key, value in changes.items() if value is not None}
        if "max_iter" in given:
            given.setdefault("epochs", None)
        elif "epochs" in given:
            given.setdefault("max_iter", None)
        return dataclasses.replace(self, **given)

    def ddp_options(self) -> DdpOptions:
        return DdpOptions(compression=self.gradient_compression, bucket_cap_mb=self.bucket_cap_mb,
                          gradient_as_bucket_view=self.gradient_as_bucket_view, static_graph=self.static_graph)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["model"] = self.model.to_dict()
        data["stepvalue"] = list(self.stepvalue)
        data["stepvalue_epochs"] = list(self.stepvalue_epochs)
        data["scale_range"] = list(self.scale_range) if self.scale_range is not None else None
        return data


_TYPES: dict[str, tuple[type, ...]] = {
    "batch_size": (int,),
    "base_lr": (int, float),
    "max_iter": (int, type(None)),
    "epochs": (int, type(None)),
    "momentum": (int, float),
    "weight_decay": (int, float),
    "lr_policy": (str,),
    "gamma": (int, float),
    "base_lr_batch": (int,),
    "warmup_iters": (int,),
    "warmup_epochs": (int, float),
    "norm_weight_decay": (int, float, type(None)),
    "bias_weight_decay": (int, float, type(None)),
    "zero_init_residual": (bool,),
    "gradient_compression": (str,),
    "bucket_cap_mb": (int, float, type(None)),
    "gradient_as_bucket_view": (bool,),
    "static_graph": (bool,),
    "torch_compile": (bool,),
    "crop_size": (int,),
    "mirror": (bool,),
    "test_interval": (int,),
    "display": (int,),
    "snapshot": (int,),
    "snapshot_minutes": (int, float),
    "keep_snapshots": (int,),
    "seed": (int,),
}


def _check_types(recipe: Recipe) -> None:
    for key, types in _TYPES.items():
        value = getattr(recipe, key)
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise ValueError(f"{key} must be {names}; got {value!r}")
    if not isinstance(recipe.model, NetDef):
        raise ValueError(f"model must be a model name, a netdef path, or a mapping of netdef keys; got {recipe.model!r}")
    object.__setattr__(recipe, "stepvalue", _int_tuple("stepvalue", recipe.stepvalue, None))
    object.__setattr__(recipe, "stepvalue_epochs", _number_tuple("stepvalue_epochs", recipe.stepvalue_epochs))
    if recipe.scale_range is not None:
        object.__setattr__(recipe, "scale_range", _int_tuple("scale_range", recipe.scale_range, 2))


def _int_tuple(key: str, value: object, length: int | None) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool) and length is None:
        value = [value]  # Caffe's single stepvalue
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ValueError(f"{key} must be a list of integers; got {value!r}")
    if length is not None and len(value) != length:
        raise ValueError(f"{key} must have {length} integers; got {list(value)}")
    return tuple(value)


def param_value(value: Any) -> Any:
    """A recipe value as a logging tool's parameter (TensorBoard's hyper-parameters, MLflow's params):
    booleans as YAML writes them (a tool would log True as the number 1), lists as their items
    separated by spaces, numbers and text as they are."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value))
    return value


def _number_tuple(key: str, value: object) -> tuple[float, ...]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise ValueError(f"{key} must be a list of numbers; got {value!r}")
    return tuple(value)


def resolve_model(model: object, inline_name: str, source: str) -> NetDef:
    """The recipe's ``model`` value as a NetDef: a conf/models name, a netdef file, or inline keys
    (an inline netdef without a name is named ``inline_name``)."""
    if isinstance(model, NetDef):
        return model
    if isinstance(model, str):
        try:
            return load_model(model)
        except ValueError as error:
            raise ValueError(f"{source}: model: {error}") from None
    if isinstance(model, Mapping):
        return netdef_from_dict({"name": inline_name, **model}, f"{source}: model")
    raise ValueError(f"{source}: model must be a model name, a netdef path, or a mapping of netdef keys; got {model!r}")


def recipe_from_dict(data: object, source: str, inline_name: str = "model") -> Recipe:
    if isinstance(data, Mapping) and "model" in data:
        data = {**data, "model": resolve_model(data["model"], inline_name, source)}
    return dataclass_from_mapping(Recipe, data, source)


RECIPE_SUFFIXES = (".yaml", ".yml")


def recipes_dir() -> Path:
    """The packaged recipes (``conf/*.yaml``), wherever the package was installed from."""
    return Path(str(resources.files("torchonspark.conf")))


def recipe_names() -> list[str]:
    """Names of the packaged recipes, sorted."""
    return sorted(path.stem for path in recipes_dir().glob("*.yaml"))


def find_recipe(name_or_path: str | Path) -> Path:
    """A packaged recipe by name (``digits``), or a recipe file by path: the same rule as
    ``build_resnet --model``, so that a recipe name works from any folder, as a model name does."""
    text = str(name_or_path)
    if text.endswith(RECIPE_SUFFIXES) or "/" in text:
        return Path(text)
    path = recipes_dir() / f"{text}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown recipe {text!r}; packaged recipes: {', '.join(recipe_names())} (or a path to a .yaml file)")
    return path


def load_recipe(name_or_path: str | Path) -> Recipe:
    """Read a recipe by name or path (an inline netdef is named after the file)."""
    path = find_recipe(name_or_path)
    return recipe_from_dict(load_yaml(path), str(path), inline_name=path.stem)


def describe_recipes() -> str:
    """One line per packaged recipe: its name, model, length and the first line of its comment."""
    lines = []
    width = max(map(len, recipe_names()), default=0) + 2
    for name in recipe_names():
        path = recipes_dir() / f"{name}.yaml"
        recipe = load_recipe(path)
        length = f"{recipe.max_iter} iterations" if recipe.max_iter is not None else f"{recipe.epochs} epochs"
        comment = next((line.lstrip("# ").rstrip() for line in path.read_text().splitlines() if line.startswith("#")), "")
        lines.append(f"{name:<{width}}{recipe.model.name:<12} {recipe.batch_size:>4}/worker  {length:<18} {comment}")
    return "\n".join(lines)


@dataclass(frozen=True)
class Schedule:
    """One run's learning rate, in iterations: the recipe's schedule resolved for the run's global
    batch and epoch length. The rate is a pure function of the iteration, so a resumed run sets
    exactly the rate the uninterrupted one had; that is why it is written out rather than kept as a
    torch scheduler's state."""

    base_lr: float  # at this run's global batch
    warmup_start_lr: float
    warmup_iters: int
    lr_policy: str
    stepvalue: tuple[int, ...]
    gamma: float
    max_iter: int

    def rate(self, iteration: int) -> float:
        """The rate for step ``iteration`` (0-based)."""
        if iteration < self.warmup_iters:
            return self.warmup_start_lr + (self.base_lr - self.warmup_start_lr) * iteration / self.warmup_iters
        if self.lr_policy == "multistep":
            return self.base_lr * self.gamma ** sum(iteration >= step for step in self.stepvalue)
        if self.lr_policy == "cosine":
            span = max(1, self.max_iter - self.warmup_iters)
            progress = min(1.0, (iteration - self.warmup_iters) / span)
            return self.base_lr * 0.5 * (1 + math.cos(math.pi * progress))
        return self.base_lr

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "stepvalue": list(self.stepvalue)}


def schedule(recipe: Recipe, world_size: int, per_epoch: int) -> Schedule:
    """The recipe's schedule for ``world_size`` workers and ``per_epoch`` iterations an epoch. With
    ``base_lr_batch``, the rate scales with the global batch and the warm-up climbs from the
    reference batch's rate to the scaled one (Goyal et al.'s linear scaling and gradual warm-up);
    otherwise it climbs from a tenth of base_lr."""
    if recipe.base_lr_batch:
        base_lr = recipe.base_lr * world_size * recipe.batch_size / recipe.base_lr_batch
        start = min(recipe.base_lr, base_lr)
    else:
        base_lr, start = recipe.base_lr, recipe.base_lr / 10
    warmup = recipe.warmup_iters or round(recipe.warmup_epochs * per_epoch)
    steps = recipe.stepvalue or tuple(round(epoch * per_epoch) for epoch in recipe.stepvalue_epochs)
    return Schedule(base_lr=base_lr, warmup_start_lr=start, warmup_iters=warmup, lr_policy=recipe.lr_policy,
                    stepvalue=tuple(steps), gamma=recipe.gamma, max_iter=recipe.iterations(per_epoch))
