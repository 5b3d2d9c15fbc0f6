"""The main job on its embedded default, as `make demo` runs it: digits -> Parquet -> 2 barrier
workers -> evaluate, on the shared local[2] session."""

import json

import pytest

from torchonspark.sparkjobs.demo import main

pytestmark = pytest.mark.e2e


def test_demo_reaches_99_percent_top1_on_the_digits(spark, tmp_path, capsys):
    assert main([str(tmp_path / "demo")]) == 0
    result = json.loads((tmp_path / "demo" / "eval.json").read_text())
    summary = json.loads((tmp_path / "demo" / "run" / "summary.json").read_text())
    assert result["images"] == 360 and summary["world_size"] == 2
    assert result["top1"] >= 0.99, result
    assert result["top1"] == pytest.approx(summary["val_top1"])
    out = capsys.readouterr().out
    assert "4/4 evaluate" in out and "plots/training.png" in out
    assert (tmp_path / "demo" / "eval.confusion.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(SystemExit):
        main([str(tmp_path / "demo")])  # refuses to overwrite
