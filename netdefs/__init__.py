"""Lego-style ResNet builder (imported as ``torchonspark.netdefs``).

Blocks are small ``nn.Module`` legos (``legos``) that compose into the seed's ResNet variants
(``resnet``); ``netdef`` holds a network as data and the named models of ``conf/models``;
``complexity`` counts params and FLOPs in the seed's convention; ``prototxt`` writes (and reads)
Caffe network definitions; ``cli`` is the ``build_resnet`` command. Imports only torch and pyyaml.
"""

from .complexity import Complexity, LayerCost, count_complexity
from .legos import ConvBN, ConvBNReLU, EltwiseSumReLU, ShortcutBlock
from .netdef import NetDef, load_model, load_netdef, model_names
from .resnet import MAIN_BRANCHES, ResNet, build_resnet

__all__ = [
    "MAIN_BRANCHES",
    "Complexity",
    "ConvBN",
    "ConvBNReLU",
    "EltwiseSumReLU",
    "LayerCost",
    "NetDef",
    "ResNet",
    "ShortcutBlock",
    "build_resnet",
    "count_complexity",
    "load_model",
    "load_netdef",
    "model_names",
]
