"""Every job on real HDFS and YARN: the mini cluster of tests/minicluster (a NameNode, 2 DataNodes, a
ResourceManager and 2 NodeManagers offering yarn.io/gpu), apps started with spark-submit --master yarn
as a user starts them, data and outputs on hdfs://, read back through the project's own HDFS client
(hdfs-native). Success is judged from what the apps wrote, not from spark-submit's status alone.

Run alone with `pytest -m hadoop` (about 10 minutes on 2 cores with tests/test_hadoop_tokens.py and tests/test_hdfs_faults.py, the clusters' starts included).
"""

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from faults import FaultPlan, kill_executor_of_rank, left_after
from hadoop import spark_submit_yarn, yarn_applications

from torchonspark.datasets import fs
from torchonspark.datasets import hdfs as hdfs_client
from torchonspark.datasets.digits import digit_wnid, make_digits
from torchonspark.datasets.loader import list_row_groups

pytestmark = pytest.mark.hadoop

REPO = Path(__file__).resolve().parents[1]
JOBS = REPO / "sparkjobs"
TINY = """model: {name: tiny, main_branch: normal, num_output_stage1: 8, blocks: [1, 1, 1, 1], fc_layers: false}
batch_size: 16
base_lr: 0.05
max_iter: 4
crop_size: 32
scale_range: [32, 40]
mirror: false
display: 2
snapshot: 2
"""


def read(url: str) -> bytes:
    return fs.resolve(url).read_bytes()


def output_of(result: subprocess.CompletedProcess) -> str:
    return result.stdout + result.stderr


def succeeded(result: subprocess.CompletedProcess) -> bool:
    return result.returncode == 0


@pytest.fixture(scope="module")
def hdfs(hadoop_cluster):
    """The NameNode's URL, and HADOOP_CONF_DIR set for this process's own HDFS client (hdfs:/// URLs)."""
    previous = os.environ.get("HADOOP_CONF_DIR")
    os.environ["HADOOP_CONF_DIR"] = str(hadoop_cluster.conf_dir)
    yield hadoop_cluster.hdfs_url
    if previous is None:
        del os.environ["HADOOP_CONF_DIR"]
    else:
        os.environ["HADOOP_CONF_DIR"] = previous


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    path = tmp_path_factory.mktemp("recipes") / "tiny.yaml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="module")
def converted(hadoop_cluster, hdfs, digits_parquet):
    """The digits tree written to HDFS and converted hdfs:// -> hdfs:// by the convert job, in cluster mode."""
    make_digits(f"{hdfs}/data/digits")
    result = spark_submit_yarn(hadoop_cluster, JOBS / "convert_imagenet.py", f"{hdfs}/data/digits", f"{hdfs}/data/digits-pq",
                               deploy_mode="cluster")
    assert succeeded(result) and "final status: SUCCEEDED" in result.stderr, output_of(result)[-3000:]
    return f"{hdfs}/data/digits-pq"


def newest_iteration(run: str) -> int | None:
    metrics = fs.resolve(f"{run}/metrics.jsonl")
    if not metrics.exists():
        return None
    records = [json.loads(line) for line in metrics.read_bytes().decode().splitlines() if line.strip()]
    return max((r["iteration"] for r in records if "loss" in r), default=None)


@pytest.fixture(scope="module")
def trained(hadoop_cluster, converted, hdfs):
    """The demo's recipe (conf/digits.yaml), shortened to 10 epochs (220 iterations, a checkpoint every
    100), on 2 barrier tasks in YARN executors, client mode, the run folder on HDFS. After the first
    checkpoint (iteration 100) the container of rank 1's executor is killed (SIGKILL of its JVM, as a
    lost node or a preemption ends it): the run must go on by itself."""
    run = f"{hdfs}/runs/digits"
    faults = FaultPlan(lambda: newest_iteration(run), [(120, kill_executor_of_rank(1))], window=80, deadline_s=600, poll_s=0.3)
    faults.start()
    result = spark_submit_yarn(hadoop_cluster, JOBS / "train_resnet.py", "--recipe", "digits",
                               "--data", converted, "--output", run, "--workers", "2", "--epochs", "10",
                               "--snapshot", "100")
    left = left_after(10)  # no torchrun or worker outlives the app by more than 10 s (YARN's containers too)
    faults.join(timeout=5)
    assert succeeded(result), output_of(result)[-3000:]
    assert left == [], left
    return run, result, faults.done


