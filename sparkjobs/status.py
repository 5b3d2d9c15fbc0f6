"""Where a training run stands, from its run folder alone (a path or URL, hdfs:// included):

    torchonspark status ./run                 a few lines
    torchonspark status ./run --watch 30      the same, refreshed every 30 s until the run ends
    torchonspark status hdfs://nn/runs/a --json

Reads what the run already writes (job.json, metrics.jsonl, summary.json, checkpoints/, the run's
lock file) and starts nothing: no Spark, no torch. Whether the run is running comes from its lock
(``datasets/outputlock.py``): the holder's process is looked up when it is on this host; on another
host the lock says who holds it, and the age of the newest record says whether it still writes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from torchonspark.datasets import fs
from torchonspark.datasets.outputlock import Holder, OutputLock
from torchonspark.sparkjobs.commandline import OneLineErrorParser, job_main
from torchonspark.sparkjobs.engine.runfolder import CHECKPOINT, RunFolder

RECENT = 20  # display lines that the speed and the ETA are taken from


@dataclass
class RunStatus:
    """A run folder's state at one moment (``--json`` prints it as it is)."""

    run: str
    state: str  # running, finished or stopped
    finished: bool  # summary.json is there for the newest iteration
    holder: dict[str, Any] | None = None  # who holds the run's lock (host, pid, started, command)
    holder_alive: bool | None = None  # None: on another host, not known from here
    model: dict[str, Any] | None = None  # the netdef
    recipe: dict[str, Any] | None = None
    world_size: int | None = None
    device: str | None = None
    iteration: int = 0  # the newest one on record
    max_iter: int | None = None
    per_epoch: int | None = None
    loss: float | None = None  # the newest display line's mean loss
    loss_iteration: int | None = None
    val_top1: float | None = None
    val_top5: float | None = None
    val_iteration: int | None = None
    images_per_sec: float | None = None  # recent (a finished run: over the whole run)
    eta_seconds: float | None = None  # a running run's, at its recent pace
    seconds_since_record: float | None = None
    wall_seconds: float | None = None  # a finished run's
    checkpoints: list[str] = field(default_factory=list)  # oldest first
    restarts: int = 0  # the driver's relaunches
    last_restart: dict[str, Any] | None = None  # its metrics.jsonl record: cause, iteration resumed from...
    resumes: int = 0  # starts by hand (--resume)
    processes: int | None = None  # of the newest start, when fewer than the workers (an elastic run shrunk)
    resizes: list[dict[str, Any]] = field(default_factory=list)  # an elastic run's: from, to, why, iteration
    replacing: str | None = None  # a live `train --overwrite`: the folder it trains in, published as RUN at its end
    replaces: str | None = None  # then: the old run, which RUN still is until then, in one line

    @property
    def epochs(self) -> float | None:
        return self.max_iter / self.per_epoch if self.max_iter and self.per_epoch else None


def read_status(root: fs.Location) -> RunStatus:
    """The run at ``root`` as it is now; a ValueError if there is no run folder there. While a live
    ``train --overwrite`` replaces it, the replacement's status, with the old run in one line."""
    replacement = _live_replacement(root)
    if replacement is None:
        return _read_run(root, root)
    status = _read_run(replacement, root)
    status.run, status.replacing = root.url, replacement.url
    try:
        status.replaces = _one_line(_read_run(root, None))
    except ValueError:  # --overwrite replaces whatever folder was there
        status.replaces = "not a run folder"
    return status


def _live_replacement(root: fs.Location) -> fs.Location | None:
    """The folder where a running ``train --overwrite`` trains the run that will replace ``root``,
    or None. A replacement whose job is gone is not shown: nothing resumes it (a new --overwrite
    starts it afresh)."""
    replacement = RunFolder.replacement_of(root)
    if not RunFolder(replacement).job.exists():
        return None
    holder = OutputLock(root, "RUN").holder_now()  # the job holds the lock of the run it replaces
    if holder is None or holder.is_gone() is True:
        return None
    return replacement


