"""Every model of conf/models builds, runs, and is counted the same way an independent counter counts it."""

import math

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from torchonspark.netdefs import count_complexity, load_model, model_names
from torchonspark.netdefs.prototxt import parse_prototxt, to_prototxt

MODELS = model_names()

# The seed's published tables (pynetbuilder models/imagenet/Readme.md): params and flops in
# millions, truncated to two decimals as printed there.
SEED_TABLE = {
    "resnet_50": (25.55, 3858.02),
    "resnet_50_1by2": (6.92, 1069.59),
    "resnet_77_1by2": (9.44, 1560.93),
    "resnet_66_1by2_inception_trick_bottleneck": (5.98, 915.46),
    "resnet_68_1by2_inception_trick_bottleneck_with4k": (19.55, 1029.69),
    "resnet_34_inception_trick": (8.55, 1370.93),
    "resnet_36_inception_trick_with4k": (21.58, 1434.30),
}


def truncate2(value: float) -> float:
    return math.floor(value * 100 + 1e-9) / 100


@pytest.fixture(scope="module", params=MODELS)
def imagenet_model(request):
    netdef = load_model(request.param)
    return netdef, netdef.build()


def test_conf_models_holds_every_row_of_the_seed_tables_plus_resnet_18_and_34():
    assert set(MODELS) == set(SEED_TABLE) | {"resnet_18", "resnet_34"}


@pytest.mark.parametrize("name", MODELS)
def test_model_runs_a_small_batch_to_finite_logits_of_the_right_shape(name):
    torch.manual_seed(0)
    net = load_model(name).replace(num_classes=10, input_size=64).build()
    net.train()
    logits = net(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 10)
    assert torch.isfinite(logits).all()
    logits.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_seed_convention_flops_equal_half_of_torch_flop_counter_plus_batchnorm_terms(imagenet_model):
    _, net = imagenet_model
    complexity = count_complexity(net)
    net.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.zeros(1, 3, 224, 224))
    # FlopCounterMode counts 2 per multiply-add of convolutions and matrix products, nothing else.
    assert 2 * complexity.macs == counter.get_total_flops()
    batchnorm_terms = sum(2 * m.num_features for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    assert complexity.flops == complexity.macs + batchnorm_terms


def test_seed_convention_params_are_torch_params_without_the_classifier_bias(imagenet_model):
    _, net = imagenet_model
    biases = sum(m.bias.numel() for m in net.modules() if isinstance(m, nn.Linear))
    assert count_complexity(net).params == sum(p.numel() for p in net.parameters()) - biases


@pytest.mark.parametrize("name", sorted(SEED_TABLE))
def test_counts_match_the_seed_published_table(name):
    complexity = count_complexity(load_model(name).build())
    assert (truncate2(complexity.params / 1e6), truncate2(complexity.flops / 1e6)) == SEED_TABLE[name]


# The two models the seed's tables lack are torchvision's ResNet-18 and ResNet-34 (a basic block has no
# 1x1, so v1 and torchvision's v1.5 agree): its weight metadata is their oracle. torchvision counts
# the classifier's 1,000 biases, which the seed's convention leaves out, and gives GMACs ("_ops").
@pytest.mark.parametrize("name, weights", [("resnet_18", "ResNet18_Weights"), ("resnet_34", "ResNet34_Weights")])
def test_resnet_18_and_34_match_torchvisions_published_params_and_operations(name, weights):
    import torchvision

    meta = getattr(torchvision.models, weights).IMAGENET1K_V1.meta
    complexity = count_complexity(load_model(name).build())
    assert complexity.params == meta["num_params"] - 1000
    assert round(complexity.macs / 1e9, 3) == meta["_ops"]


def test_prototxt_parses_back_with_one_convolution_layer_per_module_conv(imagenet_model):
    netdef, net = imagenet_model
    convs = sum(isinstance(m, nn.Conv2d) for m in net.modules())
    batchnorms = sum(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    for phase in ("train", "test"):
        parsed = parse_prototxt(to_prototxt(net, phase, netdef.name))
        assert parsed["name"] == [netdef.name]
        layers = parsed["layer"]
        kinds = [layer["type"][0] for layer in layers]
        assert kinds.count("Convolution") == convs
        assert kinds.count("BatchNorm") == kinds.count("Scale") == batchnorms
        stats = {layer["batch_norm_param"][0]["use_global_stats"][0] for layer in layers if "batch_norm_param" in layer}
        assert stats == {phase == "test"}
        assert ("Accuracy" in kinds) == (phase == "test")
        produced = set()
        for layer in layers:
            assert set(layer.get("bottom", [])) <= produced, f"{layer['name'][0]} reads a blob nothing wrote"
            produced |= set(layer["top"])
