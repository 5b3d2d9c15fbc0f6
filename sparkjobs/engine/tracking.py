"""MLflow tracking of a training run (``train --mlflow``, the ``mlflow`` extra), by rank 0 alone:

    params      the recipe's values and the netdef's (``model.*``), the run's length, workers and device
    metrics     loss, lr, images_per_sec at each display line; val_top1, val_top5 at each validation
                (the names and values of metrics.jsonl; the step is the iteration)
    artifacts   the exported model folder (``model/``), once the run is published

The store is MLFLOW_TRACKING_URI's when it is set on the driver (the URI travels in the job: on YARN
an executor does not see the driver's environment; so do the server's credentials, MLFLOW_TRACKING_TOKEN
or _USERNAME and _PASSWORD, which nothing prints or writes: rank 0 puts them in its own environment,
where MLflow reads them). Otherwise it is the one MLflow itself would make
in the run folder's parent folder: ``PARENT/mlflow.db`` (SQLite, MLflow 3's default store; its old
file store ``./mlruns`` is refused unless MLFLOW_ALLOW_FILE_STORE is set) with the artifacts in
``PARENT/mlruns/``, so ``mlflow ui`` started in that folder shows it. Beside the run folder, not in
it: the runs of one folder (runs/a, runs/b) are compared in one store, which is what MLflow is for;
an old run's record outlives its replacement (--overwrite); and a store inside a replacement would
be renamed away from the paths it records when the replacement is published.

Tracking never stops or stalls training: the loop only queues calls and one thread makes them. That
thread's HTTP requests are bounded (MLFLOW_HTTP_REQUEST_TIMEOUT and _MAX_RETRIES, unless set), so a
server that does not answer fails in seconds rather than MLflow's minutes, and the end of the run
waits for it at most that long. After the first failure the tracker warns once (stderr and
train.log) and drops everything after it: a half-logged run is better than a run that waits on one.

A resumed start (a relaunch, ``--resume``) continues the MLflow run it finds in ``RUN/mlflow.json``
(its metrics after the checkpoint appear twice there: MLflow cannot drop them). Imports no Spark;
mlflow itself only in the tracker's thread.
"""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from torchonspark.datasets import fs
from torchonspark.datasets.hdfs import first_line
from torchonspark.sparkjobs.engine.recipe import Recipe, param_value

EXPERIMENT = "torchonspark"  # unless MLFLOW_EXPERIMENT_NAME is set on the driver
RUN_ID_FILE = "mlflow.json"  # in the run folder: the MLflow run a resumed start continues
# A server that does not answer fails after about 3 x 10 s + 1 s + 2 s of backoff (MLflow's defaults: 120 s a
# request, 7 retries, minutes in all); the training loop waits for none of it.
HTTP_LIMITS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "10", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
               "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
END_WAIT_S = 300.0  # the most the end of a run waits for the model's upload to a live server
CREDENTIALS = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")  # MLflow's own names


@dataclass(frozen=True)
class TrackingTarget:
    """Where a run is tracked: resolved once on the driver and carried by the job."""

    uri: str
    experiment: str = EXPERIMENT
    artifact_location: str | None = None  # the embedded store's artifact folder; a server has its own
    credentials: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # (name, value) of CREDENTIALS set on the driver

    @property
    def shown_uri(self) -> str:
        """The URI without a password written into it (http://user:secret@host), for messages."""
        scheme, separator, rest = self.uri.partition("://")
        authority, slash, path = rest.partition("/")
        if not separator or "@" not in authority:
            return self.uri
        return f"{scheme}://***@{authority.rpartition('@')[2]}{slash}{path}"