def _read_run(root: fs.Location, output: fs.Location | None) -> RunStatus:
    """The run in the folder ``root``; whether it runs, from the lock of ``output`` (None: not asked)."""
    run = RunFolder(root)
    if not root.is_dir():
        raise ValueError(f"{root.url}: no run folder there")
    records, job, summary = run.read_metrics(), run.read_job(), run.read_summary()
    if not records and job is None and summary is None:
        raise ValueError(f"{root.url}: not a run folder (no {run.metrics.name}, {run.job.name} or {run.summary.name})")
    described = job or summary or {}
    displays = [record for record in records if "loss" in record]
    validations = [record for record in records if record.get("val_top1") is not None]
    restarts = [record for record in records if record.get("event") == "restart"]
    resizes = [record for record in records if record.get("event") == "resize"]
    status = RunStatus(run=root.url, state="stopped", finished=False, model=described.get("model"),
                       recipe=described.get("recipe"), world_size=described.get("world_size"),
                       device=described.get("device"), max_iter=job.get("max_iter") if job else None,
                       per_epoch=job.get("per_epoch") if job else None, restarts=len(restarts),
                       last_restart=restarts[-1] if restarts else None, resizes=resizes,
                       checkpoints=[location.name for location in run.checkpoint_paths()])
    status.iteration = max((record["iteration"] for record in displays + validations), default=0)
    if displays:
        status.loss, status.loss_iteration = displays[-1]["loss"], displays[-1]["iteration"]
    if validations:
        last = validations[-1]
        status.val_top1, status.val_top5, status.val_iteration = last["val_top1"], last.get("val_top5"), last["iteration"]
    times = [record["time"] for record in records if "time" in record]
    status.seconds_since_record = time.time() - times[-1] if times else None
    if job is not None:
        restarted = {record["iteration"] for record in restarts + resizes}
        status.resumes = len([start for start in job.get("starts", [])[1:] if start["iteration"] not in restarted])
        processes = (job.get("starts") or [{}])[-1].get("processes")
        status.processes = processes if processes is not None and processes < (status.world_size or 0) else None
    holder = OutputLock(output, "RUN").holder_now() if output is not None else None
    if holder is not None:
        status.holder, status.holder_alive = asdict(holder), _alive(holder)
    if summary is not None and summary.get("iterations", 0) >= status.iteration:
        status.finished = True
        status.iteration = summary["iterations"]
        status.max_iter = status.max_iter or summary["iterations"]
        status.val_top1, status.val_top5, status.val_iteration = summary["val_top1"], summary["val_top5"], summary["iterations"]
        status.images_per_sec, status.wall_seconds = summary.get("train_images_per_sec"), summary.get("wall_seconds")
    else:
        recent = _current_attempt(records, job)[-RECENT:]
        if recent:
            status.images_per_sec = sum(record["images_per_sec"] for record in recent) / len(recent)
        seconds_per_iteration = _pace(recent, status.world_size, job)
        if status.max_iter and seconds_per_iteration is not None and status.holder_alive is not False and holder:
            status.eta_seconds = max(0, status.max_iter - status.iteration) * seconds_per_iteration
    if holder is not None and status.holder_alive is not False:
        status.state = "running"
    elif status.finished:
        status.state = "finished"
    return status


def _alive(holder: Holder) -> bool | None:
    gone = holder.is_gone()
    return None if gone is None else not gone


