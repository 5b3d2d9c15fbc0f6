"""Training that heals itself: the driver relaunches the barrier stage from the newest checkpoint that
loads when a worker, its process or its executor is lost, up to ``max_restarts`` times, and stops a run
that only a person can fix.

Spark's barrier mode fails the whole stage when one task fails and never retries it; TorchDistributor
starts torchrun without restarts. So the relaunch is here, around ``launch``, in the spirit of
torchrun's elastic agent (``--max-restarts``: rerun the workers, which resume from saved state): the
workers already save exactly what a restart needs (checkpoint.py), and a relaunch is a resume.

What is not retried: a failure a worker reports as one a relaunch would repeat (stops.py: divergence,
bad data or arguments), and the same failure at the same iteration twice. Every restart is a record in
metrics.jsonl (``event: restart``: the cause, the iteration it resumes from, what was lost), which the
workers copy into summary.json.

A watchdog thread reads the progress the workers already write (metrics.jsonl) and cancels the barrier
stage (its Spark job group) when none comes for ``stall_timeout_s``: a stopped or hung worker is then
handled as a lost one, instead of waiting for torch's 30-minute collective timeout. A stage that fails
after its workers finished the run (model exported, summary written) is not relaunched: the run is whole;
and one whose workers have not ended FINISHED_GRACE_S after the run became whole is cancelled and its
summary taken, whatever a worker does after (an abort at exit, a hang). The workers themselves end with
the Spark task that started them (engine/lifeline.py).

Elastic runs (``min_workers`` below ``workers``): the run's workers are virtual (engine/virtual.py),
so the stage may run on fewer processes with the same mathematics. A relaunch that does not find a
slot for every worker within ``elastic_wait_s`` goes on with the slots there are (at least
``min_workers``); while a run is short of processes the watchdog looks for slots that came back, and
ends the stage at the next checkpoint to relaunch on them. Each change is a ``resize`` record in
metrics.jsonl (from, to, why, seconds lost) and a line in train.log.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import SparkSession

from torchonspark.sparkjobs.cluster.credentials import TokenRelay
from torchonspark.sparkjobs.cluster.launch import TrainingFailed, launch
from torchonspark.sparkjobs.cluster.preflight import registered_task_slots
from torchonspark.sparkjobs.engine.checkpoint import newest_loadable
from torchonspark.sparkjobs.engine.export import is_exported
from torchonspark.sparkjobs.engine.job import TrainJob
from torchonspark.sparkjobs.engine.runfolder import CHECKPOINT, RunFolder
from torchonspark.sparkjobs.engine.worker import train_worker

POLL_S = 1.0
STARTUP_GRACE_S = 120.0  # before the first metrics line: Spark's tasks, torchrun, imports, the data listed
# After the run is whole (summary.json, the model): the workers publish, close and exit in about a
# second; a stage still running this long after is waiting on a worker that will not end.
FINISHED_GRACE_S = 10.0
ELASTIC_WAIT_S = 180.0  # for the lost slots to come back before an elastic run goes on with fewer


@dataclass
class Stall:
    """Set by the watchdog when it cancelled a stage: for lack of progress (``seconds`` without a new
    iteration), or because its workers had not ended ``lingered`` seconds after the run was whole."""

    seconds: float = 0.0
    iteration: int | None = None
    lingered: float = 0.0
    # Set when it ended the stage at a checkpoint to relaunch on more slots (an elastic run growing).
    grow_to: int = 0


@dataclass
class Supervisor:
    spark: SparkSession
    job: TrainJob
    workers: int  # the run's workers (virtual when fewer processes compute them)
    use_gpu: bool
    max_restarts: int = 3
    slot_wait_s: float = 300.0
    stall_timeout_s: float = 1800.0
    restarts: list[dict[str, Any]] = field(default_factory=list)
    worker: Callable[[TrainJob], Any] = train_worker  # what each process runs (tests wrap it to add a fault)
    finished_grace_s: float = FINISHED_GRACE_S
    min_workers: int | None = None  # the fewest processes the run goes on with (None: every worker its own)
    elastic_wait_s: float = ELASTIC_WAIT_S
    resizes: list[dict[str, Any]] = field(default_factory=list)
    processes: int = 0  # of the current attempt

    def run(self) -> dict[str, Any]:
        """Train to the end, relaunching as needed; rank 0's summary. Raises TrainingFailed when the
        run cannot go on (its ``cause`` says why), after removing what a failed start left."""
        with TokenRelay(self.spark) as tokens:
            return self._run(tokens)

    def _run(self, tokens: TokenRelay) -> dict[str, Any]:
        started_fresh = not self.job.resume and not self.job.output.exists()
        job, previous = self.job.replace(virtual_workers=self.workers), None
        # The first attempt of a run that does not shrink asks for every worker's slot, as preflight checked.
        elastic = (self.min_workers or self.workers) < self.workers
        self.processes = self._processes_to_launch() if elastic else self.workers
        while True:
            stall = Stall()
            try:
                return self._attempt(job.replace(tokens=tokens.current, token_relay=tokens.location), stall)
            except TrainingFailed as failure:
                if stall.grow_to:  # a planned relaunch, at a checkpoint, on the slots that came back
                    run = job.run_folder()
                    if (summary := finished_summary(run)) is not None:
                        return summary  # it finished while the stage was being ended: nothing to grow into
                    resume_from, saved_at = self._resumable(run)
                    # Counted again: a barrier stage asking for slots that went away meanwhile would wait for them.
                    grown = min(stall.grow_to, registered_task_slots(self.spark) or 0)
                    if grown > self.processes:
                        self._record_resize(run, grown, f"{grown} task slots again: grown at the checkpoint of iteration "
                                                        f"{resume_from}", resume_from,
                                            round(time.time() - saved_at, 1) if saved_at else None)
                    job = job.replace(resume=True, weights=None)
                    continue
                if stall.lingered:
                    failure.cause = f"a worker had not ended {stall.lingered:.0f} s after summary.json was written; the stage was cancelled"
                elif stall.seconds:
                    failure.cause = (f"no progress for {stall.seconds:.0f} s after iteration {stall.iteration} "
                                     f"(a stalled worker); the stage was cancelled")
                run = job.run_folder()
                summary = finished_summary(run) if failure.stop is None else None  # a stop says why itself
                if summary is not None:  # lost in its last moments: the run is whole, a relaunch would be refused
                    _log(run, f"{failure.cause}, after the run had finished: nothing to relaunch")
                    return summary
                resume_from, saved_at = self._resumable(run)
                signature = (failure.cause, resume_from)
                if failure.stop is not None or len(self.restarts) >= self.max_restarts or signature == previous:
                    self._give_up(run, started_fresh, failure, signature == previous)
                    raise
                previous = signature
                waited = time.monotonic()
                processes = self._processes_to_launch()
                self._record_restart(run, failure.cause, resume_from, saved_at)
                if processes != self.processes:
                    self._record_resize(run, processes, f"the cluster gave {processes} of {self.workers} task slots within "
                                                        f"{self.elastic_wait_s:.0f} s", resume_from,
                                        round(time.monotonic() - waited, 1))
                job = job.replace(resume=resume_from is not None, weights=None if resume_from is not None else job.weights)

    def _attempt(self, job: TrainJob, stall: Stall) -> dict[str, Any]:
        group = f"torchonspark-train-{uuid.uuid4().hex[:8]}"
        context = self.spark.sparkContext
        on = f"{self.workers} workers" + (f" ({self.processes} processes)" if self.processes < self.workers else "")
        context.setJobGroup(group, f"train {job.netdef.name} on {on} -> {job.output.url}"
                                   f" (attempt {len(self.restarts) + len(self.resizes) + 1})", interruptOnCancel=True)
        done = threading.Event()
        watchdog = threading.Thread(target=self._watch, args=(job.run_folder(), group, done, stall), daemon=True,
                                    name="torchonspark-stall-watchdog")
        watchdog.start()
        try:
            return launch(job, self.processes, self.use_gpu, self.worker)
        finally:
            done.set()
            watchdog.join(timeout=5)
            context.setJobGroup(None, None)  # type: ignore[arg-type]

    def _watch(self, run: RunFolder, group: str, done: threading.Event, stall: Stall) -> None:
        """Cancel the stage when metrics.jsonl shows no new iteration for stall_timeout_s (the first
        line may take STARTUP_GRACE_S longer: the workers start and warm up), or when it still runs
        finished_grace_s after the run became whole: the driver's wait is bounded in every state."""
        started = time.monotonic()
        last, since = _latest_iteration(run), started + STARTUP_GRACE_S  # what an earlier attempt wrote, if any
        before, whole_since = last, None
        grow_from: tuple[int, int | None] | None = None  # (slots, the newest checkpoint) when more slots were seen
        while not done.wait(POLL_S):
            if self.processes < self.workers:
                slots = min(registered_task_slots(self.spark) or 0, self.workers)
                if slots <= self.processes:
                    grow_from = None
                elif grow_from is None:
                    grow_from = (slots, _newest_checkpoint(run))
                elif (newest := _newest_checkpoint(run)) is not None and newest != grow_from[1] and newest < _max_iter(run):
                    stall.grow_to = slots  # a checkpoint since: relaunch on them from it
                    self.spark.sparkContext.cancelJobGroup(group)
                    return
            iteration = _latest_iteration(run)
            if iteration != last:
                last, since = iteration, time.monotonic()
            # Whole for the length this start trains to, which job.json holds once this attempt has gone
            # past what earlier ones wrote (the recipe may give epochs, resolved by the workers; a resume
            # may train further than a finished run's summary.json).
            progressed = last is not None and (before is None or last > before)
            if whole_since is None and progressed and whole_summary(run):
                whole_since = time.monotonic()
            if whole_since is not None and time.monotonic() - whole_since > self.finished_grace_s:
                stall.lingered = time.monotonic() - whole_since
                self.spark.sparkContext.cancelJobGroup(group)
                return
            if whole_since is None and time.monotonic() - since > self.stall_timeout_s:
                stall.seconds, stall.iteration = time.monotonic() - max(since, started), last
                self.spark.sparkContext.cancelJobGroup(group)
                return

    def _resumable(self, run: RunFolder) -> tuple[int | None, float | None]:
        """The iteration a relaunch resumes from (the newest checkpoint that loads, as the workers will
        choose it) and when that checkpoint was saved; (None, None) without one."""
        found = newest_loadable(run.checkpoint_paths())
        if found is None:
            return None, None
        _, state, _ = found
        return state["iteration"], state.get("saved_at")

    def _processes_to_launch(self) -> int:
        """How many processes the next attempt runs: one per worker once the cluster has a task slot for
        each (a lost executor is replaced by YARN or the standalone master), waiting at most
        slot_wait_s; an elastic run waits elastic_wait_s, then goes on with the slots there are if they
        are at least min_workers."""
        least = self.min_workers or self.workers
        started = time.monotonic()
        said = None
        while True:
            slots = registered_task_slots(self.spark)
            if slots is None or slots >= self.workers:  # None: a local master, always whole
                return self.workers
            waited = time.monotonic() - started
            if slots >= least and waited >= self.elastic_wait_s:
                return slots
            if waited > max(self.slot_wait_s, self.elastic_wait_s if least < self.workers else 0):
                raise TrainingFailed("", None, f"the cluster did not give back {least} task slots within "
                                               f"{waited:.0f} s (it has {slots})")
            if slots != said:  # a line when the count changes, not one per poll
                said = slots
                print(f"train: waiting for task slots ({said} of {self.workers})", flush=True)
            time.sleep(POLL_S)  # a replaced executor registers within seconds: relaunch as soon as it has

    def _record_restart(self, run: RunFolder, cause: str, resume_from: int | None, saved_at: float | None) -> None:
        reached = max((r["iteration"] for r in run.read_metrics() if "loss" in r), default=0)
        now = time.time()
        # Lost: the training done since the checkpoint, and the wait for slots (the relaunch's own start
        # shows in the time of its first metrics line).
        run.root.fs.create_dir(run.root.path)  # an attempt may have failed before rank 0 made it
        record = {"event": "restart", "iteration": resume_from or 0, "attempt": len(self.restarts) + 2, "cause": cause,
                  "reached_iteration": reached, "iterations_redone": max(0, reached - (resume_from or 0)),
                  "seconds_lost": round(now - saved_at, 1) if saved_at else None, "time": now}
        self.restarts.append(record)
        run.append_metrics(record)
        start = f"iteration {resume_from} (its newest checkpoint)" if resume_from is not None else "the start (no checkpoint yet)"
        line = f"{cause}; relaunching from {start}, restart {len(self.restarts)} of {self.max_restarts}"
        print(f"train: {line}", flush=True)
        _log(run, line)

    def _record_resize(self, run: RunFolder, processes: int, why: str, resume_from: int | None,
                       seconds_lost: float | None) -> None:
        record = {"event": "resize", "iteration": resume_from or 0, "from": self.processes, "to": processes, "why": why,
                  "seconds_lost": seconds_lost, "time": time.time()}
        self.resizes.append(record)
        run.append_metrics(record)
        line = f"{why}; the {self.workers} workers go on in {processes} processes (were {self.processes})"
        print(f"train: {line}", flush=True)
        _log(run, line)
        self.processes = processes

    def _give_up(self, run: RunFolder, started_fresh: bool, failure: TrainingFailed, repeated: bool) -> None:
        if repeated:
            failure.cause += " (the same failure at the same iteration twice: not retried again)"
        elif failure.stop is None and self.restarts:
            failure.cause += f" (after {len(self.restarts)} restarts)"
        if failure.tail and failure.stop is None:
            _log(run, f"the end of the failed worker's output:\n{failure.tail}")
        _log(run, f"stopped: {failure.cause}")
        run.discard()  # an unfinished replacement of an existing run (--overwrite)
        if started_fresh and not run.checkpoint_paths() and run.root.exists():
            run.root.fs.delete_dir(run.root.path)  # a failed start leaves no run folder behind to block a re-run


