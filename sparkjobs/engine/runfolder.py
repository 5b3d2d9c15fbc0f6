"""The training run's output folder (a local path or URL), written by rank 0 only:

    metrics.jsonl        a line per display interval and per validation, appended as they happen
    summary.json         the run's outcome
    plots/loss.png, plots/accuracy.png
    checkpoints/iter-00001000.pt ...   the last few, each written whole
    model/               the exported model (see export.py)

The names are defined here once; the drivers print them from here. Imports no Spark: the worker
writes the folder under plain torchrun too.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
from typing import Any

import torch

from torchonspark.datasets import fs

CHECKPOINT = re.compile(r"iter-(\d{8})\.pt$")
METRICS, SUMMARY, PLOTS, CHECKPOINTS, MODEL = "metrics.jsonl", "summary.json", "plots", "checkpoints", "model"
PLOT_FILES = ("loss.png", "accuracy.png")


class RunFolder:
    """A run folder at ``root``. ``publish_to``: the folder this one replaces when the run has
    finished (``--overwrite`` of an existing run); until then the old run is left as it was."""

    def __init__(self, root: fs.Location, publish_to: fs.Location | None = None) -> None:
        self.root = root
        self.publish_to = publish_to
        self.metrics = root.join(METRICS)
        self.summary = root.join(SUMMARY)
        self.plots = root.join(PLOTS)
        self.checkpoints = root.join(CHECKPOINTS)
        self.model = root.join(MODEL)

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
        return f"{url} ({METRICS}, {SUMMARY}, {plots}, {CHECKPOINTS}/, {MODEL}/)"

    # --- metrics ---------------------------------------------------------------------------------

    def append_metrics(self, record: dict[str, Any]) -> None:
        """One JSON line, appended and closed at once so a reader sees it while training runs. Standard
        JSON: a value that is not a finite number (a diverged loss) is written as null."""
        line = json.dumps({key: _finite_or_none(value) for key, value in record.items()}, allow_nan=False)
        with self.metrics.fs.open_append_stream(self.metrics.path, compression=None) as stream:
            stream.write((line + "\n").encode())

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics.exists():
            return []
        return [json.loads(line) for line in self.metrics.read_bytes().decode().splitlines() if line.strip()]

    def keep_metrics_through(self, iteration: int) -> None:
        """Drop lines after ``iteration`` (written after the checkpoint a resumed run starts from),
        so that no iteration appears twice. Restart records carry the iteration they resumed from."""
        records = self.read_metrics()
        kept = [record for record in records if record["iteration"] <= iteration]
        if len(kept) < len(records):
            self.metrics.write_text_atomically("".join(json.dumps(record) + "\n" for record in kept))

    # --- checkpoints -----------------------------------------------------------------------------

    def checkpoint_paths(self) -> list[fs.Location]:
        if not self.checkpoints.is_dir():
            return []
        found = [info for info in fs.list_files(self.checkpoints) if CHECKPOINT.search(info.base_name)]
        return [self.checkpoints.join(info.base_name) for info in sorted(found, key=lambda info: info.base_name)]

    def save_checkpoint(self, state: dict[str, Any], iteration: int, keep: int) -> fs.Location:
        """Write the checkpoint whole, read it back to verify it (a disk or DataNode that lost bytes is
        found now, not at the restart that needs it), then drop the oldest beyond ``keep``."""
        buffer = io.BytesIO()
        torch.save(state, buffer)
        data = buffer.getvalue()
        target = self.checkpoints.join(f"iter-{iteration:08d}.pt")
        target.write_bytes_atomically(data)
        if hashlib.sha256(target.read_bytes()).digest() != hashlib.sha256(data).digest():
            target.fs.delete_file(target.path)
            raise OSError(f"checkpoint {target.url} read back different from what was written; it was removed")
        for old in self.checkpoint_paths()[:-keep]:
            old.fs.delete_file(old.path)
        return target

    def latest_checkpoint(self) -> fs.Location | None:
        paths = self.checkpoint_paths()
        return paths[-1] if paths else None

    # --- summary and plots -----------------------------------------------------------------------

    def write_summary(self, summary: dict[str, Any]) -> None:
        self.summary.write_text_atomically(json.dumps(summary, indent=2) + "\n")

    def write_plots(self) -> None:
        """Training loss and validation top-1 against iterations, as the seed's plots showed them."""
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt

        records = self.read_metrics()
        series = {
            PLOT_FILES[0]: ("training loss", [(r["iteration"], r["loss"]) for r in records if "loss" in r]),
            PLOT_FILES[1]: ("validation top-1", [(r["iteration"], r["val_top1"]) for r in records if "val_top1" in r]),
        }
        for file_name, (label, points) in series.items():
            figure, axes = plt.subplots(figsize=(7, 4.5), dpi=100)
            if points:
                iterations, values = zip(*points)
                axes.plot(iterations, values, marker="o" if len(points) < 30 else None)
            axes.set_xlabel("iteration")
            axes.set_ylabel(label)
            axes.grid(True, alpha=0.3)
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", bbox_inches="tight")
            plt.close(figure)
            self.plots.join(file_name).write_bytes_atomically(buffer.getvalue())


def _finite_or_none(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value
