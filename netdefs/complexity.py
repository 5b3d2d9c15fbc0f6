"""Parameters and FLOPs of a built module, in the seed tool's convention.

The seed (pynetbuilder's ``get_complexity``) summed, over Caffe layers, the size of each layer's
first parameter blob:
  - Convolution: its weights (no bias); FLOPs = weights x output height x output width.
  - BatchNorm + Scale: C + C (the running mean, then the scale's gamma); FLOPs the same.
  - InnerProduct: its weights (no bias); FLOPs the same.
We count the torch module that trains: forward hooks see each layer of a real forward pass, so the
output sizes are the ones it produces. ``macs`` is the usual multiply-accumulate count (convolutions
and fully connected layers only, one per multiply-add; torch's FlopCounterMode counts two).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .legos import ConvBN

_COUNTED = (nn.Conv2d, nn.BatchNorm2d, nn.Linear, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)


@dataclass(frozen=True)
class LayerCost:
    name: str
    kind: str
    output_shape: tuple[int, ...]  # one sample: (C, H, W) or (features,)
    params: int  # seed convention
    flops: int  # seed convention
    macs: int


@dataclass(frozen=True)
class Complexity:
    layers: tuple[LayerCost, ...]  # in the order the network runs

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def flops(self) -> int:
        return sum(layer.flops for layer in self.layers)

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    def summary_lines(self) -> list[str]:
        """The seed's two output lines."""
        return [f"Number of params: {self.params / 1e6} Million", f"Number of flops: {self.flops / 1e6} Million"]

    def table(self) -> str:
        """One line per layer, then the totals."""
        header = ("layer", "kind", "output", "params", "flops", "MACs")
        rows = [header] + [
            (
                layer.name,
                layer.kind,
                "x".join(map(str, layer.output_shape)),
                f"{layer.params:,}",
                f"{layer.flops:,}",
                f"{layer.macs:,}",
            )
            for layer in self.layers
        ]
        rows.append(("total", "", "", f"{self.params:,}", f"{self.flops:,}", f"{self.macs:,}"))
        lines = format_columns(rows, first_numeric=3).splitlines()
        rule = "-" * len(max(lines, key=len))
        return "\n".join([lines[0], rule, *lines[1:-1], rule, lines[-1]])


def format_columns(rows: list[tuple[str, ...]], first_numeric: int) -> str:
    """Align rows of cells in columns: text left-aligned, columns from ``first_numeric`` on right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.rjust(w) if i >= first_numeric else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))).rstrip()
        for row in rows
    )


def layer_names(net: nn.Module) -> dict[nn.Module, str]:
    """Caffe-style names of the counted layers: ``conv_<lego>``, ``bn_<lego>``, a layer's own
    ``name`` where it has one, otherwise its path in the module."""
    names: dict[nn.Module, str] = {}
    for path, module in net.named_modules():
        if isinstance(module, ConvBN):
            names[module.conv] = f"conv_{module.name}"
            names[module.bn] = f"bn_{module.name}"
        elif isinstance(module, _COUNTED) and module not in names:
            names[module] = getattr(module, "name", path)
    return names


def _cost(name: str, module: nn.Module, output: torch.Tensor) -> LayerCost:
    shape = tuple(output.shape[1:])
    if isinstance(module, nn.Conv2d):
        weights = module.weight.numel()
        positions = output.shape[2] * output.shape[3]
        return LayerCost(name, "Convolution", shape, weights, weights * positions, weights * positions)
    if isinstance(module, nn.BatchNorm2d):
        # Caffe's BatchNorm (mean blob, C) and Scale (gamma blob, C) layers, as one row.
        both = 2 * module.num_features
        return LayerCost(name, "BatchNorm+Scale", shape, both, both, 0)
    if isinstance(module, nn.Linear):
        weights = module.weight.numel()
        return LayerCost(name, "InnerProduct", shape, weights, weights, weights)
    return LayerCost(name, "Pooling", shape, 0, 0, 0)


def count_complexity(net: nn.Module, input_size: int | None = None) -> Complexity:
    """Run one forward pass of a single image and count every conv, BN, FC and pooling layer.

    ``input_size`` defaults to the net's own ``input_size``. The net is put in eval mode for the
    pass (so BatchNorm statistics are untouched) and returned to its previous mode.
    """
    size = input_size if input_size is not None else getattr(net, "input_size", None)
    if size is None:
        raise ValueError("input_size is required for a module that does not record its own")
    names = layer_names(net)
    layers: list[LayerCost] = []
    hooks = [
        module.register_forward_hook(lambda m, _inputs, output, name=name: layers.append(_cost(name, m, output)))
        for module, name in names.items()
    ]
    was_training = net.training
    parameter = next(net.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    try:
        net.eval()
        with torch.no_grad():
            net(torch.zeros(1, 3, size, size, device=device))
    finally:
        net.train(was_training)
        for hook in hooks:
            hook.remove()
    return Complexity(tuple(layers))