def finished_summary(run: RunFolder) -> dict[str, Any] | None:
    """The summary of a run its workers finished although the stage then failed or was cancelled: a
    worker stopped, lost or hung in the run's last moments. None for a run that is not whole. A
    replacement (--overwrite) is published here."""
    summary = whole_summary(run)
    if summary is not None:
        run.publish()
    return summary


def whole_summary(run: RunFolder) -> dict[str, Any] | None:
    """The run's summary if the run is whole: summary.json written for the length this start trains
    to, and the model exported; else None."""
    try:
        summary, started = run.read_summary(), run.read_job()
        if summary is None or started is None or summary.get("iterations", 0) < started.get("max_iter", float("inf")):
            return None
        return summary if is_exported(run.model) else None
    except (OSError, ValueError):  # the storage that failed, or a file cut short
        return None


def _log(run: RunFolder, text: str) -> None:
    """A line in the run's train.log, if the run has a folder; the console has it either way."""
    try:
        if run.root.is_dir():
            run.append_log(text)
    except OSError:  # the run folder's storage may be what failed
        pass


def _max_iter(run: RunFolder) -> float:
    """The length this start trains to (job.json); infinite when it cannot be read."""
    try:
        started = run.read_job()
    except (OSError, ValueError):
        return float("inf")
    return (started or {}).get("max_iter", float("inf"))


def _newest_checkpoint(run: RunFolder) -> int | None:
    """The iteration of the run's newest checkpoint (None if none, or if the listing failed)."""
    try:
        newest = run.latest_checkpoint()
    except (OSError, ValueError):
        return None
    return int(CHECKPOINT.search(newest.name).group(1)) if newest is not None else None


def _latest_iteration(run: RunFolder) -> int | None:
    """The newest iteration metrics.jsonl reports (None if none, or if the read raced a rewrite)."""
    try:
        records = run.read_metrics()
    except (OSError, ValueError):
        return None
    return max((r["iteration"] for r in records if "loss" in r or "val_top1" in r), default=None)
