"""The seed's command: its flags, its two output lines, its files, and one-line refusals."""

import subprocess
import sys
from pathlib import Path

import pytest

from torchonspark.netdefs import load_netdef
from torchonspark.netdefs.cli import main
from torchonspark.netdefs.prototxt import parse_prototxt

BUILD_RESNET = Path(sys.executable).with_name("build_resnet")
SEED_RESNET_50 = ["-m", "bottleneck", "-b", "3", "4", "6", "3", "-n", "256", "--no-fc_layers"]


def run_main(capsys, *argv):
    try:
        status = main(list(argv))
    except SystemExit as exit_:
        status = exit_.code
    out, err = capsys.readouterr()
    return status, out, err


def test_console_script_prints_the_seeds_two_lines_for_resnet_50(tmp_path):
    result = subprocess.run(
        [str(BUILD_RESNET), *SEED_RESNET_50, "-o", str(tmp_path / "out")], capture_output=True, text=True, check=True
    )
    assert result.stdout == "Number of params: 25.556032 Million\nNumber of flops: 3858.026368 Million\n"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["netdef.yaml", "test.prototxt", "train.prototxt"]


def test_output_folder_holds_prototxts_and_a_netdef_that_rebuilds_the_same_net(tmp_path, capsys):
    out = tmp_path / "out"
    status, first, _ = run_main(capsys, "-m", "inception_trick", "-n", "64", "-b", "2", "2", "2", "2", "--fc_layers", "-o", str(out))
    assert status == 0
    layers = parse_prototxt((out / "train.prototxt").read_text())["layer"]
    assert layers[-1]["type"] == ["SoftmaxWithLoss"]
    assert parse_prototxt((out / "test.prototxt").read_text())["layer"][-1]["type"] == ["Accuracy"]
    netdef = load_netdef(out / "netdef.yaml")
    assert (netdef.main_branch, netdef.blocks, netdef.fc_layers) == ("inception_trick", (2, 2, 2, 2), True)
    status, again, _ = run_main(capsys, "--model", str(out / "netdef.yaml"))
    assert (status, again) == (0, first)
    assert first == "Number of params: 21.585936 Million\nNumber of flops: 1434.303312 Million\n"


def test_model_by_name_with_flags_overriding_its_values(capsys):
    _, by_flags, _ = run_main(capsys, "-m", "bottleneck", "-n", "128", "-b", "3", "4", "15", "3")
    _, by_model, _ = run_main(capsys, "--model", "resnet_50", "-b", "3", "4", "15", "3", "-n", "128")
    _, named, _ = run_main(capsys, "--model", "resnet_77_1by2")
    assert by_flags == by_model == named == "Number of params: 9.447104 Million\nNumber of flops: 1560.935936 Million\n"


def test_table_lists_layers_with_shapes_and_ends_with_totals(capsys):
    status, out, _ = run_main(capsys, "--model", "resnet_18", "--table", "--input-size", "64", "--num-classes", "10")
    lines = out.splitlines()
    assert status == 0
    assert lines[0].split() == ["layer", "kind", "output", "params", "flops", "MACs"]
    assert lines[2].split()[:3] == ["conv_1", "Convolution", "64x32x32"]
    total = next(line for line in lines if line.startswith("total")).split()
    assert total[1] == "11,181,632"
    assert lines[-2] == "Number of params: 11.181632 Million"


def test_list_models_prints_every_conf_model(capsys):
    status, out, _ = run_main(capsys, "--list-models")
    assert status == 0
    assert "resnet_50 " in out and "25.556032" in out and "3858.026368" in out
    assert len(out.splitlines()) == 1 + 9


def test_existing_output_is_refused_and_left_untouched_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "train.prototxt").write_text("mine")
    status, stdout, err = run_main(capsys, *SEED_RESNET_50, "-o", str(out))
    assert status == 2 and stdout == ""
    assert "train.prototxt already exists; pass --overwrite" in err
    assert (out / "train.prototxt").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == ["train.prototxt"]
    status, _, _ = run_main(capsys, *SEED_RESNET_50, "-o", str(out), "--overwrite")
    assert status == 0
    assert (out / "train.prototxt").read_text().startswith('name: "resnet_bottleneck_256_3-4-6-3"')


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "give -m/--main_branch or --model"),
        (["-m", "wide"], "invalid choice: 'wide'"),
        (["-m", "bottleneck", "-b", "3", "4", "6"], "blocks must be four positive integers"),
        (["-m", "bottleneck", "-b", "3", "x", "6", "3"], "invalid int value: 'x'"),
        (["-m", "bottleneck", "-n", "130"], "divisible by 4"),
        (["--model", "resnet_51"], "unknown model 'resnet_51'"),
        (["--model", "resnet_18", "--input-size", "3"], "input_size must be"),
    ],
)
def test_wrong_input_is_one_line_on_stderr_with_status_2(capsys, argv, message):
    status, out, err = run_main(capsys, *argv)
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("build_resnet: error: ")
    assert message in err


def test_unwritable_output_folder_is_one_line_with_status_2(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = subprocess.run(
        [str(BUILD_RESNET), "--model", "resnet_18", "-o", str(blocker / "out")], capture_output=True, text=True
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "cannot create the folder" in result.stderr
    assert "Traceback" not in result.stderr
