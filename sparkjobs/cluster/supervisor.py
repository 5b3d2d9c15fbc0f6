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
from torchonspark.sparkjobs.cluster.preflight import registered_executor_cores
from torchonspark.sparkjobs.engine.checkpoint import newest_loadable
from torchonspark.sparkjobs.engine.export import is_exported
from torchonspark.sparkjobs.engine.job import TrainJob
from torchonspark.sparkjobs.engine.runfolder import RunFolder
from torchonspark.sparkjobs.engine.worker import train_worker

POLL_S = 1.0
STARTUP_GRACE_S = 120.0  # before the first metrics line: Spark's tasks, torchrun, imports, the data listed
# After the run is whole (summary.json, the model): the workers publish, close and exit in about a
# second; a stage still running this long after is waiting on a worker that will not end.
FINISHED_GRACE_S = 10.0


@dataclass
class Stall:
    """Set by the watchdog when it cancelled a stage: for lack of progress (``seconds`` without a new
    iteration), or because its workers had not ended ``lingered`` seconds after the run was whole."""

    seconds: float = 0.0
    iteration: int | None = None
    lingered: float = 0.0


@dataclass
class Supervisor:
    spark: SparkSession
    job: TrainJob
    workers: int
    use_gpu: bool
    max_restarts: int = 3
    slot_wait_s: float = 300.0
    stall_timeout_s: float = 1800.0
    restarts: list[dict[str, Any]] = field(default_factory=list)
    worker: Callable[[TrainJob], Any] = train_worker  # what each process runs (tests wrap it to add a fault)
    finished_grace_s: float = FINISHED_GRACE_S

    def run(self) -> dict[str, Any]:
        """Train to the end, relaunching as needed; rank 0's summary. Raises TrainingFailed when the
        run cannot go on (its ``cause`` says why), after removing what a failed start left."""
        with TokenRelay(self.spark) as tokens:
            return self._run(tokens)

    def _run(self, tokens: TokenRelay) -> dict[str, Any]:
        started_fresh = not self.job.resume and not self.job.output.exists()
        job, previous = self.job, None
        while True:
            stall = Stall()
            try:
                return self._attempt(job.replace(tokens=tokens.current, token_relay=tokens.location), stall)
            except TrainingFailed as failure:
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
                self._wait_for_slots()
                self._record_restart(run, failure.cause, resume_from, saved_at)
                job = job.replace(resume=resume_from is not None, weights=None if resume_from is not None else job.weights)

    def _attempt(self, job: TrainJob, stall: Stall) -> dict[str, Any]:
        group = f"torchonspark-train-{uuid.uuid4().hex[:8]}"
        context = self.spark.sparkContext
        context.setJobGroup(group, f"train {job.netdef.name} on {self.workers} workers -> {job.output.url}"
                                   f" (attempt {len(self.restarts) + 1})", interruptOnCancel=True)
        done = threading.Event()
        watchdog = threading.Thread(target=self._watch, args=(job.run_folder(), group, done, stall), daemon=True,
                                    name="torchonspark-stall-watchdog")
        watchdog.start()
        try:
            return launch(job, self.workers, self.use_gpu, self.worker)
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
        while not done.wait(POLL_S):
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

    def _wait_for_slots(self) -> None:
        """Until the cluster has a task slot for every worker again (a lost executor is replaced by
        YARN or the standalone master), at most slot_wait_s."""
        task_cpus = int(self.spark.conf.get("spark.task.cpus", "1"))
        deadline = time.monotonic() + self.slot_wait_s
        said = None
        while True:
            cores = registered_executor_cores(self.spark)
            if cores is None or cores // task_cpus >= self.workers:  # None: a local master, always whole
                return
            if time.monotonic() > deadline:
                raise TrainingFailed("", None, f"the cluster did not give back {self.workers} task slots within "
                                               f"{self.slot_wait_s:.0f} s (it has {cores // task_cpus})")
            if cores // task_cpus != said:  # a line when the count changes, not one per poll
                said = cores // task_cpus
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


def _latest_iteration(run: RunFolder) -> int | None:
    """The newest iteration metrics.jsonl reports (None if none, or if the read raced a rewrite)."""
    try:
        records = run.read_metrics()
    except (OSError, ValueError):
        return None
    return max((r["iteration"] for r in records if "loss" in r or "val_top1" in r), default=None)
