"""The training worker: one torch.distributed process of a synchronous SGD job.

Each barrier task of the train job runs ``train_worker`` (through TorchDistributor); it runs the
same under plain torchrun (``sparkjobs/train_worker.py``), without Spark or a JVM. Every rank builds
the net from the netdef, wraps it in DDP (nccl on GPU, gloo on CPU), reads its shard of the data and
steps SGD in lockstep; rank 0 alone writes the run folder.

The loop reads as named steps, as in torchvision's reference script: ``Trainer.__init__`` sets up
(data, net, optimizer, resumed state), ``train`` runs ``train_one_epoch`` until the iteration budget
is spent, and each step is followed by ``after_step`` (display, ``validate``, ``save_checkpoint``);
``finish`` exports the model and writes the summary and plots. This module must not import pyspark.
"""

from __future__ import annotations

import atexit
import hashlib
import math
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from torchonspark.datasets import fs
from torchonspark.datasets.hdfs import first_line
from torchonspark.datasets.loader import ShardedLoader
from torchonspark.datasets.transforms import EvalTransform, TrainTransform
from torchonspark.netdefs import count_complexity
from torchonspark.netdefs.legos import zero_init_residual
from torchonspark.sparkjobs.engine.checkpoint import check_resumable, checkpoint_state, load_initial_weights, newest_loadable
from torchonspark.sparkjobs.engine.credentials import TokenFollower, follow_tokens
from torchonspark.sparkjobs.engine.distributed import (accumulated_step, autocast, init_distributed, select_device, to_device,
                                                       train_step, wrap_ddp)
from torchonspark.sparkjobs.engine.export import export_model, is_exported
from torchonspark.sparkjobs.engine.job import TrainJob
from torchonspark.sparkjobs.engine.keptlines import KeptLines
from torchonspark.sparkjobs.engine.lifeline import start_lifeline
from torchonspark.sparkjobs.engine.optimizer import sgd
from torchonspark.sparkjobs.engine.processexit import end_without_finalizing, exit_status
from torchonspark.sparkjobs.engine.recipe import schedule
from torchonspark.sparkjobs.engine.scoring import count_hits
from torchonspark.sparkjobs.engine.stops import STOP_EXIT_STATUS, Diverged, InputRefused, StorageFull, TrainingStopped, stop_line
from torchonspark.sparkjobs.engine.tensorboard import TrainingBoard, run_hparams
from torchonspark.sparkjobs.engine.tracking import RunTracker, run_params
from torchonspark.sparkjobs.engine.virtual import BufferKeeper, VirtualShare


def train_worker(job: TrainJob) -> dict[str, Any] | None:
    """Run this process's part of the job; rank 0 returns the summary, other ranks None. A failure
    that a relaunch would repeat (divergence, bad data or arguments) ends the process with one line
    and ``STOP_EXIT_STATUS`` (stops.py), not a traceback; torchrun then ends the other ranks. A rank
    that fails leaves its last output and its error in the run folder (logs/rank-N.log): on a
    cluster, the executor's own log may be gone with its container. A process torchrun started ends
    without Python's finalization (processexit.py: torch's gloo threads would abort it)."""
    if "TORCHELASTIC_RUN_ID" in os.environ:  # a process of its own; never a notebook's or a test's
        end_without_finalizing()
    _exit_when_orphaned()
    tokens = follow_tokens(job.tokens, job.token_relay)  # before this process first reaches HDFS
    if job.task_bound:
        start_lifeline()
    _end_stale_workers_of(job)
    device = select_device(job.device, int(os.environ.get("LOCAL_RANK", "0")))
    torch.set_num_threads(job.threads)
    rank, world_size = init_distributed(device)
    trainer = None
    with own_output_kept() as output:
        try:
            trainer = Trainer(job, device, rank, world_size, tokens)
            summary = trainer.train()
            # Leave together: a rank that tore down its end of the group while rank 0 was still writing
            # the export was seen to abort (SIGABRT) at exit.
            dist.barrier()
            return summary
        except Exception as error:  # noqa: BLE001 (sorted below: a stop in one line, anything else raised on)
            stop = _as_stop(error, job)
            if stop is None:
                output.extend(traceback.format_exc().splitlines())  # Python prints it too, as the process ends
                _leave_rank_log(job, rank, output)
                raise
            print(stop_line(stop.kind, str(stop), rank, trainer.iteration if trainer else None), flush=True)  # for the driver
            output.append(f"rank {rank}: {stop}")
            _leave_rank_log(job, rank, output)
            print(f"rank {rank}: {stop}", file=sys.stderr, flush=True)  # for a person (the last line under torchrun)
            exit_status(STOP_EXIT_STATUS)
            raise SystemExit(STOP_EXIT_STATUS) from None
        finally:
            if trainer is not None:
                trainer.close_board()
                trainer.close_tracker()
            if dist.is_initialized():
                dist.destroy_process_group()
            if tokens is not None:
                tokens.stop()


