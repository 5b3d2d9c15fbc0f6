"""The training run's output folder (a local path or URL), written by rank 0 only:

    job.json             what rank 0 started: the model, the recipe, its length and workers, and each start
    metrics.jsonl        a line per display interval and per validation, appended as they happen
    train.log            the run's story with times: rank 0's lines, restarts, why a worker failed
    logs/rank-N.log      a failed worker's last output and its error (written only on failure)
    summary.json         the run's outcome
    plots/training.png   loss and validation top-1/top-5 against iterations, redrawn at every validation
    tb/                  TensorBoard event files, one or more per start of the run (see tensorboard.py)
    checkpoints/iter-00001000.pt ...   the last few, each written whole
    model/               the exported model (see export.py)
    mlflow.json          the MLflow run this run logs to (train --mlflow; see tracking.py)

A run that replaces an existing one (``--overwrite``) trains in ``.NAME.replacing`` beside it
(``RunFolder.replacement_of``) and is renamed over it when it has finished.

The names are defined here once; the drivers print them from here. Imports no Spark: the worker
writes the folder under plain torchrun too.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import socket
import time
from typing import Any

from torchonspark.datasets import fs

CHECKPOINT = re.compile(r"iter-(\d{8})\.pt$")
METRICS, SUMMARY, PLOTS, CHECKPOINTS, MODEL = "metrics.jsonl", "summary.json", "plots", "checkpoints", "model"
LOG, RANK_LOGS, JOB, TENSORBOARD = "train.log", "logs", "job.json", "tb"
PLOT_FILES = ("training.png",)


class RunFolder:
    """A run folder at ``root``. ``publish_to``: the folder this one replaces when the run has
    finished (``--overwrite`` of an existing run); until then the old run is left as it was."""

    def __init__(self, root: fs.Location, publish_to: fs.Location | None = None) -> None:
        self.root = root
        self.publish_to = publish_to
        self.job = root.join(JOB)
        self.metrics = root.join(METRICS)
        self.summary = root.join(SUMMARY)
        self.plots = root.join(PLOTS)
        self.checkpoints = root.join(CHECKPOINTS)
        self.model = root.join(MODEL)
        self.log = root.join(LOG)
        self.rank_logs = root.join(RANK_LOGS)
        self.tensorboard = root.join(TENSORBOARD)
        # Appended to as the run goes; on HDFS a broken append is written again whole (fs.AppendedFile).
        self._metrics_file = fs.AppendedFile(self.metrics)
        self._log_file = fs.AppendedFile(self.log)

    @staticmethod
    def replacement_of(output: fs.Location) -> fs.Location:
        """Where a run that replaces ``output`` trains until it has finished (a hidden sibling)."""
        return output.parent().join(f".{output.name}.replacing")

    @property
    def final(self) -> fs.Location:
        """Where the run is found once it has finished."""
        return self.publish_to or self.root

    def create(self, fresh: bool = True) -> None:
        """Make the folders; a fresh replacement first removes one an earlier run left unfinished (a
        relaunch of this run resumes in it instead)."""
        if fresh and self.publish_to is not None and self.root.exists():
            self.root.fs.delete_dir(self.root.path)
        for folder in (self.root, self.plots, self.checkpoints):
            folder.fs.create_dir(folder.path)

    def publish(self) -> None:
        """Put a finished replacement in place of the run it replaces (a no-op for a plain run)."""
        if self.publish_to is not None:
            fs.publish(self.root, self.publish_to)

    def discard(self) -> None:
        """Remove an unfinished replacement (the run it was to replace is untouched)."""
        if self.publish_to is not None and self.root.exists():
            self.root.fs.delete_dir(self.root.path)

    @staticmethod
    def contents(url: str) -> str:
        """The folder's files, for the line a driver prints at the end."""
        plots = ", ".join(f"{PLOTS}/{name}" for name in PLOT_FILES)
        return f"{url} ({LOG}, {METRICS}, {SUMMARY}, {plots}, {CHECKPOINTS}/, {MODEL}/, {TENSORBOARD}/)"

    # --- logs ------------------------------------------------------------------------------------

    def append_log(self, text: str) -> None:
        """Each line of ``text`` with the local time, appended and closed at once (on a cluster the
        log is read while the run goes on, and a restart appends to it)."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        lines = "".join(f"{stamp} {line}\n" for line in text.splitlines())
        self._log_file.append(lines.encode())

    def append_rank_log(self, rank: int, text: str) -> fs.Location:
        """A failed worker's output and error, added to logs/rank-N.log (attempts one after another)."""
        self.rank_logs.fs.create_dir(self.rank_logs.path)
        target = self.rank_logs.join(f"rank-{rank}.log")
        header = f"--- rank {rank} failed at {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n"
        with target.fs.open_append_stream(target.path, compression=None) as stream:
            stream.write((header + text.rstrip("\n") + "\n").encode())
        return target

    # --- the job ---------------------------------------------------------------------------------

    def record_start(self, iteration: int, job: dict[str, Any], processes: int) -> None:
        """What this start of the run trains (``job``: model, recipe, max_iter, per_epoch, world_size...),
        with the run's starts so far, each with the processes that computed its workers: a resume adds
        one. Starts after ``iteration`` are dropped, as their metrics lines are (keep_metrics_through)."""
        earlier = self.read_job() or {}
        starts = [start for start in earlier.get("starts", []) if start["iteration"] <= iteration]
        starts.append({"iteration": iteration, "time": time.time(), "host": socket.gethostname(), "processes": processes})
        self.job.write_text_atomically(json.dumps({**job, "starts": starts}, indent=2) + "\n")

    def read_job(self) -> dict[str, Any] | None:
        """job.json, or None for a run that has none yet (or one from before it was written)."""
        try:
            return json.loads(fs.retrying(self.job, "reading", self.job.read_bytes))
        except FileNotFoundError:
            return None

    # --- metrics ---------------------------------------------------------------------------------

    def append_metrics(self, record: dict[str, Any]) -> None:
        """One JSON line, appended and closed at once so a reader sees it while training runs. Standard
        JSON: a value that is not a finite number (a diverged loss) is written as null."""
        line = json.dumps({key: _finite_or_none(value) for key, value in record.items()}, allow_nan=False)
        self._metrics_file.append((line + "\n").encode())

    def read_metrics(self) -> list[dict[str, Any]]:
        try:
            text = fs.retrying(self.metrics, "reading", self.metrics.read_bytes).decode()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def keep_metrics_through(self, iteration: int) -> None:
        """Drop lines after ``iteration`` (written after the checkpoint a resumed run starts from),
        so that no iteration appears twice. Restart records carry the iteration they resumed from."""
        records = self.read_metrics()
        kept = [record for record in records if record["iteration"] <= iteration]
        if len(kept) < len(records):
            self._metrics_file.replace("".join(json.dumps(record) + "\n" for record in kept).encode())

    # --- checkpoints -----------------------------------------------------------------------------

    def checkpoint_paths(self) -> list[fs.Location]:
        if not fs.retrying(self.checkpoints, "listing", self.checkpoints.is_dir):
            return []
        found = [info for info in fs.retrying(self.checkpoints, "listing", lambda: fs.list_files(self.checkpoints))
                 if CHECKPOINT.search(info.base_name)]
        return [self.checkpoints.join(info.base_name) for info in sorted(found, key=lambda info: info.base_name)]

    def save_checkpoint(self, state: dict[str, Any], iteration: int, keep: int) -> fs.Location:
        """Write the checkpoint whole, read it back to verify it (a disk or DataNode that lost bytes is
        found now, not at the restart that needs it), then drop the oldest beyond ``keep``. On HDFS a
        write or read that a restarting NameNode or a lost DataNode broke is done again (fs.retrying)."""
        import torch  # here: a reader of run folders (`torchonspark status`) starts without torch

        buffer = io.BytesIO()
        torch.save(state, buffer)
        data = buffer.getvalue()
        target = self.checkpoints.join(f"iter-{iteration:08d}.pt")
        target.write_bytes_atomically(data)
        if hashlib.sha256(fs.retrying(target, "verifying", target.read_bytes)).digest() != hashlib.sha256(data).digest():
            target.fs.delete_file(target.path)
            raise OSError(f"checkpoint {target.url} read back different from what was written; it was removed")
        for old in self.checkpoint_paths()[:-keep]:
            fs.retrying(old, "removing", lambda old=old: _delete_if_there(old))
        return target

    def latest_checkpoint(self) -> fs.Location | None:
        paths = self.checkpoint_paths()
        return paths[-1] if paths else None

    # --- summary and plots -----------------------------------------------------------------------

    def write_summary(self, summary: dict[str, Any]) -> None:
        self.summary.write_text_atomically(json.dumps(summary, indent=2) + "\n")

    def read_summary(self) -> dict[str, Any] | None:
        try:
            return json.loads(fs.retrying(self.summary, "reading", self.summary.read_bytes))
        except FileNotFoundError:
            return None

    def write_plots(self) -> None:
        """plots/training.png from metrics.jsonl and job.json, replaced whole: the worker redraws it at
        every validation, so it can be watched while the run goes on."""
        from torchonspark.sparkjobs.engine.plots import training_figure  # matplotlib: only where plots are drawn

        job = self.read_job()
        if job is None:  # a run from before job.json: its summary has the model and recipe
            job = self.read_summary()
        png = training_figure(self.read_metrics(), job)
        self.plots.fs.create_dir(self.plots.path)
        self.plots.join(PLOT_FILES[0]).write_bytes_atomically(png)


def _finite_or_none(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _delete_if_there(location: fs.Location) -> None:
    """Delete a file; one that is gone already is fine (a retried delete that had gone through)."""
    try:
        location.fs.delete_file(location.path)
    except FileNotFoundError:
        pass
