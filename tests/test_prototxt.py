"""The Caffe writer names and orders layers as the seed did; the reader reads the text format."""

import pytest

from torchonspark.netdefs import build_resnet, load_model
from torchonspark.netdefs.prototxt import Enum, format_message, parse_prototxt, to_prototxt


def layers_of(net, phase="train"):
    return {layer["name"][0]: layer for layer in parse_prototxt(to_prototxt(net, phase, "n"))["layer"]}


def test_reader_reads_nested_repeated_fields_enums_and_comments():
    text = 'name: "x" # comment\nlayer { name: "a" top: "a" top: "b" p { pool: MAX k: 3 r: 0.2 on: true } }\nlayer { name: "c" }'
    parsed = parse_prototxt(text)
    assert parsed["name"] == ["x"]
    first, second = parsed["layer"]
    assert first["top"] == ["a", "b"]
    assert first["p"] == [{"pool": ["MAX"], "k": [3], "r": [0.2], "on": [True]}]
    assert second == {"name": ["c"]}


def test_writer_output_parses_back_to_the_same_values():
    message = [("name", 'say "hi"'), ("inner", [("pool", Enum("AVE")), ("k", 7), ("flag", False)]), ("name", "b")]
    assert parse_prototxt(format_message(message)) == {
        "name": ['say "hi"', "b"],
        "inner": [{"pool": ["AVE"], "k": [7], "flag": [False]}],
    }


@pytest.mark.parametrize("text", ["layer { name: 'a'", "layer }", "name:", "name: }", "{ name: 'a' }", "a: 1 }"])
def test_reader_refuses_broken_text(text):
    with pytest.raises(ValueError, match="prototxt"):
        parse_prototxt(text.replace("'", '"'))


def test_resnet_50_layers_use_the_seed_tools_names_and_order():
    layers = layers_of(load_model("resnet_50").build())
    names = list(layers)
    assert names[:6] == ["data", "conv_1", "bn_1", "scale_1", "relu_1", "pool1"]
    assert names[6:10] == [
        "conv_stage0_block0_proj_shortcut",
        "bn_stage0_block0_proj_shortcut",
        "scale_stage0_block0_proj_shortcut",
        "conv_stage0_block0_branch2a",
    ]
    assert names[-3:] == ["pool", "fc1000", "loss"]
    assert layers["eltwise_stage0_block0"]["bottom"] == [
        "conv_stage0_block0_proj_shortcut",
        "conv_stage0_block0_branch2c",
    ]
    assert layers["eltwise_stage0_block1"]["bottom"] == ["eltwise_stage0_block0", "conv_stage0_block1_branch2c"]
    assert layers["pool"]["pooling_param"][0] == {"pool": ["AVE"], "kernel_size": [7], "stride": [1]}
    assert layers["pool1"]["pooling_param"][0] == {"pool": ["MAX"], "kernel_size": [3], "stride": [2]}
    assert layers["fc1000"]["inner_product_param"][0]["num_output"] == [1000]


def test_inception_trick_convolutions_are_written_with_height_and_width_apart():
    layers = layers_of(build_resnet("inception_trick", 64, [1, 1, 1, 1], fc_layers=False))
    first = layers["conv_stage1_block0_branch_3by1a"]["convolution_param"][0]
    assert (first["kernel_h"], first["kernel_w"], first["stride_h"], first["stride_w"]) == ([1], [3], [1], [2])
    assert (first["pad_h"], first["pad_w"]) == ([0], [1])
    second = layers["conv_stage1_block0_branch_1by3a"]["convolution_param"][0]
    assert (second["kernel_h"], second["kernel_w"], second["stride_h"], second["stride_w"]) == ([3], [1], [2], [1])


def test_fc_stage_is_written_as_the_seed_wrote_it():
    layers = layers_of(load_model("resnet_36_inception_trick_with4k").build(), "test")
    names = list(layers)
    assert names[-13:] == [
        "relu_1by1_2048",
        "pool",
        "conv_1by1_4096",
        "bn_1by1_4096",
        "scale_1by1_4096",
        "relu_1by1_4096",
        "drop_1by1_4096",
        "conv_1by1_1000",
        "bn_1by1_1000",
        "scale_1by1_1000",
        "relu_1by1_1000",
        "loss",
        "accuracy",
    ]
    assert layers["drop_1by1_4096"]["dropout_param"][0] == {"dropout_ratio": [0.2]}
    assert layers["accuracy"]["bottom"] == ["conv_1by1_1000", "label"]


def test_a_net_for_small_images_pools_its_whole_final_map():
    layers = layers_of(build_resnet("normal", 64, [1, 1, 1, 1], fc_layers=False, num_classes=10, input_size=64))
    assert layers["pool"]["pooling_param"][0]["kernel_size"] == [2]
    assert layers["data"]["memory_data_param"][0]["height"] == [64]
    assert "fc10" in layers


def test_unknown_phase_is_refused():
    with pytest.raises(ValueError, match="phase"):
        to_prototxt(build_resnet("normal", 64, [1, 1, 1, 1], fc_layers=False), "val", "n")


@pytest.mark.parametrize("name", ["two\nlines", "tab\there", 'quote " and \\ back', "bell\x07", "ünïcode"])
def test_a_net_name_with_control_characters_is_escaped_and_reads_back(name):
    text = to_prototxt(build_resnet("normal", 16, [1, 1, 1, 1], fc_layers=False, num_classes=2, input_size=32), "test", name)
    first_line = text.splitlines()[0]
    assert first_line.startswith('name: "') and first_line.endswith('"')  # the name stays on its line
    assert parse_prototxt(text)["name"] == [name]


def test_the_reader_refuses_a_raw_newline_inside_a_string_as_protobuf_does():
    with pytest.raises(ValueError, match="raw control character"):
        parse_prototxt('name: "two\nlines"')


def test_the_reader_decodes_octal_and_hex_escapes_as_utf8_bytes():
    assert parse_prototxt(r'name: "\303\274 \x41\n"')["name"] == ["ü A\n"]