def _as_stop(error: Exception, job: TrainJob) -> TrainingStopped | None:
    """The failure as one a relaunch would repeat (stops.py), or None: divergence and the like, bad
    data or arguments (a ValueError), a run folder without room."""
    if isinstance(error, TrainingStopped):
        return error
    if isinstance(error, ValueError):
        return InputRefused(str(error))
    if isinstance(error, OSError) and fs.out_of_space(error):
        return StorageFull(f"the run folder {job.output.url} has no room: {first_line(error)}; free space or raise the "
                           "quota, then run again with --resume")
    return None


@contextmanager
def own_output_kept(lines: int = 300) -> Iterator[deque[str]]:
    """This process's last lines of stdout and stderr, as they are written."""
    kept: deque[str] = deque(maxlen=lines)
    original = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = KeptLines(original[0], kept), KeptLines(original[1], kept)
    try:
        yield kept
    finally:
        sys.stdout, sys.stderr = original


def _leave_rank_log(job: TrainJob, rank: int, output: deque[str]) -> None:
    run = job.run_folder()
    if not run.root.exists():  # a start that failed before rank 0 made the folder: the console has it all
        return
    try:
        where = run.append_rank_log(rank, "\n".join(output))
        print(f"rank {rank}: its output is kept in {where.url}", file=sys.stderr, flush=True)
    except OSError as error:  # the folder's storage is what failed: the console has it all
        print(f"rank {rank}: could not keep its output in the run folder: {error}", file=sys.stderr, flush=True)


