"""The ResNet builder: the seed's figures, its v1 layout, and its refusals."""

import pytest
import torch
import torchvision

from torchonspark.netdefs import build_resnet, count_complexity, load_model
from torchonspark.netdefs.legos import ConvBN


def layer_shapes(net, input_size=None):
    return {layer.name: layer.output_shape for layer in count_complexity(net, input_size).layers}


def test_resnet_50_has_the_seeds_exact_params_and_flops():
    complexity = count_complexity(build_resnet("bottleneck", 256, [3, 4, 6, 3], fc_layers=False))
    assert complexity.params == 25_556_032
    assert complexity.flops == 3_858_026_368
    assert complexity.summary_lines() == [
        "Number of params: 25.556032 Million",
        "Number of flops: 3858.026368 Million",
    ]


@pytest.mark.parametrize(
    "model, torchvision_builder, published",
    [("resnet_18", torchvision.models.resnet18, 11_689_512), ("resnet_50", torchvision.models.resnet50, 25_557_032)],
)
def test_torch_parameter_count_equals_torchvisions_resnet(model, torchvision_builder, published):
    ours = sum(p.numel() for p in load_model(model).build().parameters())
    theirs = sum(p.numel() for p in torchvision_builder().parameters())
    assert ours == theirs == published


def test_pool1_rounds_up_as_caffe_does():
    net = build_resnet("normal", 64, [1, 1, 1, 1], fc_layers=False, input_size=227)
    shapes = layer_shapes(net)
    assert shapes["conv_1"] == (64, 114, 114)
    assert shapes["pool1"] == (64, 57, 57)  # floor rounding would give 56
    assert layer_shapes(load_model("resnet_50").build())["pool1"] == (64, 56, 56)


def test_downsampling_bottleneck_strides_its_first_1x1_as_in_resnet_v1():
    block = load_model("resnet_50").build().blocks.stage1_block0
    assert block.main.branch2a.conv.kernel_size == (1, 1) and block.main.branch2a.conv.stride == (2, 2)
    assert block.main.branch2b.conv.stride == (1, 1)
    assert block.shortcut.conv.stride == (2, 2)


def test_inception_trick_strides_width_in_its_1x3_and_height_in_its_3x1():
    main = build_resnet("inception_trick", 64, [1, 1, 1, 1], fc_layers=False).blocks.stage2_block0.main
    convs = [lego.conv for lego in main]
    assert [c.kernel_size for c in convs] == [(1, 3), (3, 1), (1, 3), (3, 1)]
    assert [c.stride for c in convs] == [(1, 2), (2, 1), (1, 1), (1, 1)]
    assert [c.padding for c in convs] == [(0, 1), (1, 0), (0, 1), (1, 0)]
    assert len(set(c.out_channels for c in convs)) == 1


def test_inception_trick_bottleneck_is_1x1_1x3_3x1_1x1_at_quarter_width():
    main = build_resnet("inception_trick_bottleneck", 128, [1, 1, 1, 1], fc_layers=False).blocks.stage0_block0.main
    convs = [lego.conv for lego in main]
    assert [c.kernel_size for c in convs] == [(1, 1), (1, 3), (3, 1), (1, 1)]
    assert [c.out_channels for c in convs] == [32, 32, 32, 128]


@pytest.mark.parametrize(
    "main_branch, first_shortcut", [("normal", None), ("inception_trick", None), ("bottleneck", ConvBN)]
)
def test_first_block_of_stage_0_projects_only_for_bottlenecks(main_branch, first_shortcut):
    net = build_resnet(main_branch, 64, [2, 2, 2, 2], fc_layers=False)
    shortcut = net.blocks.stage0_block0.shortcut
    assert shortcut is None if first_shortcut is None else isinstance(shortcut, first_shortcut)
    assert net.blocks.stage0_block1.shortcut is None
    assert all(isinstance(net.blocks.get_submodule(f"stage{s}_block0").shortcut, ConvBN) for s in (1, 2, 3))


