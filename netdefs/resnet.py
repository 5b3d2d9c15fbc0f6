"""ResNet variants as the seed tool (pynetbuilder) stitched them, built from the legos.

Reading order: the four main branches and their registry, the two heads, the network, the
argument checks, and ``build_resnet``.

These are v1 ResNets on purpose: a downsampling bottleneck strides its first 1x1 (torchvision's
"V1.5" moves it to the 3x3), and pool1 rounds its output size up as Caffe does.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch
from torch import nn

from .legos import ConvBN, ConvBNReLU, ShortcutBlock

STEM_CHANNELS = 64
FC_STAGE_WIDTHS = (2048, 4096)
FC_STAGE_DROPOUT = 0.2

MainBranch = Callable[[str, int, int, int], nn.Sequential]


# --- main branches: (block name, in channels, out channels, stride) -> the branch ---------------


def normal_branch(name: str, in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """3x3 ConvBNReLU (stride s) -> 3x3 ConvBN."""
    return nn.Sequential(
        OrderedDict(
            branch2a=ConvBNReLU(f"{name}_branch2a", in_channels, out_channels, 3, stride, 1),
            branch2b=ConvBN(f"{name}_branch2b", out_channels, out_channels, 3, 1, 1),
        )
    )


def bottleneck_branch(name: str, in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """1x1 ConvBNReLU n/4 (stride s) -> 3x3 ConvBNReLU n/4 -> 1x1 ConvBN n."""
    width = out_channels // 4
    return nn.Sequential(
        OrderedDict(
            branch2a=ConvBNReLU(f"{name}_branch2a", in_channels, width, 1, stride, 0),
            branch2b=ConvBNReLU(f"{name}_branch2b", width, width, 3, 1, 1),
            branch2c=ConvBN(f"{name}_branch2c", width, out_channels, 1, 1, 0),
        )
    )


# The seed names these layers width-by-height ("3by1" is 3 wide, 1 tall), the reverse of the
# height-by-width kernels below; the names are kept so prototxts and weights map onto the seed's.


def inception_trick_branch(name: str, in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """Each 3x3 of ``normal`` as a 1x3 then a 3x1, all ConvBNReLU; the first strides width only,
    the second height only."""
    n = out_channels
    return nn.Sequential(
        OrderedDict(
            branch_3by1a=ConvBNReLU(f"{name}_branch_3by1a", in_channels, n, (1, 3), (1, stride), (0, 1)),
            branch_1by3a=ConvBNReLU(f"{name}_branch_1by3a", n, n, (3, 1), (stride, 1), (1, 0)),
            branch_3by1b=ConvBNReLU(f"{name}_branch_3by1b", n, n, (1, 3), 1, (0, 1)),
            branch_1by3b=ConvBNReLU(f"{name}_branch_1by3b", n, n, (3, 1), 1, (1, 0)),
        )
    )


def inception_trick_bottleneck_branch(
    name: str, in_channels: int, out_channels: int, stride: int
) -> nn.Sequential:
    """1x1 ConvBNReLU n/4 (stride s) -> 1x3 ConvBNReLU n/4 -> 3x1 ConvBNReLU n/4 -> 1x1 ConvBN n."""
    width = out_channels // 4
    return nn.Sequential(
        OrderedDict(
            branch2a=ConvBNReLU(f"{name}_branch2a", in_channels, width, 1, stride, 0),
            branch_b_3by1=ConvBNReLU(f"{name}_branch_b_3by1", width, width, (1, 3), 1, (0, 1)),
            branch_b_1by3=ConvBNReLU(f"{name}_branch_b_1by3", width, width, (3, 1), 1, (1, 0)),
            branch2c=ConvBN(f"{name}_branch2c", width, out_channels, 1, 1, 0),
        )
    )


MAIN_BRANCHES: dict[str, MainBranch] = {
    "normal": normal_branch,
    "bottleneck": bottleneck_branch,
    "inception_trick": inception_trick_branch,
    "inception_trick_bottleneck": inception_trick_bottleneck_branch,
}
BOTTLENECK_BRANCHES = frozenset({"bottleneck", "inception_trick_bottleneck"})
IDENTITY_FIRST_BRANCHES = frozenset({"normal", "inception_trick"})


# --- heads ----------------------------------------------------------------------------------------


# Both heads average the whole final map: the seed's 7x7 pool at 224, and still one vector per image
# when a net built for one input size sees another.


class ClassifierHead(nn.Module):
    """Average pool over the final map + fully connected layer."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.pool.name = "pool"
        self.fc = nn.Linear(in_channels, num_classes)
        self.fc.name = f"fc{num_classes}"

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(x), 1)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(x))


