"""The SGD optimizer of a recipe, with the weight decay each kind of parameter gets.

Goyal et al. (2017) leave BatchNorm's scale and shift out of weight decay, and large-batch practice
its biases too; Caffe said the same with ``decay_mult: 0`` on those layers' params, torchvision's
reference script with ``--norm-weight-decay`` and ``--bias-weight-decay``. The rule is torchvision's:
every parameter of a normalisation layer is a norm parameter; any other ``bias`` is a bias.
"""

from __future__ import annotations

import torch
from torch import nn

from torchonspark.sparkjobs.engine.recipe import Recipe

NORM_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)


def decay_groups(net: nn.Module, weight_decay: float, norm_weight_decay: float | None,
                 bias_weight_decay: float | None) -> list[dict]:
    """Parameter groups, one per distinct weight decay, in the order parameters first appear (one
    group when every parameter decays alike, as before these keys existed, so old checkpoints load)."""
    groups: dict[float, list[nn.Parameter]] = {}
    for module in net.modules():
        for name, parameter in module.named_parameters(recurse=False):
            if isinstance(module, NORM_LAYERS) and norm_weight_decay is not None:
                decay = norm_weight_decay
            elif name == "bias" and bias_weight_decay is not None:
                decay = bias_weight_decay
            else:
                decay = weight_decay
            groups.setdefault(float(decay), []).append(parameter)
    return [{"params": params, "weight_decay": decay} for decay, params in groups.items()]


def sgd(net: nn.Module, recipe: Recipe) -> torch.optim.SGD:
    """The recipe's SGD (its rate is set at every step from the run's Schedule)."""
    groups = decay_groups(net, recipe.weight_decay, recipe.norm_weight_decay, recipe.bias_weight_decay)
    return torch.optim.SGD(groups, lr=recipe.base_lr, momentum=recipe.momentum)