def tracking_target(output: fs.Location) -> TrackingTarget:
    """The store for ``train --mlflow`` writing to ``output``; a ValueError in one line, before any
    work, when the mlflow extra is missing or there is no store to default to."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
    needed = ["mlflow"] if uri else ["mlflow", "sqlalchemy", "alembic"]  # SQLite needs the last two
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise ValueError(f"--mlflow needs {', '.join(missing)}: install the mlflow extra (in this repository: "
                         ".venv/bin/pip install -c constraints.txt -e '.[mlflow]'; elsewhere: pip install mlflow-skinny "
                         "sqlalchemy alembic)")
    if uri:
        return TrackingTarget(uri, experiment, credentials=tuple((name, os.environ[name]) for name in CREDENTIALS
                                                                 if os.environ.get(name)))
    if not isinstance(output.fs, pafs.LocalFileSystem):
        raise ValueError(f"--mlflow: the run folder {output.url} is not on local disk, where the default MLflow store "
                         "would be (beside it); set MLFLOW_TRACKING_URI to a tracking server")
    parent = Path(output.parent().path).resolve()
    return TrackingTarget("sqlite:///" + str(parent / "mlflow.db"), experiment, (parent / "mlruns").as_uri())


def run_params(recipe: Recipe, max_iter: int, world_size: int, device: str) -> dict[str, str]:
    """The recipe's values and the netdef's as MLflow params (text; lists as their items separated by
    spaces, booleans as YAML writes them, unset values left out)."""
    values: dict[str, Any] = {f"model.{key}": value for key, value in recipe.model.to_dict().items()}
    values.update((key, value) for key, value in recipe.to_dict().items() if key != "model")
    values.update(iterations=max_iter, world_size=world_size, device=device)
    return {key: str(param_value(value)) for key, value in values.items() if value is not None}


class RunTracker:
    """Rank 0's MLflow run for one start of a training run. ``log_line`` appends a line to train.log."""

    def __init__(self, target: TrackingTarget, run_root: fs.Location, log_line: Callable[[str], None]) -> None:
        self.target = target
        self._id_file = run_root.join(RUN_ID_FILE)
        self._log_line = log_line
        self._calls: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._failure: str | None = None  # set by the thread; read by the caller's
        self._warned = False
        self._ended = False
        self._client: Any = None
        self._run_id: str | None = None
        for name, value in HTTP_LIMITS.items():
            os.environ.setdefault(name, value)  # read by MLflow at each request, in this process only
        os.environ.update(target.credentials)  # the driver's: an executor's environment is not the driver's
        self._thread = threading.Thread(target=self._work, daemon=True, name="torchonspark-mlflow")
        self._thread.start()

    # --- what the training loop calls: each queues and returns ----------------------------------

    def start(self, run_name: str, params: dict[str, str], tags: dict[str, str], resumed: bool) -> None:
        """Open the MLflow run: a new one with ``params``, or (``resumed``) the one this run folder
        recorded, if it is in the same store."""
        started = int(time.time() * 1000)  # the thread may get to it later: the store's creation takes a second
        self._queue(lambda: self._open(run_name, params, tags, resumed, started))

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        timestamp = int(time.time() * 1000)
        self._queue(lambda: self._log_batch(metrics, step, timestamp))

    def log_model(self, folder: fs.Location) -> None:
        """The exported model folder's files as the run's ``model/`` artifacts."""
        self._queue(lambda: self._upload(folder))

    def end(self, finished: bool) -> None:
        """Close the MLflow run (FINISHED or FAILED) and wait, bounded, for what is queued. Once only."""
        if self._ended:
            return
        self._ended = True
        ended = int(time.time() * 1000)
        self._queue(lambda: self._client.set_terminated(self._run_id, "FINISHED" if finished else "FAILED", ended))
        self._calls.put(None)
        self._thread.join(END_WAIT_S)
        if self._thread.is_alive() and self._failure is None:
            self._failure = f"still busy after {END_WAIT_S:.0f} s at the end of the run; left unfinished"
        self._warn_once()

    # --- the thread ------------------------------------------------------------------------------

    def _queue(self, call: Callable[[], None]) -> None:
        self._warn_once()
        if self._failure is None:
            self._calls.put(call)

    def _work(self) -> None:
        while (call := self._calls.get()) is not None:
            if self._failure is not None:
                continue  # after the first failure, nothing more is tried
            try:
                call()
            except Exception as error:  # whatever MLflow raises, training goes on
                message = first_line(error).replace(self.target.uri, self.target.shown_uri)  # MLflow's messages name its URLs
                self._failure = message if len(message) <= 300 else message[:297] + "..."

    def _open(self, run_name: str, params: dict[str, str], tags: dict[str, str], resumed: bool, started: int) -> None:
        from mlflow import MlflowClient
        from mlflow.entities import Param

        self._client = MlflowClient(tracking_uri=self.target.uri)
        recorded = self._recorded_run() if resumed else None
        if recorded is not None:
            self._run_id = recorded
            self._client.update_run(recorded, status="RUNNING")
            return  # MLflow refuses to change a param's value: a resume keeps the first start's
        experiment = self._client.get_experiment_by_name(self.target.experiment)
        experiment_id = (experiment.experiment_id if experiment is not None else
                         self._client.create_experiment(self.target.experiment, artifact_location=self.target.artifact_location))
        self._run_id = self._client.create_run(experiment_id, start_time=started, run_name=run_name, tags=tags).info.run_id
        self._id_file.write_text_atomically(json.dumps({"tracking_uri": self.target.shown_uri, "run_id": self._run_id}) + "\n")
        items = [Param(key, value) for key, value in params.items()]
        for first in range(0, len(items), 100):  # MLflow takes at most 100 params a batch
            self._client.log_batch(self._run_id, params=items[first:first + 100])

    def _recorded_run(self) -> str | None:
        try:
            recorded = json.loads(self._id_file.read_bytes())
        except FileNotFoundError:
            return None
        return recorded["run_id"] if recorded.get("tracking_uri") == self.target.shown_uri else None

    def _log_batch(self, metrics: dict[str, float], step: int, timestamp: int) -> None:
        from mlflow.entities import Metric

        self._client.log_batch(self._run_id, metrics=[Metric(key, value, timestamp, step) for key, value in metrics.items()])

    def _upload(self, folder: fs.Location) -> None:
        if isinstance(folder.fs, pafs.LocalFileSystem):
            self._client.log_artifacts(self._run_id, folder.path, "model")
            return
        local = Path(tempfile.mkdtemp(prefix="torchonspark-mlflow-"))  # MLflow uploads from local files only
        try:
            for info in fs.list_files(folder):
                name = info.path[len(folder.path):].lstrip("/")
                (local / name).parent.mkdir(parents=True, exist_ok=True)
                (local / name).write_bytes(folder.join(name).read_bytes())
            self._client.log_artifacts(self._run_id, str(local), "model")
        finally:
            shutil.rmtree(local, ignore_errors=True)

    def _warn_once(self) -> None:
        """Say the first failure, from the caller's thread (train.log has one writer at a time)."""
        if self._failure is None or self._warned:
            return
        self._warned = True
        line = f"mlflow: tracking in {self.target.shown_uri} stopped: {self._failure}; training goes on without it"
        print(line, file=sys.stderr, flush=True)
        try:
            self._log_line(line)
        except OSError:
            pass  # the run folder's own failure is reported where it happens