def test_convert_writes_the_same_dataset_on_hdfs_as_on_local_disk(converted, digits_parquet):
    local, local_report = digits_parquet
    report = json.loads(read(f"{converted}/report.json"))
    assert {split: report["splits"][split]["converted"] for split in ("train", "val")} == {"train": 1437, "val": 360}
    assert json.loads(read(f"{converted}/labels.json")) == json.loads((local / "labels.json").read_text())
    for split in ("train", "val"):
        groups = list_row_groups(fs.resolve(f"{converted}/{split}"))
        assert sum(group.rows for group in groups) == local_report["splits"][split]["converted"]
        assert fs.resolve(f"{converted}/{split}/_common_metadata").exists()  # petastorm's Unischema


def test_training_on_yarn_heals_a_lost_container_writes_the_whole_run_folder_to_hdfs_and_reaches_99_percent(trained):
    run, result, faults = trained
    summary = json.loads(read(f"{run}/summary.json"))
    assert len(faults) == 1 and faults[0][1].startswith("executor pid"), faults
    assert [r["iteration"] for r in summary["restarts"]] == [100], summary["restarts"]
    assert "relaunching from iteration 100" in read(f"{run}/train.log").decode()
    assert (summary["world_size"], summary["iterations"], summary["device"]) == (2, 220, "cpu")
    assert summary["val_top1"] >= 0.99, summary
    metrics = [json.loads(line) for line in read(f"{run}/metrics.jsonl").decode().splitlines()]
    assert [m["iteration"] for m in metrics if "loss" in m] == list(range(20, 221, 20))  # none twice, none lost
    assert metrics[-1]["val_top1"] == summary["val_top1"]
    assert read(f"{run}/plots/training.png")[:8] == b"\x89PNG\r\n\x1a\n"
    checkpoints = [info.base_name for info in fs.list_files(fs.resolve(f"{run}/checkpoints"))]
    assert checkpoints == ["iter-00000100.pt", "iter-00000200.pt", "iter-00000220.pt"]  # every 100 and the last, 3 kept
    assert {info.base_name for info in fs.list_files(fs.resolve(f"{run}/model"))} == {
        "weights.pt", "netdef.yaml", "labels.json", "preprocessing.json", "model.pt2", "README.md"}
    assert "val top-1" in result.stdout and "final status" not in result.stdout  # the driver ran here (client mode)


def test_evaluate_and_features_read_the_model_and_data_from_hdfs(hadoop_cluster, trained, converted, hdfs):
    from concurrent.futures import ThreadPoolExecutor

    run, _, _ = trained
    with ThreadPoolExecutor(2) as pool:  # two apps at once: the cluster has room for both, and they mostly wait on YARN
        evaluating = pool.submit(spark_submit_yarn, hadoop_cluster, JOBS / "evaluate.py", "--model", f"{run}/model",
                                 "--data", converted, "--output", f"{run}/eval.json")
        featuring = pool.submit(spark_submit_yarn, hadoop_cluster, JOBS / "features.py", "--model", f"{run}/model",
                                "--data", converted, "--output", f"{run}/features", deploy_mode="cluster")
        evaluation, features = evaluating.result(), featuring.result()
    assert succeeded(evaluation), output_of(evaluation)[-3000:]
    result = json.loads(read(f"{run}/eval.json"))
    assert result["images"] == 360 and result["top1"] == pytest.approx(json.loads(read(f"{run}/summary.json"))["val_top1"])
    assert succeeded(features), output_of(features)[-3000:]
    parts = [info for info in fs.list_files(fs.resolve(f"{run}/features")) if info.base_name.endswith(".parquet")]
    import pyarrow.parquet as pq

    location = fs.resolve(f"{run}/features")
    rows = sum(pq.ParquetFile(location.fs.open_input_file(part.path)).metadata.num_rows for part in parts)
    assert rows == 360


