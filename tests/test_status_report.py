"""Watching and comparing runs: the live plot redrawn at every validation, `torchonspark status` and
`torchonspark report`, on a run that was killed mid-way (its lock left behind by a dead process) and
on the same run resumed by hand to its end. The worker runs alone in a plain process (no Spark)."""

import csv
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from torchonspark.datasets import fs
from torchonspark.datasets.outputlock import OutputLock, lock_location
from torchonspark.netdefs import count_complexity, load_model
from torchonspark.netdefs.netdef import netdef_from_dict
from torchonspark.sparkjobs import report, status
from torchonspark.sparkjobs.engine.plots import interruptions, lr_drops, run_title, thin
from torchonspark.sparkjobs.engine.recipe import load_recipe, schedule
from torchonspark.sparkjobs.engine.runfolder import CHECKPOINT, PLOT_FILES, PLOTS

PNG = b"\x89PNG\r\n\x1a\n"
RECIPE = """model: {name: tiny, main_branch: normal, num_output_stage1: 16, blocks: [1, 1, 1, 1], fc_layers: false}
batch_size: 16
base_lr: 0.05
lr_policy: multistep
stepvalue: [8]
gamma: 0.5
max_iter: 400
crop_size: 32
scale_range: [32, 40]
mirror: false
display: 1
test_interval: 5
snapshot: 5
seed: 3
"""

# The worker, with every drawing of plots/training.png noted (when, what was on record, the PNG's hash)
# in the file named by $DRAWN: the plot must be redrawn at each validation, not only at the end.
RECORDING_WORKER = """
import hashlib, json, os, sys
from torchonspark.sparkjobs.engine import runfolder
from torchonspark.sparkjobs import train_worker
draw = runfolder.RunFolder.write_plots
def noted(self):
    draw(self)
    png = self.plots.join(runfolder.PLOT_FILES[0]).read_bytes()
    note = {"validations": [r["iteration"] for r in self.read_metrics() if "val_top1" in r],
            "finished": self.summary.exists(), "sha": hashlib.sha256(png).hexdigest(), "png": png[:8].hex()}
    with open(os.environ["DRAWN"], "a") as out:
        out.write(json.dumps(note) + "\\n")
runfolder.RunFolder.write_plots = noted
sys.exit(train_worker.main(sys.argv[1:]))
"""


def checkpoints(run):
    return sorted(path for path in (run / "checkpoints").iterdir() if CHECKPOINT.search(path.name))


def metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def drawn(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def worker(recipe, data, run, drawn_to, *argv):
    return subprocess.Popen([sys.executable, "-c", RECORDING_WORKER, "--recipe", str(recipe), "--data", str(data), "--output",
                             str(run), "--threads", "1", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "DRAWN": str(drawn_to)})


@pytest.fixture(scope="module")
def interrupted(digits_parquet, tmp_path_factory):
    """A run killed (SIGKILL) a little after its second checkpoint: its lock stays behind, naming a dead process."""
    data, _ = digits_parquet
    base = tmp_path_factory.mktemp("watch")
    recipe = base / "tiny.yaml"
    recipe.write_text(RECIPE)
    run = base / "killed"
    process = worker(recipe, data, run, base / "killed-drawn.jsonl")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if (run / "checkpoints" / "iter-00000010.pt").exists() and any(r["iteration"] >= 12 for r in metrics(run)):
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    _, err = process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL, err[-2000:]
    return data, recipe, run


@pytest.fixture(scope="module")
def finished(interrupted, tmp_path_factory):
    """A copy of the killed run (without its lock), resumed by hand with --resume to its end."""
    data, recipe, killed = interrupted
    run = tmp_path_factory.mktemp("by-hand") / "resumed"
    shutil.copytree(killed, run)
    drawn_to = run.parent / "drawn.jsonl"
    newest = max(int(CHECKPOINT.search(path.name).group(1)) for path in checkpoints(run))
    process = worker(recipe, data, run, drawn_to, "--resume", "--max-iter", str(newest + 10))
    out, err = process.communicate(timeout=180)
    assert process.returncode == 0, err[-2000:]
    return run, newest, drawn(drawn_to)


def status_of(run, capsys, *argv):
    assert status.main([str(run), *argv]) == 0
    return capsys.readouterr().out


@pytest.mark.e2e
def test_the_plot_is_redrawn_whole_at_every_validation_while_the_run_goes_on(finished):
    run, resumed_from, drawings = finished
    validations = [r["iteration"] for r in metrics(run) if "val_top1" in r]
    live = [drawing for drawing in drawings if not drawing["finished"]]
    assert [d["validations"] for d in live] == [validations[: validations.index(v) + 1] for v in validations
                                                if v > resumed_from]  # once per validation of this attempt, as it came
    assert all(d["png"] == PNG.hex() for d in drawings)
    hashes = [d["sha"] for d in live]
    assert len(set(hashes)) == len(hashes)  # each drawing shows something new
    final = (run / PLOTS / PLOT_FILES[0]).read_bytes()
    assert final.startswith(PNG) and hashlib.sha256(final).hexdigest() == drawings[-1]["sha"]
    assert not [p for p in (run / PLOTS).iterdir() if p.name != PLOT_FILES[0]]  # no temporary file left beside it


@pytest.mark.e2e
def test_status_of_a_killed_run_says_it_stopped_where_its_metrics_end_and_who_left_the_lock(interrupted, capsys):
    _, _, run = interrupted
    records = metrics(run)
    state = json.loads(status_of(run, capsys, "--json"))
    holder = json.loads(lock_location(fs.resolve(str(run))).read_bytes())
    assert (state["state"], state["finished"], state["holder_alive"]) == ("stopped", False, False)
    assert state["holder"] == holder
    assert state["iteration"] == max(r["iteration"] for r in records)
    assert (state["max_iter"], state["eta_seconds"]) == (400, None)
    assert state["loss"] == [r for r in records if "loss" in r][-1]["loss"]
    assert state["val_top1"] == [r for r in records if "val_top1" in r][-1]["val_top1"]
    assert state["checkpoints"] == [path.name for path in checkpoints(run)]
    text = status_of(run, capsys)
    assert text.startswith(f"{run}: stopped, not finished")
    assert f"its lock is held by process {holder['pid']}" in text and "which is gone" in text
    assert f"iteration {state['iteration']} of 400" in text and f"newest {state['checkpoints'][-1]}" in text


@pytest.mark.e2e
def test_status_of_the_resumed_run_says_finished_with_the_summarys_figures_and_one_resume(finished, capsys):
    run, resumed_from, _ = finished
    summary = json.loads((run / "summary.json").read_text())
    state = json.loads(status_of(run, capsys, "--json"))
    assert (state["state"], state["finished"], state["holder"]) == ("finished", True, None)
    assert (state["iteration"], state["max_iter"]) == (summary["iterations"], resumed_from + 10)
    assert (state["val_top1"], state["val_top5"]) == (summary["val_top1"], summary["val_top5"])
    assert state["images_per_sec"] == summary["train_images_per_sec"]
    assert (state["restarts"], state["resumes"]) == (0, 1)
    job = json.loads((run / "job.json").read_text())
    assert [start["iteration"] for start in job["starts"]] == [0, resumed_from]
    text = status_of(run, capsys)
    assert text.startswith(f"{run}: finished") and "resumed by hand 1 time(s)" in text


@pytest.mark.e2e
def test_a_live_run_has_an_eta_at_its_recent_pace_and_watch_ends_when_it_stops(interrupted, tmp_path, capsys):
    _, _, killed = interrupted
    run = tmp_path / "run"
    shutil.copytree(killed, run)
    records = [r for r in metrics(run) if "loss" in r][-status.RECENT:]
    pace = (records[-1]["time"] - records[0]["time"]) / (records[-1]["iteration"] - records[0]["iteration"])
    lock = OutputLock(fs.resolve(str(run)), "test")  # held by this process: a live run, as status sees it
    lock.acquire()
    threading.Timer(1.5, lock.release).start()
    watched = [json.loads(line) for line in status_of(run, capsys, "--watch", "1", "--json").splitlines()]
    assert len(watched) >= 2 and [w["state"] for w in watched[:-1]] == ["running"] * (len(watched) - 1)
    assert watched[-1]["state"] == "stopped" and watched[-1]["holder"] is None
    assert watched[0]["holder_alive"] is True and watched[0]["holder"]["pid"] == os.getpid()
    assert watched[0]["eta_seconds"] == pytest.approx((400 - watched[0]["iteration"]) * pace)


@pytest.mark.e2e
def test_during_an_overwrite_status_shows_the_live_replacement_and_the_old_run_in_one_line(interrupted, finished, tmp_path,
                                                                                          capsys):
    from torchonspark.sparkjobs.engine.job import TrainJob

    data, recipe, killed = interrupted
    old, _, _ = finished
    run = tmp_path / "run"
    shutil.copytree(old, run)  # the finished run that `train --overwrite` replaces...
    replacing = TrainJob(load_recipe(str(recipe)), fs.resolve(str(data)), [], fs.resolve(str(run)), overwrite=True).run_folder()
    shutil.copytree(killed, replacing.root.path)  # ...with the new run half-way, where the job trains it
    old_summary = json.loads((run / "summary.json").read_text())
    with OutputLock(fs.resolve(str(run)), "test"):  # held by this process, as the job holds it: a live replacement
        state = json.loads(status_of(run, capsys, "--json"))
        text = status_of(run, capsys)
    assert (state["run"], state["replacing"], state["state"], state["finished"]) == (str(run), replacing.root.url, "running", False)
    assert state["holder"]["pid"] == os.getpid()
    assert (state["iteration"], state["max_iter"]) == (max(r["iteration"] for r in metrics(killed)), 400)
    assert state["checkpoints"] == [path.name for path in checkpoints(killed)] and state["eta_seconds"] is not None
    assert state["replaces"] == (f"finished, tiny, iteration {old_summary['iterations']}, val top-1 "
                                 f"{old_summary['val_top1']:.4f}, top-5 {old_summary['val_top5']:.4f}")
    assert text.startswith(f"{run}: running")
    assert f"a replacement (train --overwrite) in {replacing.root.url}: it replaces the old run when it finishes; " \
           f"the old run: {state['replaces']}" in text
    assert f"iteration {state['iteration']} of 400" in text
    after = json.loads(status_of(run, capsys, "--json"))  # its job gone, the replacement is left out: RUN is the old run
    assert (after["state"], after["replacing"], after["iteration"]) == ("finished", None, old_summary["iterations"])


@pytest.mark.e2e
def test_ctrl_c_ends_a_watch_quietly_with_status_130(interrupted, tmp_path):
    _, _, killed = interrupted
    run = tmp_path / "run"
    shutil.copytree(killed, run)
    with OutputLock(fs.resolve(str(run)), "test"):
        watch = subprocess.Popen([sys.executable, "-m", "torchonspark.sparkjobs.status", str(run), "--watch", "1"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = watch.stdout.readline()
        watch.send_signal(signal.SIGINT)
        out, err = watch.communicate(timeout=30)
    assert first.startswith(f"{run}: running") and watch.returncode == 130 and err == ""


@pytest.mark.e2e
def test_report_lists_both_runs_in_the_seeds_columns_and_marks_the_unfinished_one(interrupted, finished, tmp_path, capsys):
    _, _, killed = interrupted
    run, _, _ = finished
    summary = json.loads((run / "summary.json").read_text())
    counted = count_complexity(netdef_from_dict(summary["model"], "summary").build())
    killed_top1 = [r for r in metrics(killed) if "val_top1" in r][-1]["val_top1"]
    plot = tmp_path / "runs.png"
    assert report.main([str(killed), str(run), "--plot", str(plot)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0] == "| Model | Top-1 | Top-5 | #Flops (M) | #Params (M) | Description | Iterations | Images/s |"
    unfinished, done = ([cell.strip() for cell in line.strip("|").split("|")] for line in table[2:])
    assert (unfinished[0], done[0]) == ("tiny (killed)", "tiny (resumed)")  # one model twice: told apart by their folders
    assert done[1:7] == [f"{summary['val_top1']:.4f}", f"{summary['val_top5']:.4f}", f"{counted.flops / 1e6:.2f}",
                         f"{counted.params / 1e6:.2f}", "normal, 1 1 1 1, 16", str(summary["iterations"])]
    assert unfinished[1] == f"{killed_top1:.4f}" and unfinished[6].endswith("of 400 (stopped, unfinished)")
    assert plot.read_bytes().startswith(PNG)
    assert report.main([str(killed), str(run), "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [row["state"] for row in rows] == ["stopped", "finished"]
    assert float(rows[1]["top1"]) == summary["val_top1"] and float(rows[1]["params_m"]) == counted.params / 1e6


def test_a_missing_run_is_one_line_and_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_status:
        status.main([str(tmp_path / "nothing")])
    assert exit_status.value.code == 2 and "no run folder there" in capsys.readouterr().err


def test_the_seeds_run_is_described_titled_and_its_rate_drops_marked_as_its_tables_and_recipe_say():
    recipe = load_recipe("imagenet_resnet_50")
    assert recipe.model.description == "bottleneck, 3 4 6 3, 256"
    assert load_model("resnet_36_inception_trick_with4k").description == "inception_trick, 2 2 2 2, 64, 4k fc"
    job = {"model": recipe.model.to_dict(), "recipe": recipe.to_dict(), "world_size": 16, "max_iter": recipe.max_iter}
    assert run_title(job) == ("resnet_50 (bottleneck, 3 4 6 3, 256)\n"
                              "SGD lr 0.1, ÷10 at 150k 300k 450k; 16 × 16 images per step; 600k iterations")
    drops = lr_drops(job, recipe.max_iter)
    assert [step for step, _ in drops] == list(recipe.stepvalue)
    rates = schedule(recipe, 16, 5000)
    assert all(rate == pytest.approx(rates.rate(step)) for step, rate in drops)
    assert lr_drops({**job, "recipe": {**job["recipe"], "lr_policy": "cosine"}}, recipe.max_iter) == []


def test_restarts_and_resumes_are_told_apart():
    records = [{"iteration": 20, "loss": 1.0}, {"event": "restart", "iteration": 20}, {"iteration": 40, "loss": 0.5}]
    starts = [{"iteration": 0}, {"iteration": 20}, {"iteration": 40}]
    assert interruptions(records, starts) == [(20, "restart"), (40, "resume")]


def test_a_long_loss_line_is_thinned_to_bucket_means_and_a_diverged_value_is_a_gap_not_a_number():
    iterations = np.arange(1, 30_001, dtype=float)
    losses = np.ones_like(iterations)
    losses[:20] = np.nan
    (x, y), each = thin(iterations, losses, max_points=1500)
    assert (len(x), each) == (1500, 20)
    assert np.isnan(y[0]) and np.all(y[1:] == 1) and x[1] == np.mean(iterations[20:40])


def test_status_loads_neither_spark_nor_torch_and_report_no_spark():
    code = ("import sys, torchonspark.sparkjobs.status; status = set(sys.modules); import torchonspark.sparkjobs.report; "
            "print(sorted({m.split('.')[0] for m in status} & {'pyspark', 'petastorm', 'py4j', 'torch', 'matplotlib'}), "
            "sorted({m.split('.')[0] for m in sys.modules} & {'pyspark', 'petastorm', 'py4j'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "[] []", result.stderr[-2000:]