def _exit_when_orphaned(poll_s: float = 1.0) -> None:
    """End this process when its launcher (torchrun) is gone. torchrun starts each worker in a session
    of its own, so a worker whose torchrun was killed (a relaunch cancelling a stalled attempt kills it
    within half a second) would otherwise live on, stuck in a collective for torch's 30-minute timeout."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="torchonspark-orphan-watch").start()


def _end_stale_workers_of(job: TrainJob) -> None:
    """Kill this host's workers of an earlier attempt of the same run (another rendezvous port than
    this attempt's), remove what their TorchDistributor task left, then register this one. A worker
    that was stopped (SIGSTOP, a debugger) when its attempt was cancelled cannot notice that its
    torchrun is gone, and would keep its memory (on a GPU, its device) for good; a task that Spark
    killed never removed its temporary folder (train.py, func.pickle)."""
    folder = Path(tempfile.gettempdir()) / "torchonspark-workers"
    folder.mkdir(exist_ok=True)
    run = hashlib.sha1(job.output.url.encode()).hexdigest()[:16]
    for pidfile in folder.glob(f"{run}-*.pid"):
        pid, scripts = _read_pidfile(pidfile)
        try:
            environment = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            environment = b""  # gone already
        variables = dict(item.split(b"=", 1) for item in environment.split(b"\0") if b"=" in item)
        if b"TORCHELASTIC_RUN_ID" in variables and variables.get(b"MASTER_PORT") == os.environ.get("MASTER_PORT", "").encode():
            continue  # a worker of this attempt
        if b"TORCHELASTIC_RUN_ID" in variables:  # another attempt's, still there
            os.kill(pid, signal.SIGKILL)
        _remove_task_scripts(scripts)
        pidfile.unlink(missing_ok=True)
    mine = folder / f"{run}-{os.getpid()}.pid"
    mine.write_text(f"{os.getpid()}\n{Path(sys.argv[0]).resolve().parent}\n")
    atexit.register(mine.unlink, missing_ok=True)


def _read_pidfile(pidfile: Path) -> tuple[int, Path | None]:
    """(pid, the folder of the script the worker ran) from a pidfile; (0, None) if unreadable."""
    try:
        lines = pidfile.read_text().splitlines()
        return int(lines[0]), Path(lines[1]) if len(lines) > 1 else None
    except (OSError, ValueError, IndexError):
        return 0, None


def _remove_task_scripts(scripts: Path | None) -> None:
    """Remove a TorchDistributor task's temporary folder, and only that: a folder of the temp folder
    holding its train.py and nothing but its files."""
    task_files = {"train.py", "func.pickle", "output.pickle"}
    if scripts is None or scripts.parent != Path(tempfile.gettempdir()) or not (scripts / "train.py").is_file():
        return
    if {entry.name for entry in scripts.iterdir()} <= task_files:
        shutil.rmtree(scripts, ignore_errors=True)


class Clock:
    """Training time: wall time less the pauses for validation and checkpoints, read in laps (one
    per display interval) so that images/s and the ETA count only training."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self._lap_started = self.started
        self._paused = 0.0
        self.training_seconds = 0.0

    @contextmanager
    def paused(self) -> Iterator[None]:
        paused_at = time.monotonic()
        try:
            yield
        finally:
            self._paused += time.monotonic() - paused_at

    def lap(self) -> float:
        """Training seconds since the last lap."""
        now = time.monotonic()
        seconds = now - self._lap_started - self._paused
        self._lap_started, self._paused = now, 0.0
        self.training_seconds += seconds
        return seconds

    def wall_seconds(self) -> float:
        return time.monotonic() - self.started


class LossMeter:
    """The mean training loss of a display interval over every (virtual) worker: summed on the device,
    so the loop never waits for the GPU, and all-reduced only when shown."""

    def __init__(self, device: torch.device, workers: int) -> None:
        self.workers = workers  # the run's virtual workers: each adds one loss a step
        self.sums = torch.zeros(2, dtype=torch.float64, device=device)  # loss total, losses
        self._one = torch.ones((), dtype=torch.float64, device=device)

    def add(self, loss: torch.Tensor) -> None:
        self.sums += torch.stack([loss.double(), self._one])

    def reduce(self) -> tuple[float, float]:
        """(mean loss, steps) of the interval over every worker; starts a new interval."""
        dist.all_reduce(self.sums)
        total, losses = self.sums.tolist()
        self.sums.zero_()
        return total / losses, losses / self.workers