def test_status_report_predict_and_tensorboard_read_a_run_on_kerberized_hdfs(trained, hdfs):
    # The commands that need no Spark, on this process's ticket, as a user runs them on a gateway host.
    from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer
    from tensorboard.util import tensor_util

    run, _, _ = trained
    image = next(info.path for info in fs.list_files(fs.resolve(f"{hdfs}/data/digits/val/{digit_wnid(3)}")))

    def command(*args):
        done = subprocess.run([sys.executable, "-m", "torchonspark.sparkjobs.cli", *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    assert json.loads(command("status", run, "--json"))["iteration"] == 220
    (row,) = csv.DictReader(io.StringIO(command("report", run, "--csv")))
    assert (row["run"], int(row["iterations"]), float(row["top1"])) == (run, 220, json.loads(read(f"{run}/summary.json"))["val_top1"])
    (guess,) = [json.loads(line) for line in command("predict", "--model", f"{run}/model", "--json", f"{hdfs}{image}").splitlines()]
    assert "three" in [g["name"] for g in guess["top"][:2]] and len(guess["top"]) == 5, guess  # a 0.99 model, one image
    board = EventMultiplexer()
    board.AddRunsFromDirectory(f"{run}/tb")  # TensorBoard reads hdfs:// through fsspec, that is hdfs-native
    board.Reload()
    losses = {event.step: float(tensor_util.make_ndarray(event.tensor_proto)) for event in board.Tensors(".", "train/loss")}
    metrics = [json.loads(line) for line in read(f"{run}/metrics.jsonl").decode().splitlines()]
    assert losses == pytest.approx({m["iteration"]: m["loss"] for m in metrics if "loss" in m})


def test_doctor_reports_yarns_free_resources_and_that_hdfs_answers(hadoop_cluster, converted):
    result = spark_submit_yarn(hadoop_cluster, JOBS / "doctor.py", "--data", converted, "--workers", "2")
    lines = result.stdout.splitlines()
    assert succeeded(result), output_of(result)[-3000:]
    assert any(line.startswith("ok   YARN: 2 running NodeManagers with") and "GPUs free" in line for line in lines), lines
    assert any(line.startswith(f"ok   hdfs: {hadoop_cluster.hdfs_url} answers") for line in lines), lines
    assert any(line.startswith("ok   hdfs client: hdfs-native") for line in lines), lines
    assert any(line.startswith("ok   YARN room:") for line in lines), lines
    principal = hadoop_cluster.kerberos.principal
    assert any(line.startswith(f"ok   kerberos: on; ticket of {principal}, valid until ") for line in lines), lines


def test_more_workers_than_yarn_can_place_fail_in_seconds_and_leave_no_app_waiting(hadoop_cluster, converted, recipe, hdfs):
    started = time.monotonic()
    result = spark_submit_yarn(hadoop_cluster, JOBS / "train_resnet.py", "--conf", str(recipe), "--data", converted,
                               "--output", f"{hdfs}/runs/too-many", "--workers", "12",
                               # Spark's own wait for 80% of the executors (30 s by default) comes before the
                               # job's first line; what is tested here is what the job does after it.
                               conf={"spark.executor.instances": "12", "spark.scheduler.maxRegisteredResourcesWaitingTime": "3s"})
    assert result.returncode == 2, output_of(result)[-3000:]
    assert "12 barrier workers need 12 executors of 896 MB, 1 vcores; YARN gave this job" in result.stdout
    assert time.monotonic() - started < 120
    assert not fs.resolve(f"{hdfs}/runs/too-many").exists()
    assert [app for app in yarn_applications(hadoop_cluster) if app[1] in ("ACCEPTED", "RUNNING", "SUBMITTED", "NEW")] == []


def test_each_barrier_task_gets_its_own_gpu_from_yarn_and_reaches_hdfs_with_its_containers_tokens(hadoop_cluster, hdfs):
    # Training itself stays on CPU (no GPU here); the plumbing is YARN's: each executor container gets
    # one yarn.io/gpu, the discovery script names it, TorchDistributor hands it to its task.
    result = spark_submit_yarn(hadoop_cluster, REPO / "tests" / "jobs" / "yarn_gpu_job.py", f"{hdfs}/gpu-check",
                               files=(REPO / "conf" / "get_gpus.sh",),
                               conf={"spark.executor.resource.gpu.amount": "1", "spark.task.resource.gpu.amount": "1",
                                     "spark.executor.resource.gpu.discoveryScript": "./get_gpus.sh",
                                     "spark.executorEnv.CUDA_VISIBLE_DEVICES": "0"})
    assert succeeded(result), output_of(result)[-3000:]
    outcome = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("GPUS "))[len("GPUS "):])
    ranks = outcome["ranks"]
    assert [(r["visible"], r["index"]) for r in ranks] == [(["0"], 0), (["0"], 0)]
    assert len({r["container"] for r in ranks}) == 2  # two executors, each with its own device 0
    assert [c["gpus"] for c in outcome["containers"]] == [0, 1, 1]  # the AM none, each executor one
    # On the Kerberized cluster the workers hold no ticket: they reach HDFS with the delegation tokens
    # YARN gave their containers, and without the token file the same read fails, naming kinit.
    for rank in ranks:
        credentials = rank["credentials"]
        assert "HDFS_DELEGATION_TOKEN" in credentials["tokens"] and credentials["ticket"] is None, credentials
        assert credentials["without_token"] != 0 and "has no Kerberos ticket" in credentials["without_token_error"][0], credentials