def _current_attempt(records: Sequence[dict[str, Any]], job: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The display lines since the run last started (a relaunch trains at its own pace)."""
    started = job["starts"][-1]["time"] if job and job.get("starts") else None
    since = 0
    for index, record in enumerate(records):
        if record.get("event") == "restart":
            since = index + 1
    return [record for record in records[since:]
            if "loss" in record and (started is None or record.get("time", started) >= started)]


def _pace(recent: Sequence[dict[str, Any]], world_size: int | None, job: dict[str, Any] | None) -> float | None:
    """Wall seconds per iteration lately, validations and checkpoints included (what an ETA needs);
    from the speed of one display line when there is only one."""
    if len(recent) >= 2 and recent[-1]["iteration"] > recent[0]["iteration"]:
        return (recent[-1]["time"] - recent[0]["time"]) / (recent[-1]["iteration"] - recent[0]["iteration"])
    if recent and world_size and job and recent[-1].get("images_per_sec"):
        return world_size * job["recipe"]["batch_size"] / recent[-1]["images_per_sec"]
    return None


def _one_line(status: RunStatus) -> str:
    """A run in one line: state, model, iteration, its last top-1 and top-5."""
    text = status.state + (f", {status.model['name']}" if status.model else "") + f", iteration {status.iteration}"
    if status.val_iteration is not None:
        text += f", val top-1 {status.val_top1:.4f}, top-5 {_number(status.val_top5)}"
    return text


def status_lines(status: RunStatus) -> list[str]:
    """The status in a few lines, for a person."""
    lines = _state_lines(status)
    if status.replacing is not None:
        lines.append(f"a replacement (train --overwrite) in {status.replacing}: it replaces the old run when it finishes; "
                     f"the old run: {status.replaces}")
    if status.model is not None:
        workers = (f" on {status.world_size} {status.device or ''} worker(s) x {status.recipe['batch_size']} images"
                   if status.world_size and status.recipe else "")
        lines.append(f"model {status.model['name']}{workers}")
    progress = f"iteration {status.iteration}" + (f" of {status.max_iter} ({100 * status.iteration / status.max_iter:.0f}%)"
                                                  if status.max_iter else "")
    if status.per_epoch:
        progress += f", epoch {status.iteration / status.per_epoch:.1f}" + (f" of {status.epochs:g}" if status.epochs else "")
    if status.images_per_sec is not None:
        progress += f", {status.images_per_sec:.0f} images/s"
    if status.eta_seconds is not None:
        progress += f", ETA {_duration(status.eta_seconds)}"
    if status.finished and status.wall_seconds is not None:
        progress += f", took {_duration(status.wall_seconds)}"
    lines.append(progress)
    scores = []
    if status.loss_iteration is not None:
        scores.append(f"loss {_number(status.loss)} (iteration {status.loss_iteration})")
    if status.val_iteration is not None:
        scores.append(f"val top-1 {status.val_top1:.4f}, top-5 {_number(status.val_top5)} (iteration {status.val_iteration})")
    lines.append("; ".join(scores) or "no metrics yet")
    if status.checkpoints:
        newest = status.checkpoints[-1]
        lines.append(f"checkpoints: {len(status.checkpoints)}, newest {newest} (iteration {int(CHECKPOINT.search(newest).group(1))})")
    else:
        lines.append("checkpoints: none")
    if status.restarts:
        last = status.last_restart
        lines.append(f"restarts: {status.restarts}; the last at iteration {last.get('reached_iteration', '?')}, resumed from "
                     f"{last['iteration']}: {last.get('cause', 'cause not recorded')}")
    else:
        lines.append("restarts: none")
    if status.resumes:
        lines[-1] += f"; resumed by hand {status.resumes} time(s)"
    if status.resizes:
        last = status.resizes[-1]
        lines.append(f"resizes: {len(status.resizes)}; the last at iteration {last['iteration']}, {last['from']} -> "
                     f"{last['to']} processes: {last['why']}")
    if status.processes is not None:
        lines.append(f"processes: {status.processes} computing the {status.world_size} workers (an elastic run short of slots)")
    return lines


def _state_lines(status: RunStatus) -> list[str]:
    """Whether the run runs, and who holds its lock."""
    holder = Holder(**status.holder) if status.holder else None
    age = f" (newest record {_duration(status.seconds_since_record)} ago)" if status.seconds_since_record is not None else ""
    if status.state == "running":
        where = "" if status.holder_alive else " (another host: whether it is alive cannot be told from here)"
        return [f"{status.run}: running{age}", f"held by {holder.describe()}{where}"]
    if status.state == "finished":
        return [f"{status.run}: finished (summary.json), not running"]
    if holder is not None:
        return [f"{status.run}: stopped, not finished{age}",
                f"its lock is held by {holder.describe()}, which is gone: "
                "resume it with `torchonspark train ... --resume --take-over-lock`"]
    return [f"{status.run}: stopped, not finished{age}; resume it with `torchonspark train ... --resume`"]


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d{hours:02d}h{minutes:02d}m"
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def get_args_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="status", description="Where a training run stands: progress, ETA, loss and accuracy, "
                                "speed, checkpoints, restarts, whether it runs (from its run folder; no Spark).")
    parser.add_argument("run_folder", metavar="RUN", help="a run folder (train --output), a path or URL")
    parser.add_argument("--watch", type=float, metavar="SECONDS",
                        help="refresh every SECONDS (at least 1) until the run is no longer running; Ctrl-C stops")
    parser.add_argument("--json", action="store_true", help="one JSON object (with --watch, one per refresh)")
    return parser


def run(args: argparse.Namespace) -> int:
    if args.watch is not None and args.watch < 1:
        raise ValueError(f"--watch must be at least 1 second; got {args.watch:g}")
    root = fs.resolve(args.run_folder)
    clear = args.watch is not None and not args.json and sys.stdout.isatty()
    try:
        while True:
            status = read_status(root)
            if args.json:
                print(json.dumps({**asdict(status), "epochs": status.epochs}), flush=True)
            else:
                print(("\033[H\033[J" if clear else "") + "\n".join(status_lines(status)), flush=True)
            if args.watch is None or status.state != "running":
                return 0
            time.sleep(args.watch)
            if not clear and not args.json:
                print(flush=True)
    except KeyboardInterrupt:  # Ctrl-C ends a watch: quietly, with the shell's status for it
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    return job_main(get_args_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