class FCStageHead(nn.Module):
    """The seed's FC stage: 1x1 ConvBNReLU 2048 -> average pool -> 1x1 ConvBNReLU 4096 -> dropout 0.2
    -> 1x1 ConvBNReLU num_classes.

    The last ReLU acts on the logits; the seed trained its "with4k" models that way and it is kept.
    """

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        wide, wider = FC_STAGE_WIDTHS
        self.conv_in = ConvBNReLU(f"1by1_{wide}", in_channels, wide, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.pool.name = "pool"
        self.conv_mid = ConvBNReLU(f"1by1_{wider}", wide, wider, 1)
        self.drop = nn.Dropout(FC_STAGE_DROPOUT)
        self.drop.name = f"drop_1by1_{wider}"
        self.conv_out = ConvBNReLU(f"1by1_{num_classes}", wider, num_classes, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The 4096-wide vector the last 1x1 convolution classifies."""
        return torch.flatten(self.drop(self.conv_mid(self.pool(self.conv_in(x)))), 1)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.conv_out(features[:, :, None, None]), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(x))


# --- the network ----------------------------------------------------------------------------------


class ResNet(nn.Module):
    """Stem (7x7/2 ConvBNReLU 64, 3x3/2 max pool rounding up) -> shortcut blocks -> head."""

    def __init__(self, blocks: Sequence[ShortcutBlock], head: nn.Module, input_size: int) -> None:
        super().__init__()
        self.input_size = input_size
        self.stem = ConvBNReLU("1", 3, STEM_CHANNELS, 7, 2, 3)
        self.pool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.pool1.name = "pool1"
        self.blocks = nn.Sequential(OrderedDict((block.name, block) for block in blocks))
        self.head = head
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.pool1(self.stem(x))))

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the vector the classifier reads, the logits) for each image."""
        features = self.head.features(self.blocks(self.pool1(self.stem(x))))
        return features, self.head.classify(features)


def _init_weights(net: nn.Module) -> None:
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            # "msra", the seed's filler (He et al.), in torchvision's fan-out form.
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(module.bias)


# --- arguments ------------------------------------------------------------------------------------


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def _pool_out(size: int, kernel: int, stride: int) -> int:
    # Caffe (and torch's ceil_mode) round a pooled size up.
    return -(-(size - kernel) // stride) + 1


def final_map_size(input_size: int) -> int:
    """Side of the last stage's feature map for a square input (7 for 224)."""
    size = _pool_out(_conv_out(input_size, 7, 2, 3), 3, 2)
    for _ in range(3):
        size = _conv_out(size, 1, 2, 0)
    return size


def check_resnet_arguments(
    main_branch: str,
    num_output_stage1: int,
    blocks: Sequence[int],
    fc_layers: bool,
    num_classes: int,
    input_size: int,
) -> None:
    """Raise ValueError naming the first argument that cannot build a network."""
    if main_branch not in MAIN_BRANCHES:
        raise ValueError(f"main_branch must be one of {', '.join(MAIN_BRANCHES)}; got {main_branch!r}")
    if not _is_int(num_output_stage1) or num_output_stage1 < 1:
        raise ValueError(f"num_output_stage1 must be a positive integer; got {num_output_stage1!r}")
    if main_branch in BOTTLENECK_BRANCHES and num_output_stage1 % 4:
        raise ValueError(
            f"num_output_stage1 must be divisible by 4 for main_branch {main_branch!r} "
            f"(its bottleneck is n/4 wide); got {num_output_stage1}"
        )
    if not isinstance(blocks, (list, tuple)) or len(blocks) != 4 or not all(_is_int(b) and b > 0 for b in blocks):
        raise ValueError(f"blocks must be four positive integers (blocks per stage); got {blocks!r}")
    if not isinstance(fc_layers, bool):
        raise ValueError(f"fc_layers must be true or false; got {fc_layers!r}")
    if not _is_int(num_classes) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer; got {num_classes!r}")
    # pool1 needs a map of at least its 3x3 window; every later layer keeps at least 1x1.
    min_size = next(s for s in range(1, 64) if _conv_out(s, 7, 2, 3) >= 3)
    if not _is_int(input_size) or input_size < min_size:
        raise ValueError(f"input_size must be an integer of at least {min_size} pixels for this network; got {input_size!r}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# --- the builder ----------------------------------------------------------------------------------


def build_resnet(
    main_branch: str,
    num_output_stage1: int,
    blocks: Sequence[int],
    fc_layers: bool,
    num_classes: int = 1000,
    input_size: int = 224,
) -> ResNet:
    """Build a ResNet variant: four stages of shortcut blocks, stage k ``num_output_stage1 * 2**k``
    wide, the first block of each stage projecting (stride 2 after stage 0)."""
    check_resnet_arguments(main_branch, num_output_stage1, blocks, fc_layers, num_classes, input_size)
    make_branch = MAIN_BRANCHES[main_branch]
    shortcut_blocks: list[ShortcutBlock] = []
    in_channels = STEM_CHANNELS
    for stage, num_blocks in enumerate(blocks):
        out_channels = num_output_stage1 * 2**stage
        for index in range(num_blocks):
            name = f"stage{stage}_block{index}"
            first = index == 0
            stride = 2 if first and stage > 0 else 1
            # The seed gave ResNet-18/34-style nets an identity first block; that only adds up when
            # the stem's 64 channels already match the stage's width, so a wider one projects.
            keeps_width = stage == 0 and main_branch in IDENTITY_FIRST_BRANCHES and in_channels == out_channels
            shortcut = None
            if first and not keeps_width:
                shortcut = ConvBN(f"{name}_proj_shortcut", in_channels, out_channels, 1, stride, 0)
            shortcut_blocks.append(
                ShortcutBlock(name, make_branch(name, in_channels, out_channels, stride), shortcut)
            )
            in_channels = out_channels
    head_type = FCStageHead if fc_layers else ClassifierHead
    head = head_type(in_channels, num_classes)
    return ResNet(shortcut_blocks, head, input_size)
