"""Training that heals itself, with real faults: worker processes killed with SIGKILL while a 2-worker
run trains on barrier tasks (local[2]); the driver relaunches from the newest checkpoint and the run
ends with exactly the weights of an uninterrupted one. And what must not be retried or hidden: a
diverged loss, a second writer, a checkpoint that does not load."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
from faults import FaultPlan, kill_executor_of_rank, left_after, signal_rank, training_processes

from torchonspark.datasets import fs
from torchonspark.datasets.outputlock import Holder, OutputLock, OutputLocked, lock_location
from torchonspark.sparkjobs import train_resnet
from torchonspark.sparkjobs.cluster.supervisor import finished_summary
from torchonspark.sparkjobs.engine.runfolder import RunFolder

pytestmark = pytest.mark.e2e

HEAL = """model: {name: tiny, main_branch: normal, num_output_stage1: 16, blocks: [1, 1, 1, 1], fc_layers: false}
batch_size: 16
base_lr: 0.05
max_iter: 80
crop_size: 32
scale_range: [32, 40]
mirror: false
display: 1
snapshot: 20
seed: 5
"""


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    path = tmp_path_factory.mktemp("heal") / "heal.yaml"
    path.write_text(HEAL)
    return path


@pytest.fixture(scope="module")
def straight_run(digits_parquet, recipe, tmp_path_factory):
    """The run without faults, by the same worker under plain torchrun (a fifth of the barrier stage's
    start-up): one thread per rank, as each barrier task has, gives bit for bit the same weights."""
    data, _ = digits_parquet
    run = tmp_path_factory.mktemp("runs") / "straight"
    torchrun = Path(sys.executable).with_name("torchrun")
    subprocess.run([str(torchrun), "--nproc_per_node", "2", "-m", "torchonspark.sparkjobs.train_worker", "--recipe", str(recipe),
                    "--data", str(data), "--output", str(run), "--threads", "1"], check=True, capture_output=True, timeout=180,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    return run


@pytest.fixture(scope="module")
def uninterrupted(straight_run):
    return torch.load(straight_run / "model" / "weights.pt", weights_only=True)


def test_a_stage_lost_after_its_run_finished_is_not_relaunched_but_a_run_that_is_not_whole_is(straight_run, tmp_path):
    """A worker stopped or lost in the run's last moments (after the export and summary.json) fails the
    stage; relaunching would only be refused ("already reached iteration 80"): the driver takes the run's
    summary instead. Not when the summary is of a shorter length than this start trains to, nor without
    the model."""
    assert finished_summary(RunFolder(fs.resolve(str(straight_run))))["iterations"] == 80
    longer = tmp_path / "longer"
    shutil.copytree(straight_run, longer)
    job = json.loads((longer / "job.json").read_text())
    (longer / "job.json").write_text(json.dumps({**job, "max_iter": 100}))  # a --resume --max-iter 100 that then failed
    assert finished_summary(RunFolder(fs.resolve(str(longer)))) is None
    (longer / "job.json").write_text(json.dumps(job))
    (longer / "model" / "model.pt2").unlink()  # lost before its export was whole
    assert finished_summary(RunFolder(fs.resolve(str(longer)))) is None


def metrics(run):
    path = run / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def task_folders():
    """TorchDistributor's temporary folders (a task's train.py and func.pickle) in the temp folder."""
    return {path.parent for path in Path(tempfile.gettempdir()).glob("tmp*/func.pickle")}


def newest_iteration(run):
    records = [r for r in metrics(run) if "loss" in r]
    return records[-1]["iteration"] if records else None


def test_killed_and_stalled_workers_are_relaunched_from_the_checkpoint_and_the_run_ends_as_if_uninterrupted(
        spark, digits_parquet, recipe, uninterrupted, tmp_path, capsys):
    data, _ = digits_parquet
    run = tmp_path / "run"
    task_folders_before = task_folders()
    # rank 1 killed after the checkpoint at 20; rank 0 stopped (a stall) after the one at 40. The plan
    # reads the iterations rank 0 has reported, which may be a few behind the workers: a relaunch is
    # from the newest checkpoint they had saved, so one checkpoint later is right too.
    faults = FaultPlan(lambda: newest_iteration(run), [(25, signal_rank(signal.SIGKILL, 1)), (45, signal_rank(signal.SIGSTOP, 0))])
    faults.start()
    status = train_resnet.main(["--conf", str(recipe), "--data", str(data), "--output", str(run), "--workers", "2",
                                "--stall-timeout", "10"])
    faults.join(timeout=5)
    out = capsys.readouterr().out
    assert [what for _, what in faults.done] == [f"signal {signal.SIGKILL} to rank 1", f"signal {signal.SIGSTOP} to rank 0"]
    assert status == 0, out[-3000:]
    restarts = [r for r in metrics(run) if r.get("event") == "restart"]
    first, second = [r["iteration"] for r in restarts]
    assert first in (20, 40) and second in (40, 60) and first <= second, restarts
    assert restarts[0]["cause"] == "rank 1 was killed by SIGKILL"
    assert restarts[1]["cause"].startswith("no progress for ") and "a stalled worker" in restarts[1]["cause"]
    assert all(r["iterations_redone"] >= 5 and r["seconds_lost"] > 0 for r in restarts), restarts
    summary = json.loads((run / "summary.json").read_text())
    assert [r["iteration"] for r in summary["restarts"]] == [first, second] and summary["iterations"] == 80
    iterations = [r["iteration"] for r in metrics(run) if "loss" in r]
    assert iterations == list(range(1, 81))  # every iteration once: the lost ones' lines were dropped at each resume
    weights = torch.load(run / "model" / "weights.pt", weights_only=True)
    assert weights.keys() == uninterrupted.keys() and all(torch.equal(weights[k], uninterrupted[k]) for k in weights)
    assert f"relaunching from iteration {first}" in out and f"relaunching from iteration {second}" in out
    log = (run / "train.log").read_text()  # the run's story stays with the run
    assert f"rank 1 was killed by SIGKILL; relaunching from iteration {first}" in log and f"relaunching from iteration {second}" in log
    assert log.count("resuming from iteration") == 2 and "done: val top-1" in log
    assert training_processes(0) == [] and training_processes(1) == []  # the stopped one too: nothing left behind
    assert task_folders() <= task_folders_before  # nor the temporary folder of a task that Spark killed


def test_a_lost_executor_is_replaced_and_a_stopped_driver_resumes_to_the_same_weights(
        spark, digits_parquet, recipe, uninterrupted, tmp_path):
    """On local-cluster (a standalone master and a worker per executor, each a JVM of its own): the
    executor that runs rank 1 is killed (SIGKILL), the master starts a new one and the driver
    relaunches by itself; later the driver is stopped (SIGTERM, as YARN or a person stops it), and
    --resume finishes the run: still exactly the uninterrupted weights."""
    data, _ = digits_parquet
    run = tmp_path / "run"
    driver = subprocess.Popen(
        [sys.executable, "-m", "torchonspark.sparkjobs.train_resnet", "--master", "local-cluster[2,1,1024]", "--recipe",
         str(recipe), "--data", str(data), "--output", str(run), "--workers", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYSPARK_PYTHON": sys.executable})

    def stop_driver():
        driver.send_signal(signal.SIGTERM)
        return "SIGTERM to the driver"

    faults = FaultPlan(lambda: newest_iteration(run), [(25, kill_executor_of_rank(1)), (45, stop_driver)])
    faults.start()
    try:
        out, _ = driver.communicate(timeout=300)
    finally:
        driver.kill()
    faults.join(timeout=5)
    assert [what.split()[0] for _, what in faults.done] == ["executor", "SIGTERM"], out[-3000:]
    assert driver.returncode == 130, out[-3000:]
    assert out.strip().splitlines()[-1].startswith("train: interrupted; the run folder keeps its checkpoints")
    restarts = [r for r in metrics(run) if r.get("event") == "restart"]
    assert [r["iteration"] for r in restarts] in ([20], [40]) and restarts[0]["cause"].startswith("executor "), restarts
    assert " was lost (" in restarts[0]["cause"]
    assert left_after(10) == []  # the stopped driver's torchruns and workers end with it, within 10 s
    assert train_resnet.main(["--recipe", str(recipe), "--data", str(data), "--output", str(run), "--workers", "2",
                              "--resume"]) == 0
    weights = torch.load(run / "model" / "weights.pt", weights_only=True)
    assert all(torch.equal(weights[k], uninterrupted[k]) for k in uninterrupted)
    assert [r["iteration"] for r in metrics(run) if "loss" in r] == list(range(1, 81))
    resumes = [line for line in (run / "train.log").read_text().splitlines() if "resuming from iteration" in line]
    assert any(f"resuming from iteration {n} (checkpoint " in resumes[-1] for n in (40, 60)), resumes  # --resume's


def run_worker(*argv):
    """The worker alone, in one plain process (no Spark, no torchrun)."""
    return subprocess.run([sys.executable, "-m", "torchonspark.sparkjobs.train_worker", "--threads", "1", *argv],
                          capture_output=True, text=True, timeout=300)


def strict_json(line: str):
    return json.loads(line, parse_constant=lambda name: pytest.fail(f"not standard JSON: {name}"))


def test_a_diverging_run_stops_with_one_line_and_leaves_no_model_and_no_bad_checkpoint(digits_parquet, recipe, tmp_path):
    data, _ = digits_parquet
    run = tmp_path / "run"
    result = run_worker("--conf", str(recipe), "--data", str(data), "--output", str(run), "--base-lr", "1e4",
                        "--max-iter", "40", "--snapshot", "5")
    assert result.returncode == 3, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("rank 0: training diverged:") and "lower base_lr" in last
    assert last in (run / "logs" / "rank-0.log").read_text()  # the rank's output and error stay with the run
    assert not (run / "model").exists() and not (run / "summary.json").exists()
    for line in (run / "metrics.jsonl").read_text().splitlines():
        strict_json(line)
    for checkpoint in (run / "checkpoints").iterdir():
        state = torch.load(checkpoint, weights_only=True)
        assert all(torch.isfinite(tensor).all() for tensor in state["model"].values() if tensor.is_floating_point())


def test_resume_falls_back_to_the_newest_checkpoint_that_loads(digits_parquet, recipe, tmp_path):
    data, _ = digits_parquet
    run = tmp_path / "run"
    first = run_worker("--conf", str(recipe), "--data", str(data), "--output", str(run), "--max-iter", "10", "--snapshot", "5")
    assert first.returncode == 0, first.stderr[-2000:]
    newest = run / "checkpoints" / "iter-00000010.pt"
    newest.write_bytes(newest.read_bytes()[:1000])  # a write that lost its end
    again = run_worker("--conf", str(recipe), "--data", str(data), "--output", str(run), "--resume", "--max-iter", "12")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resume: skipped iter-00000010.pt:" in again.stdout and "truncated" in again.stdout
    assert "resuming from iteration 5" in again.stdout
    assert json.loads((run / "summary.json").read_text())["resumed_from"] == 5


def test_a_second_writer_is_refused_naming_the_first_and_a_dead_holder_can_be_taken_over(digits_parquet, recipe, tmp_path, capsys):
    data, _ = digits_parquet
    output = fs.resolve(str(tmp_path / "run"))
    with OutputLock(output, "--output"):
        with pytest.raises(SystemExit) as refused:
            train_resnet.main(["--conf", str(recipe), "--data", str(data), "--output", output.url, "--workers", "2"])
        err = capsys.readouterr().err
        assert refused.value.code == 2 and err.count("\n") == 1
        assert f"is being written by process {os.getpid()} on" in err and "--take-over-lock" in err
        with pytest.raises(OutputLocked):
            OutputLock(output, "--output").acquire()
    assert not lock_location(output).exists()  # released when the holder is done
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    lock_location(output).write_bytes(json.dumps({**Holder.this_process().__dict__, "pid": int(dead)}).encode())
    with pytest.raises(OutputLocked, match="that process is gone"):
        OutputLock(output, "--output").acquire()
    taken = OutputLock(output, "--output", take_over=True)
    taken.acquire()
    assert json.loads(lock_location(output).read_bytes())["pid"] == os.getpid()
    taken.release()
    assert not lock_location(output).exists()


def test_files_that_are_not_tensors_are_refused_in_one_line_that_never_suggests_unsafe_loading(tmp_path):
    from torchonspark.sparkjobs.engine.checkpoint import load_tensors

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo this must never run",))

    torch.save({"weights": Payload()}, tmp_path / "code.pt")
    (tmp_path / "text.pt").write_text("not a torch file\n")
    torch.save({"w": torch.ones(1000)}, tmp_path / "whole.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "whole.pt").read_bytes()[:500])
    messages = {}
    for name in ("code.pt", "text.pt", "cut.pt"):
        with pytest.raises(ValueError) as refused:
            load_tensors(fs.resolve(str(tmp_path / name)))
        messages[name] = str(refused.value)
    assert "holds a Python object (posix.system) that loading would run" in messages["code.pt"]
    assert messages["text.pt"].endswith("text.pt is not a file torch.save wrote")
    assert "cut.pt is truncated or not a file torch.save wrote" in messages["cut.pt"]
    assert all("\n" not in message and "weights_only=False" not in message for message in messages.values())


def test_checkpoints_come_at_least_every_snapshot_minutes_at_a_display_all_ranks_agree_on(digits_parquet, recipe, tmp_path):
    data, _ = digits_parquet
    run = tmp_path / "run"
    result = run_worker("--conf", str(recipe), "--data", str(data), "--output", str(run), "--max-iter", "15", "--snapshot", "0",
                        "--snapshot-minutes", "0.00001", "--display", "5")
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["iter-00000005.pt", "iter-00000010.pt", "iter-00000015.pt"]


def test_a_second_conversion_into_the_same_output_is_refused(digits_parquet, tmp_path, capsys):
    from torchonspark.sparkjobs import convert_imagenet

    output = fs.resolve(str(tmp_path / "out"))
    with OutputLock(output, "OUTPUT"):
        with pytest.raises(SystemExit) as refused:
            convert_imagenet.main([str(tmp_path / "no-tree-needed"), output.url])
    assert refused.value.code == 2 and "OUTPUT " + output.url + " is being written by process" in capsys.readouterr().err
    assert not output.exists()
