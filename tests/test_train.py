"""Distributed training end to end: real barrier tasks on local[2], torch.distributed (gloo), the
digits data; plus the worker alone under a plain process, resume, export, evaluate and features."""

import csv
import json
import shutil
import subprocess
import sys
from collections import Counter

import pyarrow.parquet as pq
import pytest
import torch

from torchonspark.datasets import fs
from torchonspark.datasets.loader import ShardedLoader
from torchonspark.datasets.transforms import EvalTransform
from torchonspark.sparkjobs import train_resnet
from torchonspark.sparkjobs import evaluate as evaluate_job
from torchonspark.sparkjobs.engine.export import export_model, load_inference_program, load_model_folder
from torchonspark.sparkjobs.engine.scoring import score_shard
from torchonspark.sparkjobs.evaluate import evaluate
from torchonspark.sparkjobs.features import extract_features

pytestmark = pytest.mark.e2e

SMALL = """model: {name: tiny, main_branch: normal, num_output_stage1: 16, blocks: [1, 1, 1, 1], fc_layers: false}
batch_size: 16
base_lr: 0.05
lr_policy: multistep
stepvalue: [15]
gamma: 0.5
max_iter: 20
crop_size: 32
scale_range: [32, 40]
mirror: false
test_interval: 10
display: 5
snapshot: 10
seed: 3
"""


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    path = tmp_path_factory.mktemp("conf") / "small.yaml"
    path.write_text(SMALL)
    return path


@pytest.fixture(scope="module")
def trained(spark, digits_parquet, recipe, tmp_path_factory):
    """A 2-worker run on barrier tasks, through the train job's own entry point."""
    data, _ = digits_parquet
    run = tmp_path_factory.mktemp("runs") / "run"
    status = train_resnet.main(["--conf", str(recipe), "--data", str(data), "--output", str(run), "--workers", "2", "--onnx"])
    assert status == 0  # --onnx: model.onnx is written and onnxruntime agrees with torch on every val image
    return data, run


def metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_two_workers_write_metrics_summary_plots_checkpoints_and_a_model(trained):
    _, run = trained
    lines = metrics(run)
    assert [r["iteration"] for r in lines if "loss" in r] == [5, 10, 15, 20]
    assert [r["iteration"] for r in lines if "val_top1" in r] == [10, 20]
    assert all(r["lr"] == (0.05 if r["iteration"] <= 15 else 0.025) for r in lines if "lr" in r)
    assert all(r["images_per_sec"] > 0 and r["loss"] > 0 for r in lines if "loss" in r)
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["world_size"], summary["iterations"], summary["device"]) == (2, 20, "cpu")
    assert summary["val_top1"] == lines[-1]["val_top1"] and 0 <= summary["val_top5"] <= 1
    assert summary["model"]["name"] == "tiny" and summary["model"]["num_classes"] == 10
    assert (run / "plots" / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["iter-00000010.pt", "iter-00000020.pt"]
    assert sorted(p.name for p in (run / "model").iterdir()) == sorted(
        ["weights.pt", "netdef.yaml", "labels.json", "preprocessing.json", "model.pt2", "README.md", "model.onnx"]
    )


def test_the_inference_export_reproduces_the_modules_logits(trained):
    data, run = trained
    net, netdef, labels = load_model_folder(fs.resolve(str(run / "model")))
    program = load_inference_program(fs.resolve(str(run / "model")))
    images, _ = next(iter(ShardedLoader(fs.resolve(str(data / "val")), 0, 1, 7, EvalTransform(netdef.input_size), train=False)))
    with torch.no_grad():
        assert torch.allclose(program(images), net(images), atol=1e-5)
    assert len(labels) == netdef.num_classes == 10


def test_evaluate_counts_every_image_exactly_once(spark, trained):
    data, run = trained
    model, val = fs.resolve(str(run / "model")), fs.resolve(str(data / "val"))
    result = evaluate(spark, model, val, workers=3, batch_size=50)
    alone = score_shard(model, val, 0, 1, 128, 1)
    assert result["images"] == alone.images == 360
    assert (result["correct_top1"], result["correct_top5"]) == (alone.top1, alone.top5)
    assert result["top1"] == pytest.approx(json.loads((run / "summary.json").read_text())["val_top1"])
    assert result["confusion"] == alone.confusion.tolist()
    with pytest.raises(ValueError, match="more than the 16 row groups"):
        evaluate(spark, model, val, workers=17)


def test_evaluate_reports_each_class_and_the_confusion_matrix(spark, trained):
    data, run = trained
    result = evaluate(spark, fs.resolve(str(run / "model")), fs.resolve(str(data / "val")), workers=2)
    confusion = result["confusion"]
    labels = json.loads((run / "model" / "labels.json").read_text())
    assert [(c["index"], c["wnid"], c["name"]) for c in result["per_class"]] == [(e["index"], e["wnid"], e["name"]) for e in labels]
    assert sum(c["images"] for c in result["per_class"]) == result["images"] == sum(map(sum, confusion))
    assert sum(confusion[i][i] for i in range(10)) == result["correct_top1"] == sum(c["correct_top1"] for c in result["per_class"])
    assert all(c["images"] == sum(confusion[c["index"]]) and c["top1"] == c["correct_top1"] / c["images"] for c in result["per_class"])


@pytest.fixture(scope="module")
def swapped(trained, tmp_path_factory):
    """The trained model with its classifier's rows for classes 0 and 1 swapped (an exported model
    folder): it calls a 1 every 0 the trained model gets right, and a 0 every 1 (the short run's
    model is far from perfect, so this one is sure to be wrong somewhere)."""
    _, run = trained
    net, netdef, labels = load_model_folder(fs.resolve(str(run / "model")))
    with torch.no_grad():
        for parameter in (net.head.fc.weight, net.head.fc.bias):
            parameter[[0, 1]] = parameter[[1, 0]].clone()
    return export_model(net, netdef, labels, fs.resolve(str(tmp_path_factory.mktemp("swapped") / "model")))


def test_a_shard_score_moves_the_swapped_classes_to_each_others_columns_and_lists_the_misclassified(trained, swapped):
    data, run = trained
    val = fs.resolve(str(data / "val"))
    right, wrong = score_shard(fs.resolve(str(run / "model")), val, 0, 1, 64, 1), score_shard(swapped, val, 0, 1, 64, 1)
    assert (wrong.confusion == right.confusion[:, [1, 0, *range(2, 10)]]).all()
    assert len(wrong.misclassified) == wrong.images - wrong.top1 > 0
    assert all(mistake.label != mistake.predicted and 0 < mistake.probability <= 1 for mistake in wrong.misclassified)
    pairs = Counter((mistake.label, mistake.predicted) for mistake in wrong.misclassified)
    assert (pairs[0, 1], pairs[1, 0]) == (right.confusion[0, 0], right.confusion[1, 1])  # what it got right, now swapped
    assert len({m.path for m in wrong.misclassified}) == len(wrong.misclassified)


def test_the_evaluate_job_writes_the_confusion_heat_map_and_the_misclassified_images_beside_its_json(spark, trained, swapped,
                                                                                                        tmp_path, capsys):
    data, run = trained
    output, heat_map, table = tmp_path / "eval.json", tmp_path / "eval.confusion.png", tmp_path / "eval.misclassified.csv"
    argv = ["--data", str(data), "--output", str(output), "--workers", "2"]
    assert evaluate_job.main(["--model", swapped.url, *argv]) == 0
    result = json.loads(output.read_text())
    assert capsys.readouterr().out.strip().endswith(
        f"over 360 images -> {output}; confusion matrix -> {heat_map}; {360 - result['correct_top1']} misclassified -> {table}")
    assert heat_map.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and matplotlib_image(heat_map).shape[2] in (3, 4)
    rows = list(csv.DictReader(table.open()))
    assert len(rows) == result["images"] - result["correct_top1"] > 0
    labels = json.loads(swapped.join("labels.json").read_bytes())
    for row in rows:
        label, predicted = labels[int(row["label"])], labels[int(row["predicted"])]
        assert row["label"] != row["predicted"] and row["path"].endswith(".JPEG")
        assert (row["label_wnid"], row["label_name"], row["predicted_wnid"], row["predicted_name"]) == (
            label["wnid"], label["name"], predicted["wnid"], predicted["name"])
    probabilities = [float(row["probability"]) for row in rows]
    assert probabilities == sorted(probabilities, reverse=True)  # the most confident mistakes first

    output.unlink()  # a companion left behind is refused too, before Spark starts
    with pytest.raises(SystemExit) as refused:
        evaluate_job.main(["--model", swapped.url, *argv])
    assert refused.value.code == 2 and f"--output's confusion matrix {heat_map} already exists" in capsys.readouterr().err
    assert not output.exists()

    assert evaluate_job.main(["--model", str(run / "model"), *argv, "--overwrite"]) == 0
    replaced = json.loads(output.read_text())
    assert replaced["correct_top1"] > result["correct_top1"]
    assert len(list(csv.DictReader(table.open()))) == 360 - replaced["correct_top1"]


def matplotlib_image(path):
    from matplotlib import image

    return image.imread(path)


def test_features_are_written_per_image_with_logits(spark, trained, tmp_path):
    data, run = trained
    model, val, output = (fs.resolve(str(path)) for path in (run / "model", data / "val", tmp_path / "features"))
    result = extract_features(spark, model, val, output, workers=2)
    table = pq.read_table(tmp_path / "features").to_pylist()
    assert result["rows"] == len(table) == 360
    assert len({row["path"] for row in table}) == 360
    assert {len(row["features"]) for row in table} == {16 * 8} and {len(row["logits"]) for row in table} == {10}
    for row in table:
        logits = torch.tensor(row["logits"])
        assert row["predicted"] == int(logits.argmax())
        assert row["probability"] == pytest.approx(float(logits.softmax(0).max()), rel=1e-5)
    with pytest.raises(ValueError, match="already exists"):
        extract_features(spark, model, val, output)


def run_worker(*argv):
    """The worker alone: one plain process, no Spark, no torchrun."""
    return subprocess.run([sys.executable, "-m", "torchonspark.sparkjobs.train_worker", *argv], capture_output=True, text=True)


def test_resuming_halfway_gives_the_same_weights_as_running_straight(digits_parquet, recipe, tmp_path):
    data, _ = digits_parquet
    common = ["--conf", str(recipe), "--data", str(data), "--threads", "1"]
    straight = run_worker(*common, "--output", str(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr[-2000:]
    first = run_worker(*common, "--output", str(tmp_path / "halves"), "--max-iter", "10")
    assert first.returncode == 0, first.stderr[-2000:]
    second = run_worker(*common, "--output", str(tmp_path / "halves"), "--resume")
    assert second.returncode == 0, second.stderr[-2000:]
    a = torch.load(tmp_path / "straight" / "model" / "weights.pt", weights_only=True)
    b = torch.load(tmp_path / "halves" / "model" / "weights.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
    iterations = [(r["iteration"], "loss" in r) for r in metrics(tmp_path / "halves")]
    assert iterations == [(r["iteration"], "loss" in r) for r in metrics(tmp_path / "straight")]
    assert len(iterations) == len(set(iterations))
    finished = run_worker(*common, "--output", str(tmp_path / "halves"), "--resume")
    assert finished.returncode != 0 and "already reached iteration 20 of 20" in finished.stderr


def test_a_run_resumes_only_with_the_workers_and_batch_it_had(trained, recipe):
    data, run = trained
    other = run_worker("--conf", str(recipe), "--data", str(data), "--output", str(run), "--threads", "1", "--resume")
    assert other.returncode != 0 and "ran on 2 workers x 16 images; resume it with the same (now 1 x 16;" in other.stderr


def snapshot(folder):
    return {path.relative_to(folder): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_a_worker_that_fails_surfaces_on_the_driver_and_an_overwrite_leaves_the_old_run_whole(trained, recipe, tmp_path, capsys):
    data, run = trained
    old = tmp_path / "run"
    shutil.copytree(run, old)
    not_weights = tmp_path / "weights.pt"
    not_weights.write_bytes(b"this is not a torch file")
    status = train_resnet.main(["--conf", str(recipe), "--data", str(data), "--output", str(old), "--overwrite",
                                "--workers", "2", "--weights", str(not_weights)])
    err = capsys.readouterr().err
    assert status == 1
    assert "a worker failed" in err and "weights" in err.lower()
    assert snapshot(old) == snapshot(run)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "weights.pt"]  # no unfinished replacement left


def test_overwrite_replaces_a_run_only_once_the_new_one_has_finished(trained, recipe, tmp_path):
    data, run = trained
    shutil.copytree(run, tmp_path / "run")
    result = run_worker("--conf", str(recipe), "--data", str(data), "--output", str(tmp_path / "run"), "--threads", "1",
                        "--overwrite", "--max-iter", "5", "--snapshot", "0", "--test-interval", "0")
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["iterations"] == 5
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["iter-00000005.pt"]
    assert [r["iteration"] for r in metrics(tmp_path / "run")] == [5, 5]
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--workers", "0"], "--workers must be at least 1"),
        (["--batch-size", "0"], "batch_size must be at least 1"),
        (["--resume"], "holds no checkpoint"),
        (["--resume", "--weights", "w.pt"], "--weights starts a new run"),
        (["--workers", "2", "--min-workers", "3"], "--min-workers 3 is more than --workers 2"),
        (["--min-workers", "0"], "--min-workers must be at least 1"),
    ],
)
def test_bad_arguments_are_refused_before_any_worker_starts(digits_parquet, recipe, tmp_path, capsys, argv, message):
    data, _ = digits_parquet
    with pytest.raises(SystemExit) as exit_:
        train_resnet.main(["--conf", str(recipe), "--data", str(data), "--output", str(tmp_path / "run"), *argv])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and message in err
    assert not (tmp_path / "run").exists()


def test_an_existing_run_folder_is_refused_unless_resume_or_overwrite(trained, recipe, capsys):
    data, run = trained
    with pytest.raises(SystemExit) as exit_:
        train_resnet.main(["--conf", str(recipe), "--data", str(data), "--output", str(run)])
    assert exit_.value.code == 2 and "pass --resume to continue it or --overwrite" in capsys.readouterr().err


def test_weights_start_a_new_run_from_a_trained_model(trained, recipe, tmp_path):
    data, run = trained
    result = run_worker("--conf", str(recipe), "--data", str(data), "--output", str(tmp_path / "again"), "--threads", "1",
                        "--weights", str(run / "model"), "--max-iter", "1", "--base-lr", "1e-9")
    assert result.returncode == 0, result.stderr[-2000:]
    before = torch.load(run / "model" / "weights.pt", weights_only=True)
    after = torch.load(tmp_path / "again" / "model" / "weights.pt", weights_only=True)
    convolutions = [key for key in before if key.endswith("conv.weight")]
    assert convolutions and all(torch.allclose(before[key], after[key], atol=1e-6) for key in convolutions)


def dataset_copy(data, target, labels=None):
    """A converted data set whose train/ and val/ are the original's (linked) and whose labels.json is given."""
    target.mkdir()
    for split in ("train", "val"):
        (target / split).symlink_to(data / split)
    (target / "labels.json").write_text(json.dumps(labels if labels is not None else json.loads((data / "labels.json").read_text())))
    return target


def test_data_that_does_not_fit_its_labels_or_is_not_parquet_is_refused_before_spark_starts(digits_parquet, recipe, tmp_path, capsys):
    data, _ = digits_parquet
    labels = json.loads((data / "labels.json").read_text())
    too_few = dataset_copy(data, tmp_path / "five", labels[:5])
    with pytest.raises(SystemExit) as refused:
        train_resnet.main(["--conf", str(recipe), "--data", str(too_few), "--output", str(tmp_path / "run"), "--workers", "2"])
    err = capsys.readouterr().err
    assert refused.value.code == 2 and "label 9 in train/ is out of range for the 5 classes of labels.json" in err
    broken = tmp_path / "broken"
    shutil.copytree(data, broken)
    victim = sorted((broken / "val").glob("*.parquet"))[3]
    victim.write_bytes(victim.read_bytes()[:100])
    with pytest.raises(SystemExit):
        train_resnet.main(["--conf", str(recipe), "--data", str(broken), "--output", str(tmp_path / "run"), "--workers", "2"])
    err = capsys.readouterr().err
    assert f"{victim.name} is not a readable Parquet file" in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_evaluate_refuses_a_model_whose_classes_are_not_the_datas(trained, tmp_path, capsys):
    data, run = trained
    labels = json.loads((data / "labels.json").read_text())
    renamed = dataset_copy(data, tmp_path / "renamed", [{**entry, "wnid": entry["wnid"] + "x"} for entry in labels])
    reordered = dataset_copy(data, tmp_path / "reordered", labels[::-1])
    for other, message in ((renamed, "10 of the model's are not in the data"), (reordered, "same 10 classes in another order")):
        with pytest.raises(SystemExit) as refused:
            evaluate_job.main(["--model", str(run / "model"), "--data", str(other), "--output", str(tmp_path / "e.json")])
        assert refused.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "e.json").exists()


def test_a_finished_run_without_its_model_is_exported_by_resume(digits_parquet, recipe, tmp_path):
    data, _ = digits_parquet
    common = ["--conf", str(recipe), "--data", str(data), "--output", str(tmp_path / "run"), "--threads", "1", "--max-iter", "5"]
    assert run_worker(*common).returncode == 0
    exported = torch.load(tmp_path / "run" / "model" / "weights.pt", weights_only=True)
    shutil.rmtree(tmp_path / "run" / "model")  # as if the export had failed
    again = run_worker(*common, "--resume")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "the run had finished at iteration 5 without its model; exporting it" in again.stdout
    weights = torch.load(tmp_path / "run" / "model" / "weights.pt", weights_only=True)
    assert all(torch.equal(weights[key], exported[key]) for key in exported)
    assert [r["iteration"] for r in metrics(tmp_path / "run") if "val_top1" in r] == [5]  # not validated twice
