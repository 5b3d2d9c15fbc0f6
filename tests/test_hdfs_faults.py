"""HDFS faults in the middle of a run, on the mini cluster (tests/minicluster's fault commands). One
digits run on local[2] barrier tasks with its run folder on HDFS meets the NameNode restarted between
checkpoints and during a checkpoint write, ridden out by the run folder's bounded retries, then an
HDFS space quota at a checkpoint, which stops the run in one line; `--resume` after the quota is
raised finishes it, at the accuracy and with the records of a run that met nothing. And a DataNode
stopped during a checkpoint write (replication 2): the checkpoint is written whole all the same."""

import hashlib
import io
import json
import socket
import threading
import time
from urllib.parse import urlsplit

import pytest
import torch
from faults import FaultPlan, FaultsOnRequest
from pyspark import cloudpickle

import paused_writes
from torchonspark.datasets import fs
from torchonspark.sparkjobs import train_resnet
from torchonspark.sparkjobs.cluster.launch import TrainingFailed
from torchonspark.sparkjobs.cluster.supervisor import Supervisor
from torchonspark.sparkjobs.engine.checkpoint import load_tensors
from torchonspark.sparkjobs.engine.job import get_args_parser, job_from_args
from torchonspark.sparkjobs.engine.runfolder import RunFolder
from torchonspark.sparkjobs.engine.stops import find_stop

pytestmark = pytest.mark.hadoop

EPOCHS, PER_EPOCH, SNAPSHOT = 10, 22, 50  # 220 iterations; checkpoints at 50, 100, 150, 200 and the last
RUN = "/faults/run"


@pytest.fixture(scope="module", autouse=True)
def ship_by_value():
    cloudpickle.register_pickle_by_value(paused_writes)
    yield
    cloudpickle.unregister_pickle_by_value(paused_writes)


@pytest.fixture
def cluster(hadoop_cluster, spark):
    """The session's mini cluster, given back to the other tests whole: its DataNode started and the
    quota removed, whatever this test left. The session's local Spark started before the cluster: its
    Python workers get the cluster's configuration and ticket cache as the driver has them."""
    added = {key: value for key, value in hadoop_cluster.env({}).items() if key != "SPARK_SUBMIT_OPTS"}
    spark.sparkContext.environment.update(added)
    yield hadoop_cluster
    for key in added:
        spark.sparkContext.environment.pop(key, None)
    for command in ("start-datanode", f"set-space-quota {RUN}/checkpoints -1"):
        try:
            hadoop_cluster.command(command)
        except Exception:  # noqa: BLE001 (nothing to undo: the test did not get that far)
            pass


def recipe_file(folder):
    text = open("conf/digits.yaml").read()
    assert "snapshot: 200" in text
    path = folder / "digits-snapshots.yaml"
    path.write_text(text.replace("snapshot: 200", f"snapshot: {SNAPSHOT}"))
    return path


def restarting_namenode(cluster, started: list):
    """A fault: the NameNode's restart started, returning once it no longer answers, so that the write
    paused for it goes on against a NameNode that is down (the restart is joined by the test)."""
    def fault():
        restart = threading.Thread(target=cluster.command, args=("restart-namenode",))
        restart.start()
        started.append(restart)
        port, deadline = urlsplit(cluster.hdfs_url).port, time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("localhost", port), timeout=1).close()
            except OSError:
                return "namenode down"
            time.sleep(0.02)
        return "namenode still up after 30 s"
    return fault


def run_log_tail(run: RunFolder) -> str:
    """The end of the run's train.log and of each rank's log, for a failure's message (the cluster, and
    with it the logs, is gone once the session ends)."""
    tails = []
    for location in [run.log, *(run.rank_logs.join(f"rank-{rank}.log") for rank in (0, 1))]:
        try:
            tails.append(f"--- {location.url}\n{location.read_bytes().decode(errors='replace')[-3000:]}")
        except OSError as error:
            tails.append(f"--- {location.url}: {error}")
    return "\n".join(tails)


def newest_iteration(run: RunFolder) -> int | None:
    return max((r["iteration"] for r in run.read_metrics() if "loss" in r), default=None)


