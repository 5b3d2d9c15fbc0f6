"""Checks a barrier job needs before it starts, so it fails in seconds with a sentence that says what
to change, instead of waiting for slots that will never come (Spark retries an unschedulable
barrier stage for about ten minutes before it gives up) or being refused deep inside Spark.

The checks read Spark's configuration as a plain mapping (``dict(sc.getConf().getAll())``) and are
pure functions of it, so they are tested without starting a cluster.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from pyspark.sql import SparkSession

from torchonspark.sparkjobs.cluster.yarn import YarnCapacity, executor_container


# What YARN gives a job that does not ask (with dynamic allocation off).
YARN_DEFAULTS = {"spark.executor.instances": "2", "spark.executor.cores": "1"}


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        status = "ok  " if self.ok else "FAIL"
        return f"{status} {self.name}: {self.detail}" + (f" -- fix: {self.fix}" if not self.ok and self.fix else "")


class PreflightError(RuntimeError):
    """A configuration the job cannot run with; the message says what to change."""


def _flag(conf: Mapping[str, str], key: str, default: str = "false") -> bool:
    return conf.get(key, default).strip().lower() == "true"


def _local_slots(master: str, task_cpus: int) -> tuple[int, str] | None:
    """Task slots of a local master: local, local[N], local[*], local[N,F], local-cluster[W,C,M]."""
    if master == "local":
        return 1 // task_cpus, "local: 1 core"
    match = re.fullmatch(r"local\[(\*|\d+)(?:,\s*\d+)?\]", master)
    if match:
        cores = len(os.sched_getaffinity(0)) if match.group(1) == "*" else int(match.group(1))
        return cores // task_cpus, f"{master}: {cores} cores / spark.task.cpus {task_cpus}"
    match = re.fullmatch(r"local-cluster\[\s*(\d+)\s*,\s*(\d+)\s*,\s*\d+\s*\]", master)
    if match:
        workers, cores = int(match.group(1)), int(match.group(2))
        return workers * (cores // task_cpus), f"{master}: {workers} workers x ({cores} cores / spark.task.cpus {task_cpus})"
    return None


def task_slots(conf: Mapping[str, str], use_gpu: bool, registered_cores: int | None = None) -> tuple[int | None, str]:
    """How many tasks can run at once, and how that was worked out. None when unknown (a cluster
    master without spark.executor.instances, before executors register)."""
    master = conf.get("spark.master", "local[*]")
    task_cpus = int(conf.get("spark.task.cpus", "1"))
    local = _local_slots(master, task_cpus)
    if local is not None:
        slots, how = local
        if use_gpu and master.startswith("local["):
            gpus = int(float(conf.get("spark.driver.resource.gpu.amount", "0")))
            slots, how = min(slots, gpus), how + f", spark.driver.resource.gpu.amount {gpus}"
        return slots, how
    instances = conf.get("spark.executor.instances", YARN_DEFAULTS["spark.executor.instances"] if master == "yarn" else None)
    executor_cores = conf.get("spark.executor.cores", YARN_DEFAULTS["spark.executor.cores"] if master == "yarn" else None)
    if instances is not None and executor_cores is not None:
        per_executor = int(executor_cores) // task_cpus
        how = f"spark.executor.instances {instances} x (spark.executor.cores {executor_cores} / spark.task.cpus {task_cpus})"
        if use_gpu:
            task_gpus = float(conf.get("spark.task.resource.gpu.amount", "0") or 0)
            executor_gpus = float(conf.get("spark.executor.resource.gpu.amount", "0") or 0)
            by_gpu = math.floor(executor_gpus / task_gpus) if task_gpus > 0 else 0
            per_executor = min(per_executor, by_gpu)
            how += f", GPUs {executor_gpus:g} per executor / {task_gpus:g} per task"
        return int(instances) * per_executor, how
    if registered_cores:
        return registered_cores // task_cpus, f"{registered_cores} cores of the executors registered now / spark.task.cpus {task_cpus}"
    return None, f"{master} with spark.executor.instances or spark.executor.cores unset"


def check_slots(conf: Mapping[str, str], workers: int, use_gpu: bool, registered_cores: int | None = None) -> Check:
    slots, how = task_slots(conf, use_gpu, registered_cores)
    if slots is None:
        # Not a refusal: the executors may still be coming. Said plainly, since a barrier stage that
        # does not fit waits (Spark retries it for about ten minutes) before it fails.
        return Check("task slots", True, f"cannot count them yet ({how}); if fewer than {workers} turn up, the barrier "
                     "stage waits; set spark.executor.instances and spark.executor.cores to have this checked")
    if slots < workers:
        more = "give the job more executors or cores (spark.executor.instances, spark.executor.cores)"
        return Check("task slots", False, f"{workers} barrier workers need {workers} task slots at once, the cluster has {slots} ({how})",
                     f"use --workers {slots}, or {more}" if slots > 0 else more)
    return Check("task slots", True, f"{slots} slots for {workers} barrier workers ({how})")


def check_dynamic_allocation(conf: Mapping[str, str]) -> Check:
    if _flag(conf, "spark.dynamicAllocation.enabled"):
        return Check("dynamic allocation", False, "spark.dynamicAllocation.enabled is true; barrier stages need a fixed set of executors",
                     "pass --conf spark.dynamicAllocation.enabled=false (conf/spark-yarn-*.conf do)")
    return Check("dynamic allocation", True, "off")


def check_yarn_room(conf: Mapping[str, str], workers: int, use_gpu: bool, capacity: YarnCapacity) -> Check:
    """Can YARN give the executors the barrier workers need, now? (With what the job already holds.)"""
    container = executor_container(conf)
    task_cpus = int(conf.get("spark.task.cpus", "1"))
    per_executor = container.vcores // task_cpus
    if use_gpu:
        task_gpus = float(conf.get("spark.task.resource.gpu.amount", "0") or 0)
        per_executor = min(per_executor, math.floor(container.gpus / task_gpus) if task_gpus > 0 else 0)
    if per_executor < 1:
        return Check("YARN room", False, f"an executor of {container.vcores} cores and {container.gpus} GPUs runs no task "
                     f"(spark.task.cpus {task_cpus})", "give executors at least spark.task.cpus cores (and a GPU per task)")
    needed = math.ceil(workers / per_executor)
    size = f"{container.memory_mb} MB, {container.vcores} vcores" + (f", {container.gpus} GPUs" if container.gpus else "")
    fit = capacity.containers_that_fit(container.memory_mb, container.vcores, container.gpus)
    # YARN may hand out a container more than Spark asked for, which Spark then gives back.
    held = min(capacity.job_executors, int(conf.get("spark.executor.instances", YARN_DEFAULTS["spark.executor.instances"])))
    possible = held + fit
    if possible < needed:
        usable = possible * per_executor
        advice = f"use --workers {usable}, or " if usable > 0 else ""
        return Check("YARN room", False, f"{workers} barrier workers need {needed} executors of {size}; YARN gave this job "
                     f"{held} and has room for {fit} more ({capacity.line()})",
                     f"{advice}ask for smaller executors (spark.executor.memory, spark.executor.cores), or wait for room on the cluster")
    return Check("YARN room", True, f"{needed} executors of {size} for {workers} barrier workers: this job has "
                 f"{held}, room for {fit} more ({capacity.line()})")


def spark_conf(spark: SparkSession) -> dict[str, str]:
    return dict(spark.sparkContext.getConf().getAll())


def registered_executor_cores(spark: SparkSession) -> int | None:
    """Cores of the executors registered so far, when the master is a cluster (None before any has)."""
    status = spark.sparkContext._jsc.sc().getExecutorMemoryStatus()  # noqa: SLF001 (no public API counts executors)
    if status.size() <= 1:  # only the driver's block manager
        return None
    return spark.sparkContext.defaultParallelism  # on a cluster master: the registered executors' cores


def registered_task_slots(spark: SparkSession) -> int | None:
    """Barrier tasks the registered executors can run at once (their cores over spark.task.cpus, and
    their GPUs when tasks take GPUs), as the barrier scheduler counts them; None on a local master or
    before any executor has registered. (defaultParallelism is at least 2, so it cannot say 1.)"""
    context = spark.sparkContext._jsc.sc()  # noqa: SLF001 (no public API counts slots)
    if context.getExecutorMemoryStatus().size() <= 1:
        return None
    return int(context.maxNumConcurrentTasks(context.resourceProfileManager().defaultResourceProfile()))


def preflight(conf: Mapping[str, str], workers: int, use_gpu: bool, registered_cores: int | None = None,
              yarn: YarnCapacity | None = None) -> None:
    """Raise PreflightError with the first failing check's sentence (``conf``: ``spark_conf(spark)``;
    ``yarn``: the cluster's capacity when the master is YARN)."""
    checks = [check_dynamic_allocation(conf), check_slots(conf, workers, use_gpu, registered_cores)]
    if yarn is not None:
        checks.append(check_yarn_room(conf, workers, use_gpu, yarn))
    for check in checks:
        if not check.ok:
            raise PreflightError(f"{check.detail}; {check.fix}")
