"""Elastic training with real node loss: a 2-worker digits run on a standalone cluster whose workers
are JVMs of their own (tests/standalone.py) loses the node of rank 1, so the cluster cannot give the
slot back; the run goes on by itself on one process computing both workers (--min-workers 1), grows
back to two processes at the first checkpoint after a node joins, and finishes the digits at 99%.
(local-cluster cannot lose a node: its workers live in the driver's JVM.)"""

import json
import subprocess
import sys

import pytest
from faults import FaultPlan, left_after, lose_node_of_rank
from standalone import StandaloneCluster

from torchonspark.datasets import fs
from torchonspark.sparkjobs.engine.plots import interruptions
from torchonspark.sparkjobs.report import run_row
from torchonspark.sparkjobs.status import read_status, status_lines

pytestmark = pytest.mark.e2e

# Training runs at about 15 iterations a second here, and a node that joins has an executor some 10 s
# later: the run is long enough to grow back before its end.
EPOCHS, PER_EPOCH, SNAPSHOT = 20, 22, 40


def metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def newest_iteration(run):
    try:
        return max((r["iteration"] for r in metrics(run) if "loss" in r), default=None)
    except FileNotFoundError:
        return None


def test_a_run_that_loses_a_node_goes_on_with_fewer_processes_and_grows_back_when_one_joins(digits_parquet, tmp_path):
    data, _ = digits_parquet
    run = tmp_path / "run"
    with StandaloneCluster(tmp_path / "cluster", workers=2) as cluster:
        faults = FaultPlan(lambda: newest_iteration(run), [(40, lose_node_of_rank(1, cluster.worker_of)),
                                                           (60, lambda: cluster.add_worker() and "a node joined")],
                           window=20, deadline_s=400, poll_s=0.1)
        faults.start()
        try:
            done = subprocess.run([sys.executable, "-m", "torchonspark.sparkjobs.train_resnet", "--master", cluster.url,
                                   "--recipe", "digits", "--data", str(data), "--output", str(run), "--workers", "2",
                                   "--min-workers", "1", "--elastic-wait", "5", "--epochs", str(EPOCHS),
                                   "--snapshot", str(SNAPSHOT)],
                                  capture_output=True, text=True, env=cluster.env(), timeout=400)
        finally:
            faults.plan.clear()
            faults.join(timeout=60)
        left = left_after(10)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert [what.split()[0] for _, what in faults.done] == ["node", "a"], (faults.done, out[-3000:])
    assert left == [], left

    records = metrics(run)
    restarts = [r for r in records if r.get("event") == "restart"]
    resizes = [r for r in records if r.get("event") == "resize"]
    assert len(restarts) == 1 and restarts[0]["cause"].startswith("executor "), restarts
    assert [(r["from"], r["to"]) for r in resizes] == [(2, 1), (1, 2)], resizes
    assert "the cluster gave 1 of 2 task slots within 5 s" in resizes[0]["why"], resizes
    assert resizes[1]["why"].startswith("2 task slots again: grown at the checkpoint of iteration "), resizes
    assert resizes[1]["iteration"] > resizes[0]["iteration"] and resizes[1]["iteration"] % SNAPSHOT == 0, resizes
    assert [r["iteration"] for r in records if "loss" in r] == list(range(20, EPOCHS * PER_EPOCH + 1, 20))  # each once
    starts = json.loads((run / "job.json").read_text())["starts"]
    assert [start["processes"] for start in starts] == [2, 1, 2], starts
    summary = json.loads((run / "summary.json").read_text())
    assert summary["val_top1"] >= 0.99 and summary["world_size"] == 2 and summary["processes"] == 2, summary
    log = (run / "train.log").read_text()
    assert "the 2 workers go on in 1 processes (were 2)" in log and "computed by 1 processes" in log, log[-3000:]
    # What a person sees: status, and the marks on the run's plot.
    state = read_status(fs.resolve(str(run)))
    lines = status_lines(state)
    assert any(line.startswith("resizes: 2; the last at iteration ") and "1 -> 2 processes" in line for line in lines), lines
    marks = interruptions(records, starts)
    assert (resizes[0]["iteration"], "restart, 2→1 processes") in marks and (resizes[1]["iteration"], "1→2 processes") in marks
    row = run_row(state, fs.resolve(str(run)))
    assert (row.restarts, row.resizes, row.state) == (1, 2, "finished"), row  # report's CSV columns
