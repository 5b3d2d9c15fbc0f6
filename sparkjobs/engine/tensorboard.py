"""The run's TensorBoard event files (``RUN/tb/``), written by rank 0 alone; ``tensorboard --logdir RUN/tb``
reads them:

    scalars   train/loss, train/lr, train/images_per_sec at each display line (the values of metrics.jsonl);
              val/top1, val/top5 at each validation
    text      model/layers: the network's per-layer table, as ``build_resnet --table`` prints it, at each start
    hparams   the recipe's values, the workers and the device, against val/top1 and val/top5

An event file is appended to as training goes. In a run folder on local disk the writer appends to it
in place. HDFS cannot append cheaply and the filesystem layer writes files whole, so for a run folder
anywhere else the writer appends in a local temporary folder, and ``sync`` copies each of its files
over its namesake in RUN/tb whole (written beside and renamed: a reader never sees half a file); the
worker syncs at each validation and checkpoint and at the end, never between (the loop pays only for
queueing a few small records at a display).

Each start of a run (a resume, a driver's restart) writes an event file of its own (SummaryWriter
names it after the time, the host and the process) and leaves the earlier ones as they are. A start
from a checkpoint tells TensorBoard to drop what earlier starts logged after that checkpoint, as
metrics.jsonl drops their lines: each iteration appears once. (TensorBoard keeps the first start's
hyper-parameters for the run.)

Imports no Spark; tensorboard itself only where a board is made.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from torchonspark.datasets import fs
from torchonspark.sparkjobs.engine.recipe import Recipe, param_value

SCALARS = ("train/loss", "train/lr", "train/images_per_sec", "val/top1", "val/top5")
LAYERS = "model/layers"
FLUSH_SECONDS = 10  # how stale a local run's board may be (the writer's thread flushes; the loop never waits)


class TrainingBoard:
    """The TensorBoard writer of one start of a run: ``folder`` is RUN/tb, ``resumed_from`` the
    iteration of the checkpoint this start resumes from (0 for a new run)."""

    def __init__(self, folder: fs.Location, resumed_from: int) -> None:
        # Here, not at the top: only rank 0 of a run with a board pays for importing tensorboard.
        from torch.utils.tensorboard import SummaryWriter

        self.folder = folder
        self.closed = False
        if isinstance(folder.fs, pafs.LocalFileSystem):
            self._staging = None
            log_dir = folder.path
        else:
            self._staging = Path(tempfile.mkdtemp(prefix="torchonspark-tb-"))
            log_dir = str(self._staging)
        # Every start marks its first step (a session start): TensorBoard takes the first as the run's
        # start and each later one as a restart, dropping what earlier starts logged from that step on.
        self.writer = SummaryWriter(log_dir, flush_secs=FLUSH_SECONDS, purge_step=resumed_from + 1)

    def record_start(self, iteration: int, hparams: dict[str, Any], layers: str) -> None:
        """What this start trains: the hyper-parameters (for TensorBoard's HParams tab, with the run's
        val/top1 and val/top5 as its metrics) and the network's per-layer table."""
        from tensorboard.plugins.text.summary_v2 import text_pb
        from torch.utils.tensorboard.summary import hparams as hparams_summaries

        # The summaries add_hparams writes, but into this run rather than a sub-run of its own, so the
        # HParams tab reads the metrics from the run's own val/ scalars (their latest values: a live run
        # shows there too). The session's end is written by close(finished=True).
        experiment, session_start, _ = hparams_summaries(hparams, {"val/top1": None, "val/top5": None})
        self.writer.file_writer.add_summary(experiment, iteration)
        self.writer.file_writer.add_summary(session_start, iteration)
        # tensorboard's own text summary: torch's add_text would file it under LAYERS + "/text_summary"
        self.writer.file_writer.add_summary(text_pb(LAYERS, _code_block(layers), "the network's layers, as build_resnet "
                                                    "--table counts them"), iteration)

    def display(self, iteration: int, loss: float, lr: float, images_per_sec: float) -> None:
        self.writer.add_scalar("train/loss", loss, iteration)
        self.writer.add_scalar("train/lr", lr, iteration)
        self.writer.add_scalar("train/images_per_sec", images_per_sec, iteration)

    def validation(self, iteration: int, top1: float, top5: float) -> None:
        self.writer.add_scalar("val/top1", top1, iteration)
        self.writer.add_scalar("val/top5", top5, iteration)

    def sync(self) -> None:
        """Put everything logged so far in RUN/tb: written to disk there, or copied there whole."""
        self.writer.flush()
        self._upload()

    def close(self, finished: bool = False) -> None:
        """The last sync; ``finished``: the run ended as it should (the HParams tab says so). Once only."""
        if self.closed:
            return
        self.closed = True
        try:
            if finished:
                from torch.utils.tensorboard.summary import hparams as hparams_summaries

                _, _, session_end = hparams_summaries({}, {})
                self.writer.file_writer.add_summary(session_end)
            self.writer.close()
            self._upload()
        finally:
            if self._staging is not None:
                shutil.rmtree(self._staging, ignore_errors=True)

    def _upload(self) -> None:
        """The staged event files over their namesakes in RUN/tb (only this start's: the earlier
        starts' are there already)."""
        if self._staging is None:
            return
        self.folder.fs.create_dir(self.folder.path)
        for path in sorted(self._staging.iterdir()):
            self.folder.join(path.name).write_bytes_atomically(path.read_bytes())


def run_hparams(recipe: Recipe, max_iter: int, world_size: int, device: str) -> dict[str, Any]:
    """The recipe's values as TensorBoard hyper-parameters (numbers or text): the model by its name and
    description, lists as their items separated by spaces, booleans as YAML writes them, unset values
    left out; with the run's length in iterations, its workers and device."""
    values: dict[str, Any] = {"model": recipe.model.name, "model_description": recipe.model.description}
    for key, value in recipe.to_dict().items():
        if key != "model" and value is not None:
            values[key] = param_value(value)
    values.update(iterations=max_iter, world_size=world_size, device=device)
    return values


def _code_block(text: str) -> str:
    """``text`` as Markdown's preformatted block (TensorBoard renders text summaries as Markdown)."""
    return "\n".join("    " + line for line in text.splitlines())