def test_namenode_restarts_are_ridden_out_and_a_quota_stops_the_run_for_a_resume(
        spark, digits_parquet, cluster, tmp_path, capsys):
    data, _ = digits_parquet
    url = cluster.hdfs_url + RUN
    run = RunFolder(fs.resolve(url))
    handshake = tmp_path / "handshake"
    handshake.mkdir()
    argv = ["--recipe", str(recipe_file(tmp_path)), "--data", str(data), "--output", url, "--workers", "2", "--epochs", str(EPOCHS)]
    job = job_from_args(get_args_parser().parse_args(argv), threads=1, device="cpu")

    restarts = []
    # The quota is set while checkpoint 150 is being written (its block already has its room): 200 meets it.
    in_flight = FaultsOnRequest(handshake, {100: restarting_namenode(cluster, restarts),
                                            150: lambda: cluster.command(f"set-space-quota {RUN}/checkpoints 1")})
    between = FaultPlan(lambda: newest_iteration(run), [(20, lambda: cluster.command("restart-namenode"))],
                        window=30, deadline_s=600, poll_s=0.1)  # at 20 or 40: before the checkpoint at 50
    in_flight.start()
    between.start()
    supervisor = Supervisor(spark, job, 2, use_gpu=False, stall_timeout_s=300, worker=paused_writes.pausing_checkpoints([100, 150], handshake))
    with pytest.raises(TrainingFailed) as stopped:
        supervisor.run()
    in_flight.join(timeout=5)
    between.join(timeout=5)
    for restart in restarts:
        restart.join(timeout=120)
    out = capsys.readouterr().out

    assert [n for n, _ in in_flight.done] == [100, 150] and in_flight.done[0][1] == "namenode down", (
        in_flight.done, between.done, stopped.value.cause, stopped.value.tail, out[-3000:], run_log_tail(run))
    assert [what.split(" ", 1)[0] for _, what in between.done] == ["namenode"], between.done
    assert supervisor.restarts == [], supervisor.restarts  # the NameNode restarts needed no relaunch
    assert f"writing {url}/checkpoints/iter-00000100.pt: " in out, out[-3000:]  # the write it broke, done again whole

    # The quota: one line naming it and the path, the run stopped (not relaunched), the last good checkpoint intact.
    cause = stopped.value.cause
    assert "\n" not in cause and stopped.value.stop["kind"] == "storage", cause
    assert f"DiskSpace quota of {RUN}/checkpoints is exceeded" in cause and "--resume" in cause, cause
    assert find_stop(out) is not None
    names = [path.name for path in run.checkpoint_paths()]
    assert names[-1] == "iter-00000150.pt", names
    for path in run.checkpoint_paths():  # every checkpoint whole, the ones written through a fault included
        assert load_tensors(path)["iteration"] == int(path.name[5:13])
    assert not [info.base_name for info in fs.list_files(run.checkpoints) if info.base_name.endswith(".tmp")]

    cluster.command(f"set-space-quota {RUN}/checkpoints -1")
    assert train_resnet.main([*argv, "--resume"]) == 0

    summary = run.read_summary()
    assert summary["iterations"] == EPOCHS * PER_EPOCH and summary["val_top1"] >= 0.99, summary
    records = run.read_metrics()
    displayed = [r["iteration"] for r in records if "loss" in r]
    assert displayed == list(range(20, EPOCHS * PER_EPOCH + 1, 20)), displayed  # each iteration once, in order
    validated = [r["iteration"] for r in records if "val_top1" in r]
    assert len(validated) == len(set(validated)) and validated[-1] == EPOCHS * PER_EPOCH, validated
    assert json.loads(fs.resolve(f"{url}/job.json").read_bytes())["starts"][-1]["iteration"] == 150


def test_a_datanode_lost_during_a_checkpoint_write_leaves_the_checkpoint_whole(cluster, tmp_path, monkeypatch):
    """DataNode 1 stopped half-way through a checkpoint's write (both DataNodes in its pipeline, as
    replication is 2): save_checkpoint completes on the other or writes it again, and it reads back whole."""
    run = RunFolder(fs.resolve(f"{cluster.hdfs_url}/faults/datanode"))
    run.create()
    handshake = tmp_path / "handshake"
    handshake.mkdir()
    monkeypatch.setattr(fs.Location, "write_bytes", paused_writes.paused_write_bytes(fs.Location.write_bytes, [7], handshake))
    stopping = FaultsOnRequest(handshake, {7: lambda: cluster.command("stop-datanode 1")}, deadline_s=120)
    stopping.start()
    state = {"model": {"weight": torch.randn(2_000_000)}, "iteration": 7}  # 8 MB: packets in flight when it stops
    saved = run.save_checkpoint(state, 7, keep=3)
    stopping.join(timeout=5)
    assert stopping.done == [(7, "datanode 1 stopped")]
    buffer = io.BytesIO()
    torch.save(state, buffer)
    assert hashlib.sha256(saved.read_bytes()).digest() == hashlib.sha256(buffer.getvalue()).digest()
    assert [info.base_name for info in fs.list_files(run.checkpoints)] == ["iter-00000007.pt"]  # no broken try left
