"""The ONNX export: the model folder's network as model.onnx, run by onnxruntime, gives torch's logits
and top-1 on the digits' val split; usage errors are one line."""

import json

import pytest

from torchonspark.datasets import fs
from torchonspark.netdefs import NetDef
from torchonspark.sparkjobs import onnx_export
from torchonspark.sparkjobs.engine.export import export_model
from torchonspark.sparkjobs.engine.onnxexport import check_onnx, export_onnx

TINY = NetDef("tiny", "normal", 16, (1, 1, 1, 1), fc_layers=False, num_classes=10, input_size=32)


@pytest.fixture(scope="module")
def model(digits_parquet, tmp_path_factory):
    """A freshly initialised network exported as a model folder (its top-1 is low: what matters is
    that onnxruntime agrees with torch on every image, right or wrong)."""
    data, _ = digits_parquet
    folder = fs.resolve(str(tmp_path_factory.mktemp("onnx") / "model"))
    labels = json.loads((data / "labels.json").read_text())
    export_model(TINY.build().eval(), TINY, labels, folder)
    return folder


def test_onnxruntime_gives_torchs_logits_and_top1_on_the_val_split(digits_parquet, model):
    data, _ = digits_parquet
    target = export_onnx(model)
    assert target.url.endswith("model/model.onnx") and target.read_bytes()[:2] != b""
    result = check_onnx(model, fs.resolve(str(data / "val")), batch_size=64)
    assert result["images"] == 360 and result["same_top1"] == 360
    assert result["onnx_top1"] == result["torch_top1"] and result["max_logit_difference"] < 1e-3


def test_the_onnx_command_writes_and_checks_and_refuses_a_folder_that_is_not_a_model(digits_parquet, model, tmp_path, capsys):
    data, _ = digits_parquet
    assert onnx_export.main(["--model", model.url, "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert f"ONNX model -> {model.join('model.onnx').url}" in out and "the same class for 360/360 images" in out
    with pytest.raises(SystemExit) as refused:
        onnx_export.main(["--model", str(tmp_path)])
    err = capsys.readouterr().err
    assert refused.value.code == 2 and err.count("\n") == 1 and "is not an exported model folder" in err
