"""The legos: small blocks that compose into networks.

Every lego carries the ``name`` the seed tool gave it; the Caffe writer and the complexity table
derive layer names from it (``conv_<name>``, ``bn_<name>``, ``scale_<name>``, ``relu_<name>``,
``eltwise_<name>``), so a layer reads the same in the prototxt, the table and the state dict.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

Pair = int | tuple[int, int]
NormLayer = Callable[[int], nn.Module]


def _pair(value: Pair) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


class ConvBN(nn.Module):
    """Convolution (no bias: the BatchNorm that follows makes it redundant) then BatchNorm.

    Kernel, stride and padding are ``int`` or ``(height, width)``.
    """

    def __init__(
        self,
        name: str,
        in_channels: int,
        out_channels: int,
        kernel_size: Pair,
        stride: Pair = 1,
        padding: Pair = 0,
        norm_layer: NormLayer = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.name = name
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size=_pair(kernel_size),
            stride=_pair(stride),
            padding=_pair(padding),
            bias=False,
        )
        self.bn = norm_layer(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class ConvBNReLU(ConvBN):
    """ConvBN followed by an in-place ReLU."""

    def __init__(
        self,
        name: str,
        in_channels: int,
        out_channels: int,
        kernel_size: Pair,
        stride: Pair = 1,
        padding: Pair = 0,
        norm_layer: NormLayer = nn.BatchNorm2d,
    ) -> None:
        super().__init__(name, in_channels, out_channels, kernel_size, stride, padding, norm_layer)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(super().forward(x))


class EltwiseSumReLU(nn.Module):
    """Joins two branches: element-wise sum, then ReLU."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.relu = nn.ReLU(inplace=True)

    def forward(self, shortcut: torch.Tensor, main: torch.Tensor) -> torch.Tensor:
        return self.relu(shortcut + main)


class ShortcutBlock(nn.Module):
    """A residual block: shortcut (identity when ``shortcut`` is None, else a projection) plus a
    main branch, joined by EltwiseSumReLU.

    The caller decides the shortcut (as torchvision does where it assembles a stage); the block only
    applies it. The shortcut runs first, as the seed tool ordered the layers.
    """

    def __init__(self, name: str, main: nn.Sequential, shortcut: ConvBN | None = None) -> None:
        super().__init__()
        self.name = name
        self.shortcut = shortcut
        self.main = main
        self.join = EltwiseSumReLU(name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        return self.join(identity, self.main(x))


def zero_init_residual(net: nn.Module) -> int:
    """Start every residual block as the identity: the BatchNorm that ends each main branch scales by
    zero (Goyal et al. 2017, section 5.1; torchvision's ``zero_init_residual``), which large-batch
    training needs in its first iterations. A branch that ends in a ReLU (the seed's inception
    trick) is left as it is: a ReLU of exactly zero passes no gradient, so that BatchNorm would
    never learn. Returns how many blocks it changed."""
    changed = 0
    for block in net.modules():
        if isinstance(block, ShortcutBlock) and type(block.main[-1]) is ConvBN:
            nn.init.zeros_(block.main[-1].bn.weight)
            changed += 1
    return changed