def test_a_namenode_that_is_down_is_one_line_within_30_seconds(tmp_path):
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "torchonspark.sparkjobs.cli", "evaluate", "--model", "hdfs://localhost:1/runs/x/model",
                             "--data", "hdfs://localhost:1/data", "--output", str(tmp_path / "e.json")],
                            capture_output=True, text=True, timeout=120)
    assert time.monotonic() - started < 30
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "Connection refused" in result.stderr and not (tmp_path / "e.json").exists()


def test_a_resource_manager_that_does_not_answer_is_one_line(hadoop_cluster, tmp_path, converted, recipe):
    conf = tmp_path / "conf"
    conf.mkdir()
    for name in ("core-site.xml", "hdfs-site.xml"):
        (conf / name).write_bytes((hadoop_cluster.conf_dir / name).read_bytes())
    yarn_site = (hadoop_cluster.conf_dir / "yarn-site.xml").read_text()
    (conf / "yarn-site.xml").write_text(yarn_site.replace(hadoop_cluster.rm_address, "localhost:1"))
    env = {**os.environ, "HADOOP_CONF_DIR": str(conf)}
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "torchonspark.sparkjobs.cli", "train", "--master", "yarn", "--conf", str(recipe),
                             "--data", converted, "--output", str(tmp_path / "run")], capture_output=True, text=True, env=env, timeout=120)
    assert time.monotonic() - started < 30
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "no YARN ResourceManager answers at localhost:1 (Connection refused)" in result.stderr
    no_conf = {key: value for key, value in os.environ.items() if key not in ("HADOOP_CONF_DIR", "YARN_CONF_DIR")}
    result = subprocess.run([sys.executable, "-m", "torchonspark.sparkjobs.cli", "doctor", "--master", "yarn"],
                            capture_output=True, text=True, env=no_conf, timeout=120)
    assert result.returncode == 1
    assert "FAIL hadoop conf: HADOOP_CONF_DIR is not set -- fix: export HADOOP_CONF_DIR=" in result.stdout
    assert "\tat " not in result.stdout + result.stderr  # no Java stack trace


