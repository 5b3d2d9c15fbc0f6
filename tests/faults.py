"""Real faults for the tests and benchmarks/recovery.py: finding the processes a fault is sent to (the
torch.distributed workers TorchDistributor's torchrun started, the Spark executor a worker runs in),
and sending faults as a run passes given iterations."""

import threading
import time
from collections.abc import Callable

import psutil


def training_processes(rank: int) -> list:
    """This machine's torchrun worker processes of ``rank`` (their environment names the rank)."""
    found = []
    for process in psutil.process_iter():
        try:
            environment = process.environ()
        except (psutil.Error, OSError):
            continue
        if environment.get("TORCHELASTIC_RUN_ID") is not None and environment.get("RANK") == str(rank):
            found.append(process)
    return found


def run_processes() -> list[str]:
    """This machine's processes of training runs ('pid command'): torchrun launchers, the workers they
    started (TorchDistributor's train.py or the train_worker module) and the workers' lifelines."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        command = " ".join(process.info["cmdline"] or [])
        if any(part in command for part in ("torch.distributed.run", "lifeline.py", "train_worker")) or command.endswith("/train.py"):
            found.append(f"{process.pid} {command[:200]}")
    return found


def left_after(seconds: float) -> list[str]:
    """The run processes still there after at most ``seconds`` (none: returns as soon as they are gone)."""
    deadline = time.monotonic() + seconds
    while (left := run_processes()) and time.monotonic() < deadline:
        time.sleep(0.25)
    return left


def executor_of(process: psutil.Process) -> psutil.Process | None:
    """The Spark executor JVM a worker process runs under (standalone's or YARN's: both are a
    CoarseGrainedExecutorBackend), or None on a local master (no executor process of its own)."""
    for parent in process.parents():
        try:
            if any("CoarseGrainedExecutorBackend" in part for part in parent.cmdline()):
                return parent
        except psutil.Error:
            continue
    return None


def signal_rank(sent: int, rank: int) -> Callable[[], str | None]:
    """A fault: ``sent`` to rank ``rank``'s worker processes."""
    def send() -> str | None:
        victims = training_processes(rank)
        for victim in victims:
            victim.send_signal(sent)
        return f"signal {sent} to rank {rank}" if victims else None
    return send


def kill_executor_of_rank(rank: int) -> Callable[[], str | None]:
    """A fault: SIGKILL of the executor JVM that runs rank ``rank`` (a lost executor, as a node crash
    or a YARN preemption loses it)."""
    def kill() -> str | None:
        executors = {executor.pid: executor for executor in map(executor_of, training_processes(rank)) if executor}
        for executor in executors.values():
            executor.kill()
        return f"executor pid {', '.join(map(str, executors))} of rank {rank}" if executors else None
    return kill


def lose_node_of_rank(rank: int, worker_of: Callable[[psutil.Process], psutil.Process | None]) -> Callable[[], str | None]:
    """A fault: SIGKILL of the cluster node that runs rank ``rank``: its executor JVM and the JVM
    ``worker_of(executor)`` names (a standalone worker, tests/standalone.py), so that the cluster has
    one slot fewer until a node joins again."""
    def kill() -> str | None:
        executors = {executor.pid: executor for executor in map(executor_of, training_processes(rank)) if executor}
        nodes = [node for node in map(worker_of, executors.values()) if node is not None]
        for process in [*nodes, *executors.values()]:
            process.kill()
        return f"node pid {', '.join(str(node.pid) for node in nodes)} of rank {rank}" if nodes else None
    return kill


class FaultPlan(threading.Thread):
    """Runs each (after, fault) of ``plan`` in turn, once the run's newest iteration (``iteration()``,
    None before the first) has reached ``after`` and is still within ``window`` of it; a fault returns
    what it did, or None when it found nothing to act on yet. Bounded in time."""

    def __init__(self, iteration: Callable[[], int | None], plan, window: int = 15, deadline_s: float = 300,
                 poll_s: float = 0.05):
        super().__init__(daemon=True)
        self.iteration, self.plan, self.window, self.poll_s = iteration, list(plan), window, poll_s
        self.deadline = time.monotonic() + deadline_s
        self.done: list[tuple[int, str]] = []  # (iteration, what was done)

    def run(self):
        while self.plan and time.monotonic() < self.deadline:
            after, fault = self.plan[0]
            try:
                now = self.iteration()
            except (OSError, ValueError):  # a read that raced a rewrite, or storage that is restarting
                now = None
            if now is not None and after <= now < after + self.window:
                what = fault()
                if what is not None:
                    self.done.append((now, what))
                    self.plan.pop(0)
            time.sleep(self.poll_s)


class FaultsOnRequest(threading.Thread):
    """Runs the fault for N when a paused write asks for it (a file ``request-N`` in ``handshake``,
    paused_writes.py), then lets the write go on (``done-N``): the fault meets a write in flight every
    time. Bounded in time; ``done`` as FaultPlan's."""

    def __init__(self, handshake, faults: dict, deadline_s: float = 600, poll_s: float = 0.05):
        super().__init__(daemon=True)
        self.handshake, self.faults, self.poll_s = handshake, dict(faults), poll_s
        self.deadline = time.monotonic() + deadline_s
        self.done: list[tuple[int, str]] = []

    def run(self):
        while self.faults and time.monotonic() < self.deadline:
            for number in [n for n in self.faults if (self.handshake / f"request-{n}").exists()]:
                try:
                    self.done.append((number, self.faults.pop(number)()))
                finally:
                    (self.handshake / f"done-{number}").touch()
            time.sleep(self.poll_s)
