"""MLflow tracking (`train --mlflow`): a short run read back from a real MLflow store with MLflow's own
client holds the recipe as params, metrics.jsonl's values at their iterations and the exported model;
a tracking server that never answers costs one warning and never the run. The worker runs alone in
one plain process (no Spark, no torchrun)."""

import http.server
import json
import os
import pickle
import socket
import subprocess
import sys
import threading
import time

import pyarrow.fs as pafs
import pytest
from mlflow import MlflowClient

from short_recipes import LOGGED as RECIPE

from torchonspark.datasets import fs
from torchonspark.sparkjobs.engine import tracking

WARNING = "mlflow: tracking in "


def run_worker(tmp_path, data, env, *argv):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(RECIPE)
    environment = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    environment.update(MLFLOW_DISABLE_TELEMETRY="true", **env)
    return subprocess.run([sys.executable, "-m", "torchonspark.sparkjobs.train_worker", "--threads", "1", "--recipe", str(recipe),
                           "--data", str(data), "--output", str(tmp_path / "run"), "--no-tensorboard", "--mlflow", *argv],
                          capture_output=True, text=True, timeout=300, env=environment)


def metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def history(client, run_id, key):
    return {metric.step: metric.value for metric in client.get_metric_history(run_id, key)}


def test_a_run_is_tracked_beside_its_folder_with_the_recipe_the_metrics_by_iteration_and_the_model(digits_parquet, tmp_path):
    data, _ = digits_parquet
    done = run_worker(tmp_path, data, {})
    assert done.returncode == 0, done.stderr[-2000:]
    assert WARNING not in done.stderr

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")  # the default store: the run folder's parent
    (run,) = client.search_runs([client.get_experiment_by_name(tracking.EXPERIMENT).experiment_id])
    assert (run.info.run_name, run.info.status) == ("run", "FINISHED")
    assert run.data.tags["torchonspark.run_folder"] == str(tmp_path / "run")
    params = run.data.params
    assert (params["base_lr"], params["batch_size"], params["max_iter"], params["scale_range"]) == ("0.05", "16", "10", "32 40")
    assert (params["model.name"], params["model.blocks"], params["model.fc_layers"]) == ("tiny", "1 1 1 1", "false")
    assert (params["iterations"], params["world_size"], params["device"]) == ("10", "1", "cpu")

    records = metrics(tmp_path / "run")
    displays = {r["iteration"]: r for r in records if "loss" in r}
    validations = {r["iteration"]: r for r in records if "val_top1" in r}
    assert sorted(displays) == [2, 4, 6, 8, 10] and sorted(validations) == [5, 10]
    for key in ("loss", "lr", "images_per_sec"):
        assert history(client, run.info.run_id, key) == pytest.approx({i: r[key] for i, r in displays.items()})
    for key in ("val_top1", "val_top5"):
        assert history(client, run.info.run_id, key) == pytest.approx({i: r[key] for i, r in validations.items()})

    artifacts = {entry.path for entry in client.list_artifacts(run.info.run_id, "model")}
    assert artifacts == {f"model/{path.name}" for path in (tmp_path / "run" / "model").iterdir()}
    assert "model/weights.pt" in artifacts
    assert (tmp_path / "mlruns").is_dir()  # the artifacts sit beside the store, not in the working directory