def _eta(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


class Trainer:
    """One rank's training state and the steps that advance it."""

    def __init__(self, job: TrainJob, device: torch.device, rank: int, world_size: int,
                 tokens: TokenFollower | None = None) -> None:
        self.tokens = tokens  # fresh HDFS delegation tokens, for a run longer than they live
        # world_size: the run's workers (virtual.py), which decide its mathematics; processes: how many
        # processes compute them in this start (the torch.distributed world).
        self.job, self.recipe, self.device, self.rank, self.processes = job, job.recipe, device, rank, world_size
        self.world_size = job.virtual_workers or world_size
        self.clock = Clock()
        self.run = job.run_folder()
        self._unlogged: list[str] = []
        self.share = VirtualShare(rank, world_size, self.world_size, device)
        threads = max(1, job.threads // len(self.share.ranks))  # decode threads, shared by this process's loaders
        self.train_loaders = [ShardedLoader(job.data.join("train"), v, self.world_size, self.recipe.batch_size,
                                            TrainTransform(self.recipe.crop_size, self.recipe.scale_range, self.recipe.mirror),
                                            train=True, seed=self.recipe.seed, decode_threads=threads)
                              for v in self.share.ranks]
        # Validation counts every image once whatever the shards: one per process.
        self.val_loader = ShardedLoader(job.data.join("val"), rank, world_size, self.recipe.batch_size,
                                        EvalTransform(self.recipe.crop_size), train=False, decode_threads=job.threads)
        self.per_epoch = len(self.train_loaders[0])
        self.schedule = schedule(self.recipe, self.world_size, self.per_epoch)
        self.max_iter = self.schedule.max_iter
        self.net = self._build_net()
        self.optimizer = sgd(self.net, self.recipe)
        self.iteration = self._resume() if job.resume else 0
        self.first_iteration = self.iteration
        self.ddp = wrap_ddp(self.net, device, self.recipe.ddp_options(), workers=self.world_size)
        self.model = self.ddp
        if self.recipe.torch_compile:  # validation and checkpoints use self.net, which stays eager
            self.model = torch.compile(self.ddp)
        # Fewer processes than workers: every process takes the step of virtual workers (virtual.py), even
        # one that computes a single worker; with one process per worker, DDP's plain step.
        self.buffers = BufferKeeper(self.net) if self.processes < self.world_size else None
        self.losses = LossMeter(device, self.world_size)
        self.last_validation: tuple[float, float] | None = None
        self.validated_at: int | None = None
        self.last_finite_loss: tuple[int, float] | None = None
        self.checkpointed_at = time.monotonic()
        self.board: TrainingBoard | None = None  # rank 0's TensorBoard writer, from the start of train()
        self.tracker: RunTracker | None = None  # rank 0's MLflow run (train --mlflow), from the start of train()

    def say(self, line: str) -> None:
        """Rank 0's line for a person: on the console and in the run's train.log (lines said before
        the run folder exists wait for it: train() makes it)."""
        if self.rank != 0:
            return
        print(line, flush=True)
        self._unlogged.append(line)
        if self.run.root.is_dir():
            self.run.append_log("\n".join(self._unlogged))
            self._unlogged.clear()

    def _build_net(self) -> torch.nn.Module:
        torch.manual_seed(self.recipe.seed)  # the same initial weights everywhere (DDP also broadcasts rank 0's)
        net = self.job.netdef.build()
        if self.recipe.zero_init_residual:
            zero_init_residual(net)
        self.share.seed(self.recipe.seed)  # but each worker its own dropout masks
        if self.job.weights is not None and not self.job.resume:
            kept_new = load_initial_weights(net, self.job.weights)
            if kept_new:
                self.say(f"--weights: kept the new initialisation of {', '.join(kept_new)}")
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            net = net.to(self.device, memory_format=torch.channels_last)
        return net

    def _resume(self) -> int:
        """Load the newest checkpoint that loads into the net, the optimizer and this rank's RNG; its
        iteration. Newer ones that do not load (a truncated write) are skipped, and said so."""
        found = newest_loadable(self.run.checkpoint_paths())
        if found is None:
            raise ValueError(f"--resume: {self.run.checkpoints.url} holds no checkpoint that loads")
        latest, state, skipped = found
        check_resumable(state, self.job.netdef, self.world_size, self.recipe.batch_size, self.max_iter, latest.url,
                        is_exported(self.run.model))
        for line in skipped:
            self.say(f"resume: {line}")
        if state["iteration"] >= self.max_iter:
            self.say(f"resume: the run had finished at iteration {state['iteration']} without its model; exporting it")
        else:
            self.say(f"resuming from iteration {state['iteration']} (checkpoint {latest.url})")
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.share.set_random_states(state["rng"], state.get("cuda_rng"))
        return state["iteration"]

    # --- the loop ----------------------------------------------------------------------------------

    def train(self) -> dict[str, Any] | None:
        """Train to the end of the budget; rank 0 returns the summary."""
        if self.rank == 0:
            self.run.create(fresh=not self.job.resume)
            self.run.keep_metrics_through(self.iteration)  # what a failed attempt wrote after it, if anything
            self.run.record_start(self.iteration, {"model": self.job.netdef.to_dict(), "recipe": self.recipe.to_dict(),
                                                   "schedule": self.schedule.to_dict(), "max_iter": self.max_iter, "per_epoch": self.per_epoch,
                                                   "world_size": self.world_size, "device": self.device.type},
                                  self.processes)
            if self.job.tensorboard:
                self.open_board()
            if self.job.mlflow is not None:
                self.open_tracker()
        shared = f" computed by {self.processes} processes" if self.processes < self.world_size else ""
        self.say(f"training {self.job.netdef.name} on {self.world_size} {self.device.type} worker(s){shared}: {self.max_iter} "
                 f"iterations ({self.per_epoch} per epoch) of {self.world_size} x {self.recipe.batch_size} images")
        if self.iteration >= self.max_iter:  # a finished run whose export failed: its validation is on record
            self.last_validation = self._recorded_validation()
            self.validated_at = self.iteration if self.last_validation else None
        while self.iteration < self.max_iter:
            self.train_one_epoch()
        if self.validated_at != self.iteration:
            self.validate()
        self.save_checkpoint()
        return self.finish() if self.rank == 0 else None

    def open_board(self) -> None:
        """Rank 0's TensorBoard writer for this start, which logs first what the run trains: the
        hyper-parameters and the per-layer table (``build_resnet --table``'s lines)."""
        self.board = TrainingBoard(self.run.tensorboard, self.iteration)
        complexity = count_complexity(self.net)
        self.board.record_start(self.iteration, run_hparams(self.recipe, self.max_iter, self.world_size, self.device.type),
                                "\n".join([complexity.table(), *complexity.summary_lines()]))

    def close_board(self, finished: bool = False) -> None:
        """The last of the TensorBoard events into RUN/tb (rank 0; once). A run that failed keeps what it
        logged where its folder can still be written to: the failure, not this, is what it reports."""
        board, self.board = self.board, None
        if board is None:
            return
        if finished:
            board.close(finished=True)
            return
        try:
            board.close()
        except OSError as error:
            print(f"rank 0: could not keep the TensorBoard events in {board.folder.url}: {error}", file=sys.stderr, flush=True)

    def open_tracker(self) -> None:
        """Rank 0's MLflow run for this start (a resumed start continues the run's own), which logs
        first what the run trains: the recipe's and the netdef's values."""
        self.tracker = RunTracker(self.job.mlflow, self.run.root, self.run.append_log)
        self.tracker.start(self.job.output.name, run_params(self.recipe, self.max_iter, self.world_size, self.device.type),
                           {"torchonspark.run_folder": self.run.final.url, "torchonspark.model": self.job.netdef.name},
                           resumed=self.iteration > 0)

    def close_tracker(self, finished: bool = False) -> None:
        """End the MLflow run (rank 0; once): it never fails the training, it warns."""
        tracker, self.tracker = self.tracker, None
        if tracker is not None:
            tracker.end(finished)

    def train_one_epoch(self) -> None:
        """The rest of the current epoch (from where a resumed run left it), or up to the budget."""
        epoch, offset = divmod(self.iteration, self.per_epoch)
        for loader in self.train_loaders:
            loader.set_epoch(epoch, offset)
        for batches in zip(*self.train_loaders):  # one batch of each of this process's virtual workers
            lr = self.schedule.rate(self.iteration)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            if self.buffers is None:
                (images, targets), = batches
                self.losses.add(train_step(self.model, self.optimizer, images, targets, self.device))
            else:
                self.buffers.save()
                # Eager DDP: a compiled graph need not honour no_sync's switch between its forwards.
                for loss in accumulated_step(self.ddp, self.optimizer, [batches[i] for i in self.share.order],
                                             self.device, self.buffers.restore,
                                             lambda j: self.share.random_state_of(self.share.order[j])):
                    self.losses.add(loss)
            self.iteration += 1
            self.after_step(epoch, lr)
            if self.iteration == self.max_iter:
                break

    def after_step(self, epoch: int, lr: float) -> None:
        """What the recipe schedules after a step: a display line, a validation, a checkpoint (every
        ``snapshot`` iterations, and at a display when ``snapshot_minutes`` have passed since the last)."""
        recipe, iteration = self.recipe, self.iteration
        overdue = False
        if iteration % recipe.display == 0 or iteration == self.max_iter:
            self.display(epoch, lr)
            overdue = self.checkpoint_overdue()
        if recipe.test_interval and iteration % recipe.test_interval == 0:
            with self.clock.paused():
                self.validate()
        snapshot_due = bool(recipe.snapshot) and iteration % recipe.snapshot == 0
        if (snapshot_due or overdue) and iteration < self.max_iter:
            with self.clock.paused():
                self.save_checkpoint()

    def checkpoint_overdue(self) -> bool:
        """Whether snapshot_minutes have passed since the last checkpoint, as rank 0's clock says:
        every rank must checkpoint at the same iteration (it gathers their RNG states), so rank 0
        decides and tells the others."""
        if not self.recipe.snapshot_minutes:
            return False
        overdue = torch.tensor([time.monotonic() - self.checkpointed_at > 60 * self.recipe.snapshot_minutes], device=self.device)
        dist.broadcast(overdue, src=0)
        return bool(overdue.item())

    # --- the steps -----------------------------------------------------------------------------------

    def display(self, epoch: int, lr: float) -> None:
        for line in self.tokens.notices() if self.tokens is not None else ():
            self.say(line)  # rank 0's alone
        mean_loss, steps = self.losses.reduce()
        self.check_finite_loss(mean_loss, lr)
        seconds = self.clock.lap()
        speed = steps * self.world_size * self.recipe.batch_size / seconds
        if self.rank != 0:
            return
        self.run.append_metrics({"iteration": self.iteration, "epoch": epoch, "loss": mean_loss, "lr": lr,
                                 "images_per_sec": speed, "elapsed": self.clock.wall_seconds(), "time": time.time()})
        if self.board is not None:
            self.board.display(self.iteration, mean_loss, lr, speed)
        if self.tracker is not None:
            self.tracker.log_metrics({"loss": mean_loss, "lr": lr, "images_per_sec": speed}, self.iteration)
        eta = (self.max_iter - self.iteration) * seconds / max(steps, 1)
        top = f"  val top-1 {self.last_validation[0]:.4f}" if self.last_validation else ""
        self.say(f"iter {self.iteration}/{self.max_iter}  epoch {epoch}  loss {mean_loss:.4f}  lr {lr:.4g}  "
                 f"{speed:.0f} img/s  ETA {_eta(eta)}{top}")

    def _recorded_validation(self) -> tuple[float, float] | None:
        """The validation metrics.jsonl holds for this iteration (every rank reads the same file, so
        every rank decides alike whether to validate again)."""
        found = [r for r in self.run.read_metrics() if r.get("iteration") == self.iteration and "val_top1" in r]
        return (found[-1]["val_top1"], found[-1]["val_top5"]) if found else None

    def check_finite_loss(self, mean_loss: float, lr: float) -> None:
        """Stop the run (every rank sees the same reduced loss) when the loss is no longer a number."""
        if math.isfinite(mean_loss):
            self.last_finite_loss = (self.iteration, mean_loss)
            return
        before = (f"the last finite mean loss was {self.last_finite_loss[1]:.4f} at iteration {self.last_finite_loss[0]}"
                  if self.last_finite_loss else "no finite loss was seen")
        raise Diverged(f"training diverged: the mean loss is {mean_loss} at iteration {self.iteration} ({before}, learning "
                       f"rate {lr:.4g}); lower base_lr or add warmup_iters; nothing was exported")

    def validate(self) -> tuple[float, float]:
        """Top-1 and top-5 over the whole val split: each rank counts its shard, the counts are summed."""
        # DDP gives every rank rank 0's BatchNorm statistics at the start of each forward, and each rank
        # then updates its own copy with its own batch: without this, ranks would score with different
        # statistics from the ones rank 0 checkpoints and exports.
        for buffer in self.net.buffers():
            dist.broadcast(buffer, src=0)
        self.net.eval()
        counts = torch.zeros(3, dtype=torch.float64, device=self.device)
        with torch.no_grad(), autocast(self.device):
            for images, labels in self.val_loader:
                images, labels = to_device(images, labels, self.device)
                top1, top5 = count_hits(self.net(images), labels)
                counts += torch.stack([top1, top5, torch.tensor(len(labels), device=self.device)]).double()
        dist.all_reduce(counts)
        self.net.train()
        top1, top5, images = counts.tolist()
        self.last_validation, self.validated_at = (top1 / images, top5 / images), self.iteration
        if self.rank == 0:
            self.run.append_metrics({"iteration": self.iteration, "epoch": (self.iteration - 1) // self.per_epoch,
                                     "val_top1": top1 / images, "val_top5": top5 / images})
            self.run.write_plots()  # the seed's plot, live
            if self.board is not None:
                self.board.validation(self.iteration, top1 / images, top5 / images)
                self.board.sync()
            if self.tracker is not None:
                self.tracker.log_metrics({"val_top1": top1 / images, "val_top5": top5 / images}, self.iteration)
        return self.last_validation

    def save_checkpoint(self) -> None:
        """Rank 0 writes what a restart needs, every rank's RNG state included; never weights that are
        not finite (DDP keeps them equal on every rank, so every rank stops alike)."""
        if not all(torch.isfinite(parameter).all() for parameter in self.net.parameters()):
            raise Diverged(f"training diverged: weights are not finite at iteration {self.iteration}; lower base_lr or add "
                           "warmup_iters; no checkpoint was written and nothing was exported")
        # Every virtual worker's random states, in virtual rank order: a checkpoint does not depend on how
        # many processes computed them.
        gathered: list[Any] = [None] * self.processes
        dist.all_gather_object(gathered, self.share.random_states())
        rng = [state for cpu, _ in gathered for state in cpu]
        cuda_rng = [state for _, cuda in gathered for state in cuda] if self.device.type == "cuda" else None
        if self.rank == 0:
            state = checkpoint_state(self.net, self.optimizer, self.iteration, (self.iteration - 1) // self.per_epoch, rng,
                                     cuda_rng, self.world_size, self.recipe.batch_size, self.recipe.to_dict(), self.job.netdef)
            try:
                self.run.save_checkpoint(state, self.iteration, self.recipe.keep_snapshots)
            except OSError as error:
                if not fs.out_of_space(error):
                    raise
                newest = self.run.latest_checkpoint()
                raise StorageFull(f"no room for the checkpoint of iteration {self.iteration} in {self.run.checkpoints.url}: "
                                  f"{first_line(error)}; the newest checkpoint ({newest.name if newest else 'none'}) is "
                                  "intact: free space or raise the quota, then run again with --resume") from None
            if self.board is not None:  # a run folder on HDFS sees the events at least this often
                self.board.sync()
        self.checkpointed_at = time.monotonic()

    def finish(self) -> dict[str, Any]:
        """Rank 0: the exported model, the summary and the plots; then the run is published."""
        export_model(self.net, self.job.netdef, self.job.labels, self.run.model)
        top1, top5 = self.last_validation
        images_trained = (self.iteration - self.first_iteration) * self.world_size * self.recipe.batch_size
        summary = {
            "val_top1": top1,
            "val_top5": top5,
            "world_size": self.world_size,
            "processes": self.processes,
            "iterations": self.iteration,
            "epochs": self.iteration / self.per_epoch,
            "train_images_per_sec": images_trained / self.clock.training_seconds if self.clock.training_seconds else None,
            "wall_seconds": self.clock.wall_seconds(),
            "model": self.job.netdef.to_dict(),
            "recipe": self.recipe.to_dict(),
            "device": self.device.type,
            "resumed_from": self.first_iteration or None,
            "restarts": [record for record in self.run.read_metrics() if record.get("event") == "restart"],
        }
        self.run.write_summary(summary)
        self.run.write_plots()
        self.say(f"done: val top-1 {top1:.4f}, top-5 {top5:.4f}; model in {self.run.final.join('model').url}")
        self.close_board(finished=True)
        self.run.publish()
        if self.tracker is not None:  # from where the model now is: a replacement's folder was renamed
            self.tracker.log_model(self.run.final.join("model"))
            self.close_tracker(finished=True)
        return summary
