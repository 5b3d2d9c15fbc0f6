"""A run longer than its delegation tokens live, started as a long run is (spark-submit --principal
--keytab, cluster mode), on a Kerberized mini cluster of its own whose HDFS tokens must be renewed
every 40 s and end for good 100 s after they are issued (a real cluster's: a day and 7 days).

hdfs-native takes no token within 60 s of its end, so the tokens the containers started with are of
no use to a new connection 40 s after the submission: the driver and the training workers must go
on, write their checkpoints and metrics and survive a relaunch with the tokens Spark gets from the
keytab every 30 s, which only the relay (sparkjobs/cluster/credentials.py) brings to them. A
NameNode restart makes every process reconnect once its start-up tokens are useless. The URLs name
no NameNode (hdfs:///): the cluster-mode driver and the executors find fs.defaultFS in the
configuration Spark ships into their containers. Nothing in this process touches that cluster: a
child with its environment reads what the run wrote, so the session's cluster (its KDC, its ticket)
stays this process's own.

Run alone with `pytest tests/test_hadoop_tokens.py` (about 3 minutes on 2 cores).
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from faults import FaultPlan, kill_executor_of_rank, left_after
from hadoop import MiniCluster, spark_submit_yarn

pytestmark = pytest.mark.hadoop

REPO = Path(__file__).resolve().parents[1]
RENEW_S, MAX_LIFETIME_S = 40, 100
# Every client reconnects after a NameNode restart, which needs a token that is live then: by 75 s the
# containers' own tokens and the ones the workers started with are past what hdfs-native takes.
RESTART_AFTER_S = 75
KILL_AFTER_S = MAX_LIFETIME_S + 5  # the relaunch starts after the first tokens have ended
EPOCHS = 50  # 1,100 iterations (about 10 a second on an idle machine): training is still going at KILL_AFTER_S
FRESH = "tokens: fresh HDFS delegation tokens from the driver"

PUT = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from hadoop import put_tree
put_tree(Path(sys.argv[1]), sys.argv[2], threads=16)
"""

READ_BACK = """
import json, sys
from torchonspark.datasets import fs
run, staging = fs.resolve(sys.argv[1]), fs.resolve(sys.argv[2])
files = fs.list_files(run)
print(json.dumps({
    "summary": json.loads(run.join("summary.json").read_bytes()),
    "metrics": [json.loads(line) for line in run.join("metrics.jsonl").read_bytes().decode().splitlines()],
    "log": run.join("train.log").read_bytes().decode(),
    "checkpoints": {info.base_name: run.fs.handler.fs.client.get_file_info(info.path).modification_time / 1000
                    for info in fs.list_files(run.join("checkpoints"))},
    "with_a_token": [info.path for info in files if b"HDFS_DELEGATION_TOKEN" in run.join(info.path[len(run.path):].lstrip("/")).read_bytes()],
    "staging_left": staging.exists(),
}))
"""


@pytest.fixture(scope="module")
def short_token_cluster(tmp_path_factory):
    with MiniCluster(tmp_path_factory.mktemp("tokens") / "hadoop", secure=True, token_renew_s=RENEW_S,
                     token_max_lifetime_s=MAX_LIFETIME_S) as cluster:
        yield cluster


def in_cluster(cluster, code, *args):
    done = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=120,
                          env=cluster.env())
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def am_log(cluster) -> str:
    """The cluster-mode driver's output: its application master container's stdout and stderr."""
    logs = sorted(cluster.data_dir.rglob("container_*_01_000001/std*"))
    return "\n".join(f"--- {path}\n{path.read_text(errors='replace')[-4000:]}" for path in logs)


def test_a_run_past_its_tokens_lifetime_writes_on_and_relaunches_with_the_fresh_tokens_the_driver_relays(
        short_token_cluster, digits_parquet):
    cluster = short_token_cluster
    in_cluster(cluster, PUT, digits_parquet[0], "hdfs:///data/digits-pq", REPO / "tests")
    submitted = time.time()
    started = time.monotonic()
    restart = lambda: cluster.command("restart-namenode") or "namenode restarted"  # noqa: E731
    faults = FaultPlan(lambda: int(time.monotonic() - started), [(RESTART_AFTER_S, restart), (KILL_AFTER_S, kill_executor_of_rank(1))],
                       window=120, deadline_s=400, poll_s=0.5)
    faults.start()
    run = "hdfs:///runs/long"
    try:
        result = spark_submit_yarn(cluster, REPO / "sparkjobs" / "train_resnet.py", "--recipe", "digits", "--data", "hdfs:///data/digits-pq",
                                   "--output", run, "--workers", "2", "--epochs", str(EPOCHS), "--snapshot", "50",
                                   deploy_mode="cluster", env={"KRB5CCNAME": "/nonexistent/krb5cc"},  # no ticket: the keytab alone
                                   conf={"spark.kerberos.principal": cluster.kerberos.principal,
                                         "spark.kerberos.keytab": str(cluster.kerberos.keytab),
                                         # Spark fetches tokens every 30 s here; one fetch that meets the
                                         # NameNode's restart is retried after this (default: an hour,
                                         # longer than these tokens live; seen to fail this test once).
                                         "spark.security.credentials.retryWait": "5s"})
        left = left_after(10)
    finally:
        faults.plan.clear()  # a fault still to come never meets the next test's cluster
        faults.join(timeout=130)
    assert "final status: SUCCEEDED" in result.stderr, am_log(cluster)[-8000:] or result.stderr[-3000:]
    assert left == [], left
    application = next(word for word in result.stderr.split() if word.startswith("application_"))
    user = cluster.kerberos.principal.split("@")[0]
    back = json.loads(in_cluster(cluster, READ_BACK, run, f"hdfs:///user/{user}/.sparkStaging/{application}"))

    summary, metrics = back["summary"], back["metrics"]
    assert summary["val_top1"] >= 0.99 and summary["iterations"] == EPOCHS * 22, summary
    assert [when >= after for (when, _), after in zip(faults.done, (RESTART_AFTER_S, KILL_AFTER_S))] == [True, True], faults.done
    assert len(summary["restarts"]) == 1, back["log"][-4000:]  # the lost executor's; the NameNode's restart was ridden out
    (relaunch,) = summary["restarts"]
    assert relaunch["time"] > submitted + MAX_LIFETIME_S, (relaunch, submitted)  # after the first tokens ended
    displays = [r["iteration"] for r in metrics if "loss" in r]
    assert displays == list(range(20, EPOCHS * 22 + 1, 20)), displays  # none lost, none twice
    assert max(r["time"] for r in metrics if "loss" in r) > submitted + MAX_LIFETIME_S + 20
    assert max(back["checkpoints"].values()) > submitted + MAX_LIFETIME_S + 20, back["checkpoints"]
    # Rank 0 took fresh tokens from the relay in each attempt; none is left in the run folder, and the
    # relay's file went with the app's staging folder.
    assert back["log"].count(FRESH) >= 3, back["log"][-3000:]
    assert back["with_a_token"] == [] and back["staging_left"] is False
