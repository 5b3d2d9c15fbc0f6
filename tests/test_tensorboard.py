"""TensorBoard: the worker's event files in RUN/tb, read back as `tensorboard --logdir RUN/tb` reads them
(its own multiplexer), hold what metrics.jsonl holds; a resume adds an event file whose steps
continue from its checkpoint; a run folder that is not on local disk gets them copied whole."""

import json
import subprocess
import sys

import pyarrow.fs as pafs
import pytest
from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.util import tensor_util

from short_recipes import LOGGED as RECIPE

from torchonspark.datasets import fs
from torchonspark.sparkjobs.engine.tensorboard import LAYERS, SCALARS, TrainingBoard


def run_worker(*argv):
    """The worker alone, in one plain process (no Spark, no torchrun)."""
    return subprocess.run([sys.executable, "-m", "torchonspark.sparkjobs.train_worker", "--threads", "1", *argv],
                          capture_output=True, text=True, timeout=300)


def board(folder):
    """The folder's runs as TensorBoard loads them (its Python loader, `--load_fast=false`)."""
    multiplexer = EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(folder))
    multiplexer.Reload()
    return multiplexer


def scalars(multiplexer, tag, run="."):
    """{step: value} of a scalar, each step logged once."""
    events = multiplexer.Tensors(run, tag)
    values = {event.step: float(tensor_util.make_ndarray(event.tensor_proto)) for event in events}
    assert len(values) == len(events), f"{tag}: a step appears twice in {[event.step for event in events]}"
    return values


def metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_the_run_folder_holds_tensorboard_events_that_agree_with_metrics_jsonl_across_a_resume(digits_parquet, tmp_path):
    data, _ = digits_parquet
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(RECIPE)
    run = tmp_path / "run"
    first = run_worker("--recipe", str(recipe), "--data", str(data), "--output", str(run))
    assert first.returncode == 0, first.stderr[-2000:]

    loaded = board(run / "tb")
    assert list(loaded.Runs()) == ["."]  # the hyper-parameters too are in the run itself, not in a sub-run
    assert set(SCALARS) <= set(loaded.Runs()["."]["tensors"])
    records = metrics(run)
    displays = {r["iteration"]: r for r in records if "loss" in r}
    validations = {r["iteration"]: r for r in records if "val_top1" in r}
    assert sorted(scalars(loaded, "train/loss")) == sorted(displays) == [2, 4, 6, 8, 10]
    for tag, key in (("train/loss", "loss"), ("train/lr", "lr"), ("train/images_per_sec", "images_per_sec")):
        assert scalars(loaded, tag) == pytest.approx({i: r[key] for i, r in displays.items()}, rel=1e-6)
    assert sorted(validations) == [5, 10]
    for tag, key in (("val/top1", "val_top1"), ("val/top5", "val_top5")):
        assert scalars(loaded, tag) == pytest.approx({i: r[key] for i, r in validations.items()}, rel=1e-6)

    layers = tensor_util.make_ndarray(loaded.Tensors(".", LAYERS)[0].tensor_proto).item().decode()
    assert "Convolution" in layers and "Number of params:" in layers  # build_resnet --table's lines
    hparams = loaded.PluginRunToTagToContent(hparams_metadata.PLUGIN_NAME)["."]
    start = hparams_metadata.parse_session_start_info_plugin_data(hparams[hparams_metadata.SESSION_START_INFO_TAG])
    assert start.hparams["model"].string_value == "tiny" and start.hparams["base_lr"].number_value == 0.05
    assert start.hparams["world_size"].number_value == 1 and start.hparams["device"].string_value == "cpu"
    experiment = hparams_metadata.parse_experiment_plugin_data(hparams[hparams_metadata.EXPERIMENT_TAG])
    assert [metric.name.tag for metric in experiment.metric_infos] == ["val/top1", "val/top5"]
    assert hparams_metadata.SESSION_END_INFO_TAG in hparams  # the run finished

    # Resumed from the checkpoint at 5, as after a failure there: what the first start logged after it is dropped.
    (run / "checkpoints" / "iter-00000010.pt").unlink()
    again = run_worker("--recipe", str(recipe), "--data", str(data), "--output", str(run), "--resume", "--max-iter", "12")
    assert again.returncode == 0, again.stderr[-2000:]
    assert len(list((run / "tb").glob("events.out.tfevents.*"))) == 2
    loaded = board(run / "tb")
    records = metrics(run)
    assert sorted(scalars(loaded, "train/loss")) == [r["iteration"] for r in records if "loss" in r] == [2, 4, 6, 8, 10, 12]
    assert scalars(loaded, "train/loss") == pytest.approx({r["iteration"]: r["loss"] for r in records if "loss" in r}, rel=1e-6)
    assert scalars(loaded, "val/top1") == pytest.approx({r["iteration"]: r["val_top1"] for r in records if "val_top1" in r},
                                                        rel=1e-6)


def test_a_run_folder_elsewhere_than_local_disk_gets_the_event_files_copied_whole_at_each_sync(tmp_path):
    # A filesystem that is not pyarrow's LocalFileSystem, as HDFS is not; its files are on this disk.
    remote = pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())
    folder = fs.Location("remote://tb", remote, "tb")
    writer = TrainingBoard(folder, resumed_from=0)
    staging = writer._staging
    writer.display(2, 1.5, 0.1, 100.0)
    assert not (tmp_path / "tb").exists()  # nothing is written there between syncs
    writer.sync()
    (uploaded,) = (tmp_path / "tb").iterdir()
    assert uploaded.name.startswith("events.out.tfevents.")
    assert scalars(board(tmp_path / "tb"), "train/loss") == {2: 1.5}
    writer.validation(5, 0.5, 0.75)
    writer.close(finished=True)
    assert [path.name for path in (tmp_path / "tb").iterdir()] == [uploaded.name]  # replaced whole, under its name
    assert scalars(board(tmp_path / "tb"), "val/top5") == {5: 0.75}
    assert not staging.exists()
