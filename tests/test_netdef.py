"""Netdefs as YAML: round trips, and errors that name the file and the key."""

import pytest

from torchonspark.netdefs import NetDef, count_complexity, load_model, load_netdef
from torchonspark.netdefs.netdef import models_dir


def test_netdef_round_trips_through_yaml(tmp_path):
    netdef = load_model("resnet_68_1by2_inception_trick_bottleneck_with4k").replace(num_classes=10, input_size=96)
    path = tmp_path / "net.yaml"
    path.write_text(netdef.to_yaml())
    assert load_netdef(path) == netdef
    assert load_model(str(path)) == netdef


def test_conf_models_are_found_with_the_installed_package():
    assert (models_dir() / "resnet_50.yaml").is_file()
    netdef = load_model("resnet_50")
    assert (netdef.main_branch, netdef.num_output_stage1, netdef.blocks, netdef.fc_layers) == (
        "bottleneck",
        256,
        (3, 4, 6, 3),
        False,
    )
    assert count_complexity(netdef.build()).params == 25_556_032


@pytest.mark.parametrize(
    "text, message",
    [
        ("name: x\nmain_branch: normal\nnum_output_stage1: 64\nblocks: [2, 2, 2, 2]\ndepth: 3\n", "unknown key 'depth'"),
        ("name: x\nmain_branch: normal\nblocks: [2, 2, 2, 2]\n", "missing key 'num_output_stage1'"),
        ("name: x\nmain_branch: normal\nnum_output_stage1: '64'\nblocks: [2, 2, 2, 2]\n", "num_output_stage1"),
        ("name: x\nmain_branch: normal\nnum_output_stage1: 64\nblocks: [2, 2, 2]\n", "blocks must be four"),
        ("name: x\nmain_branch: normal\nnum_output_stage1: 64\nblocks: [2, 2, 2, 2]\nfc_layers: 1\n", "fc_layers"),
        ("- just\n- a list\n", "expected a mapping"),
        ("name: [unclosed\n", "not valid YAML"),
    ],
)
def test_a_bad_netdef_file_is_refused_naming_the_file_and_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as caught:
        load_netdef(path)
    assert str(path) in str(caught.value)


def test_an_unknown_model_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="resnet_50_1by2"):
        load_model("resnet_51")


def test_a_missing_netdef_file_says_it_cannot_be_read(tmp_path):
    with pytest.raises(ValueError, match="cannot read .*absent.yaml"):
        load_model(str(tmp_path / "absent.yaml"))


def test_netdef_refuses_an_empty_name():
    with pytest.raises(ValueError, match="name"):
        NetDef(name="", main_branch="normal", num_output_stage1=64, blocks=(2, 2, 2, 2))


def test_a_yaml_tag_that_would_build_an_object_is_refused_in_one_line(tmp_path):
    path = tmp_path / "netdef.yaml"
    path.write_text('name: !!python/object/apply:os.system ["echo this must never run"]\nmain_branch: normal\n')
    with pytest.raises(ValueError) as refused:
        load_netdef(path)
    assert str(path) in str(refused.value) and "not plain data" in str(refused.value) and "\n" not in str(refused.value)