def test_a_path_without_permission_is_one_line_and_leaves_nothing_behind(hadoop_cluster, converted, hdfs, tmp_path):
    private = fs.resolve(f"{hdfs}/private")
    private.fs.create_dir(private.path)
    private.fs.handler.fs.client.set_permission(private.path, 0o700)
    hadoop_cluster.kinit("alice", tmp_path / "alice.cc", 600)  # another Kerberos user than the folder's owner
    env = {**os.environ, "KRB5CCNAME": str(tmp_path / "alice.cc")}
    result = subprocess.run([sys.executable, "-m", "torchonspark.sparkjobs.cli", "convert", f"{hdfs}/data/digits",
                             f"{hdfs}/private/out", "--master", "local[2]"], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 1 and result.stderr.strip().count("\n") == 0, result.stderr[-3000:]
    assert "Permission denied" in result.stderr and "alice" in result.stderr
    assert [info.path for info in fs.list_files(private)] == [] and fs.list_dirs(private) == []


RUN_FOLDER_WRITER = """
import sys
from torchonspark.datasets import fs
run = fs.resolve(sys.argv[1])
run.join("checkpoints", "iter-00000010.pt").write_bytes_atomically(b"weights")
fs.AppendedFile(run.join("metrics.jsonl")).append(b"{}\\n")
"""


@pytest.mark.parametrize("umask, file_mode, folder_mode", [(None, 0o644, 0o755), ("027", 0o640, 0o750), ("u=rwx,g=,o=", 0o600, 0o700)])
def test_run_folders_on_hdfs_get_the_clusters_umask_as_hadoops_own_client_gives_it(hadoop_cluster, hdfs, tmp_path, umask, file_mode,
                                                                                   folder_mode):
    # The NameNode keeps what a client asks for; hdfs-native alone asks for 644 and 755 whatever
    # fs.permissions.umask-mode says, which would leave a secure cluster's checkpoints readable by all.
    conf = tmp_path / "conf"
    shutil.copytree(hadoop_cluster.conf_dir, conf)
    if umask is not None:
        core = conf / "core-site.xml"
        core.write_text(core.read_text().replace("</configuration>", f"<property><name>fs.permissions.umask-mode</name>"
                                                                   f"<value>{umask}</value></property></configuration>"))
    run = f"{hdfs}/umask/{umask or 'default'}"
    written = subprocess.run([sys.executable, "-c", RUN_FOLDER_WRITER, run], capture_output=True, text=True, timeout=120,
                             env={**os.environ, "HADOOP_CONF_DIR": str(conf)})
    assert written.returncode == 0, written.stderr[-2000:]
    client = fs.resolve(hdfs).fs.handler.fs.client
    path = fs.resolve(run).path
    modes = {name: client.get_file_info(f"{path}/{name}").permission for name in ("", "checkpoints", "checkpoints/iter-00000010.pt",
                                                                                     "metrics.jsonl")}
    assert modes == {"": folder_mode, "checkpoints": folder_mode, "checkpoints/iter-00000010.pt": file_mode,
                     "metrics.jsonl": file_mode}, {name: oct(mode) for name, mode in modes.items()}


def test_a_umask_hadoop_would_not_read_is_one_line_naming_the_property():
    assert hdfs_client.umask({"fs.permissions.umask-mode": "u=rwx,g=r-x,o=r-x"}) == 0o022
    with pytest.raises(ValueError, match=r"^fs.permissions.umask-mode='u\+rwx' in the Hadoop configuration is not a umask") as refused:
        hdfs_client.umask({"fs.permissions.umask-mode": "u+rwx"})
    assert "\n" not in str(refused.value)


def test_without_a_ticket_or_with_an_expired_one_a_yarn_job_stops_in_one_line_within_15_seconds(hadoop_cluster, hdfs, tmp_path):
    # A ticket valid 1 s (a new principal's, from the cluster's KDC), then expired.
    hadoop_cluster.kinit("bob", tmp_path / "expired.cc", 1)
    time.sleep(2)
    for cache, says in ((tmp_path / "none.cc", "has no Kerberos ticket"), (tmp_path / "expired.cc", "expired")):
        started = time.monotonic()
        result = spark_submit_yarn(hadoop_cluster, JOBS / "convert_imagenet.py", f"{hdfs}/data/digits", f"{hdfs}/data/never",
                                   env={"KRB5CCNAME": f"FILE:{cache}"})
        assert time.monotonic() - started < 15
        errors = [line for line in output_of(result).splitlines() if "error" in line.lower() or "exception" in line.lower()]
        assert result.returncode == 2 and len(errors) == 1, output_of(result)[-3000:]
        assert says in errors[0] and "run kinit" in errors[0] and "is Kerberized" in errors[0], errors[0]
    assert not fs.resolve(f"{hdfs}/data/never").exists()


@pytest.mark.parametrize("problem", ["a principal the KDC does not know", "a keytab that is not one"])
def test_a_wrong_principal_or_keytab_is_refused_by_spark_submit_within_15_seconds_naming_it(hadoop_cluster, hdfs, tmp_path, problem):
    # spark-submit logs in from the keytab before our code runs: its own Java error (with a stack
    # trace, which we cannot shorten) is what a user sees, and it names the principal and the keytab.
    principal, keytab = hadoop_cluster.kerberos.principal, hadoop_cluster.kerberos.keytab
    if problem.startswith("a principal"):
        principal = f"nobody@{principal.split('@')[1]}"
    else:
        keytab = tmp_path / "user.keytab"
        keytab.write_bytes(b"not a keytab")
    started = time.monotonic()
    result = spark_submit_yarn(hadoop_cluster, JOBS / "convert_imagenet.py", f"{hdfs}/data/digits", f"{hdfs}/data/never",
                               conf={"spark.kerberos.principal": principal, "spark.kerberos.keytab": str(keytab)},
                               env={"KRB5CCNAME": f"FILE:{tmp_path / 'none.cc'}"})
    assert time.monotonic() - started < 15
    assert result.returncode != 0 and f"failure to login: for principal: {principal} from keytab {keytab}" in output_of(result), \
        output_of(result)[-3000:]
    assert not fs.resolve(f"{hdfs}/data/never").exists()


FORK_CHECK = """
import os, sys, time
from torchonspark.datasets import fs
url = sys.argv[1]

def child_reads():
    pid = os.fork()
    if pid == 0:
        try:
            fs.resolve(url).read_bytes()
            print("child read", flush=True)
        except (RuntimeError, ValueError) as error:
            print("child refused:", str(error), flush=True)
        os._exit(0)
    for _ in range(200):  # bounded: 20 s
        if os.waitpid(pid, os.WNOHANG)[0]:
            return
        time.sleep(0.1)
    os.kill(pid, 9)
    print("child hung", flush=True)

child_reads()                    # a fork before this process used HDFS: the child has a runtime of its own
print("parent read", len(fs.resolve(url).read_bytes()), flush=True)
child_reads()                    # a fork after: hdfs-native's runtime threads are not in the child
print("parent read", len(fs.resolve(url).read_bytes()), flush=True)
"""


def test_hdfs_in_a_forked_child_works_or_refuses_in_one_line_but_never_hangs(converted):
    result = subprocess.run([sys.executable, "-c", FORK_CHECK, f"{converted}/labels.json"], capture_output=True, text=True,
                            timeout=120, env=os.environ)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0] == "child read" and lines[1].startswith("parent read") and lines[3].startswith("parent read")
    assert lines[2].startswith("child refused:") and "was forked from process" in lines[2] and "would hang" in lines[2]