def test_a_wider_normal_net_projects_its_first_block_so_the_sum_adds_up():
    net = build_resnet("normal", 96, [1, 1, 1, 1], fc_layers=False, num_classes=5, input_size=64)
    assert isinstance(net.blocks.stage0_block0.shortcut, ConvBN)
    assert net(torch.randn(1, 3, 64, 64)).shape == (1, 5)


def test_stage_k_is_n_times_2_to_the_k_wide():
    net = build_resnet("bottleneck", 128, [1, 1, 1, 1], fc_layers=False)
    widths = [net.blocks.get_submodule(f"stage{k}_block0").main.branch2c.conv.out_channels for k in range(4)]
    assert widths == [128, 256, 512, 1024]


def test_fc_stage_ends_in_a_relu_1x1_conv_with_one_channel_per_class():
    net = build_resnet("normal", 64, [1, 1, 1, 1], fc_layers=True, num_classes=7, input_size=64).eval()
    logits = net(torch.randn(3, 3, 64, 64))
    assert logits.shape == (3, 7)
    assert (logits >= 0).all()
    shapes = layer_shapes(net)
    assert shapes["conv_1by1_2048"] == (2048, 2, 2) and shapes["pool"] == (2048, 1, 1)
    assert shapes["conv_1by1_4096"] == (4096, 1, 1) and shapes["conv_1by1_7"] == (7, 1, 1)
    assert net.head.drop.p == 0.2


def test_a_net_sized_for_224_pools_its_7x7_map_to_one_vector():
    shapes = layer_shapes(load_model("resnet_50").build())
    assert shapes["conv_stage3_block2_branch2c"] == (2048, 7, 7)
    assert shapes["pool"] == (2048, 1, 1) and shapes["fc1000"] == (1000,)


def test_counting_keeps_the_training_mode_and_batchnorm_statistics():
    net = build_resnet("normal", 64, [1, 1, 1, 1], fc_layers=False, input_size=32)
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    count_complexity(net)
    assert net.training
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_layer_table_runs_in_network_order_with_projection_before_main_branch():
    names = [layer.name for layer in count_complexity(load_model("resnet_50").build()).layers]
    assert names[:3] == ["conv_1", "bn_1", "pool1"]
    assert names.index("conv_stage0_block0_proj_shortcut") < names.index("conv_stage0_block0_branch2a")
    assert names[-2:] == ["pool", "fc1000"]


@pytest.mark.parametrize(
    "arguments, named",
    [
        (dict(blocks=[3, 4, 6]), "blocks"),
        (dict(blocks=[3, 4, 6, 0]), "blocks"),
        (dict(blocks=3), "blocks"),
        (dict(num_output_stage1=130), "num_output_stage1"),
        (dict(num_output_stage1=0), "num_output_stage1"),
        (dict(main_branch="wide"), "main_branch"),
        (dict(input_size=4), "input_size"),
        (dict(num_classes=0), "num_classes"),
        (dict(fc_layers="yes"), "fc_layers"),
    ],
)
def test_bad_arguments_raise_a_value_error_naming_the_argument(arguments, named):
    full = dict(main_branch="bottleneck", num_output_stage1=128, blocks=[3, 4, 6, 3], fc_layers=False)
    with pytest.raises(ValueError, match=named):
        build_resnet(**{**full, **arguments})


def test_an_unknown_main_branch_lists_the_allowed_ones():
    with pytest.raises(ValueError, match="normal, bottleneck, inception_trick, inception_trick_bottleneck"):
        build_resnet("wide", 64, [1, 1, 1, 1], fc_layers=False)


def test_smallest_allowed_input_runs_down_to_a_one_pixel_final_map():
    net = build_resnet("bottleneck", 64, [1, 1, 1, 1], fc_layers=False, num_classes=3, input_size=5).eval()
    images = torch.randn(1, 3, 5, 5)
    assert net.blocks(net.pool1(net.stem(images))).shape == (1, 64 * 8, 1, 1)
    assert net(images).shape == (1, 3)