def test_a_tracking_server_that_never_answers_warns_once_and_the_run_still_finishes(digits_parquet, tmp_path):
    data, _ = digits_parquet
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    held, stop = [], threading.Event()

    def accept_and_never_answer():
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:  # the timeout, or the socket closed
                continue

    thread = threading.Thread(target=accept_and_never_answer, daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        done = run_worker(tmp_path, data, {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{server.getsockname()[1]}",
                                           "MLFLOW_HTTP_REQUEST_TIMEOUT": "2", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"})
        took = time.monotonic() - started
    finally:
        stop.set()
        thread.join(5)
        for connection in held:
            connection.close()
        server.close()
    assert done.returncode == 0, done.stderr[-2000:]
    assert held  # the worker did call
    assert done.stderr.count(WARNING) == 1
    log = (tmp_path / "run" / "train.log").read_text()
    assert log.count(WARNING) == 1 and "training goes on without it" in log
    assert (tmp_path / "run" / "summary.json").exists() and (tmp_path / "run" / "model" / "weights.pt").exists()
    assert took < 120  # a bound, not a benchmark: MLflow's own defaults (7 retries of 120 s) would take many minutes


def test_without_the_extra_or_a_store_to_default_to_it_is_one_line_before_any_work(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    local = fs.resolve(str(tmp_path / "run"))
    assert tracking.tracking_target(local).uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    elsewhere = fs.Location("hdfs://nn/runs/a", pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem()), "runs/a")
    with pytest.raises(ValueError, match="not on local disk.*set MLFLOW_TRACKING_URI") as refused:
        tracking.tracking_target(elsewhere)
    assert "\n" not in str(refused.value)
    monkeypatch.setattr(tracking.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match=r"--mlflow needs mlflow, sqlalchemy, alembic: install the mlflow extra") as refused:
        tracking.tracking_target(local)
    assert "\n" not in str(refused.value)


class RecordingServer(http.server.ThreadingHTTPServer):
    """A tracking server's REST answers, just enough for MLflow's client to open a run, log and end it,
    keeping each request's Authorization header."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), RecordingHandler)
        self.authorizations: list[str | None] = []


class RecordingHandler(http.server.BaseHTTPRequestHandler):
    ANSWERS = {"experiments/get-by-name": {"experiment": {"experiment_id": "1", "name": tracking.EXPERIMENT}},
               "runs/create": {"run": {"info": {"run_id": "r1", "experiment_id": "1", "status": "RUNNING"}}}}

    def _answer(self) -> None:
        self.server.authorizations.append(self.headers.get("Authorization"))
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps(next((answer for end, answer in self.ANSWERS.items() if self.path.split("?")[0].endswith(end)), {}))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    do_GET = do_POST = _answer

    def log_message(self, *args) -> None:
        pass


WORKER_WITHOUT_THE_DRIVERS_ENVIRONMENT = """
import pickle, sys
from torchonspark.datasets import fs
from torchonspark.sparkjobs.engine.tracking import RunTracker
tracker = RunTracker(pickle.loads(sys.stdin.buffer.read()), fs.resolve(sys.argv[1]), print)
tracker.start("run", {"base_lr": "0.05"}, {}, resumed=False)
tracker.log_metrics({"loss": 1.0}, 1)
tracker.end(finished=True)
"""


def test_a_tracking_servers_token_travels_in_the_job_to_rank_0_and_is_never_printed_or_written(tmp_path, monkeypatch):
    """On YARN rank 0 does not see the driver's environment: the token goes in the job (pickled, as to a
    barrier task) to a process without it, reaches the server on every request, and appears in none of
    the job's text, the process's output or the run folder. A password written into a URI is not shown."""
    server = RecordingServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{server.server_address[1]}")
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "token-secret")
        run = tmp_path / "run"
        run.mkdir()
        target = tracking.tracking_target(fs.resolve(str(run)))
        environment = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
        done = subprocess.run([sys.executable, "-c", WORKER_WITHOUT_THE_DRIVERS_ENVIRONMENT, str(run)], input=pickle.dumps(target),
                              capture_output=True, timeout=120, env={**environment, "MLFLOW_DISABLE_TELEMETRY": "true"})
    finally:
        server.shutdown()
        server.server_close()
    output = (done.stdout + done.stderr).decode()
    assert done.returncode == 0 and WARNING not in output, output[-2000:]
    assert len(server.authorizations) >= 4 and set(server.authorizations) == {"Bearer token-secret"}
    assert json.loads((run / tracking.RUN_ID_FILE).read_text()) == {
        "tracking_uri": f"http://127.0.0.1:{server.server_address[1]}", "run_id": "r1"}
    for text in (repr(target), output, *(path.read_text() for path in run.rglob("*") if path.is_file())):
        assert "token-secret" not in text
    assert tracking.TrackingTarget("https://alice:uri-secret@mlflow.example.com:5000/x").shown_uri == "https://***@mlflow.example.com:5000/x"
