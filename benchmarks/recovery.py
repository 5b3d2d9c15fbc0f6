"""How long a 2-worker run takes to heal, per fault kind, and what the healing costs when nothing fails.

    .venv/bin/python benchmarks/recovery.py [--iterations 200] [--snapshot 50]
    .venv/bin/python benchmarks/recovery.py --hdfs      (HDFS faults on the mini cluster: `make minicluster-jar`)
    .venv/bin/python benchmarks/recovery.py --yarn      (a lost container on the mini cluster's YARN)

Faults, each in its own run of the digits recipe on local[2] (`torchonspark train`, a real driver):
a SIGKILL of rank 1's worker, and a SIGSTOP of rank 0's (a stall, found by the watchdog); and on
local-cluster[2,1,1024] (a standalone master, executors in JVMs of their own) a SIGKILL of the
executor that runs rank 1 (a lost executor, replaced by the master). For each:
seconds from the fault to the first new iteration after the relaunch, and iterations redone. The
baseline is the same run without a fault (its whole duration), measured in the same run.

Then the price of never losing more than a checkpoint interval: a checkpoint of ResNet-50 (the model
and SGD's momentum, about 200 MB) written whole, with and without reading it back to verify it.

With --hdfs, the seconds an HDFS fault costs a run whose folder is on the mini cluster (its NameNode
and DataNodes in one JVM, replication 2): the same ResNet-50 checkpoint saved to HDFS with no fault
(the baseline), with the NameNode restarted in the middle of the write, and with a DataNode stopped
in the middle of it (each write retried whole by fs.retrying); and how long metrics.jsonl's appends,
one every 0.1 s, are held up by a NameNode restart between checkpoints.

With --yarn, a lost YARN container: the digits recipe for 10 epochs on 2 executors of the mini
cluster (spark-submit, client mode), the executor JVM of rank 1 killed after the checkpoint at 100;
seconds from the kill to the run's first new iteration, with Spark's default barrier slot check (a
barrier stage without enough free slots is checked again every 15 s) as the baseline, against a 1 s
check (which the jobs do not set: see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch
from digits_data import digits_parquet

from torchonspark.datasets import fs
from torchonspark.netdefs import load_model
from torchonspark.sparkjobs.engine.runfolder import RunFolder

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from faults import kill_executor_of_rank, signal_rank  # noqa: E402

CONF = Path(__file__).resolve().parents[1] / "conf" / "digits.yaml"
STALL_TIMEOUT_S = 15


def loss_records(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    return [r for r in (json.loads(line) for line in path.read_text().splitlines()) if "loss" in r] if path.exists() else []


def train(data: Path, run: Path, iterations: int, snapshot: int, fault: tuple[int, Callable] | None,
          master: str = "local[2]") -> dict:
    """Run the train job; with ``fault`` = (after iteration, fault of tests/faults.py), send it once.
    Returns the wall seconds, and for a fault its time and the restart record."""
    command = [str(Path(sys.executable).with_name("torchonspark")), "train", "--recipe", str(CONF), "--data", str(data),
               "--output", str(run), "--workers", "2", "--master", master, "--max-iter", str(iterations),
               "--snapshot", str(snapshot), "--display", "5", "--test-interval", "0", "--stall-timeout", str(STALL_TIMEOUT_S)]
    faulted: dict = {}

    def inject() -> None:
        after, send = fault
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            records = loss_records(run)
            if records and records[-1]["iteration"] >= after and send() is not None:
                faulted["time"] = time.time()
                return
            time.sleep(0.02)

    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYSPARK_PYTHON": sys.executable})
    injector = threading.Thread(target=inject, daemon=True) if fault else None
    if injector:
        injector.start()
    _, err = process.communicate(timeout=1200)
    seconds = time.monotonic() - started
    if process.returncode != 0:
        raise SystemExit(f"train failed:\n{err[-3000:]}")
    result = {"seconds": seconds}
    if fault:
        restart = next(json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"restart"' in line)
        first_new = min(r["time"] for r in loss_records(run) if r["time"] > restart["time"])
        result.update(recovery=first_new - faulted["time"], redone=restart["iterations_redone"], cause=restart["cause"])
    return result


def checkpoint_seconds(verify: bool, repeats: int = 3) -> float:
    state = resnet50_state()
    best = float("inf")
    with tempfile.TemporaryDirectory() as work:
        run = RunFolder(fs.resolve(work))
        run.create()
        for repeat in range(repeats):
            started = time.perf_counter()
            if verify:
                run.save_checkpoint(state, repeat + 1, keep=1)
            else:  # what save_checkpoint did before: the same bytes, written whole, not read back
                run.checkpoints.join(f"iter-{repeat + 1:08d}.pt").write_bytes_atomically(io_bytes(state))
            best = min(best, time.perf_counter() - started)
    return best


def resnet50_state() -> dict:
    net = load_model("resnet_50").build()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net(torch.zeros(2, 3, 224, 224)).sum().backward()
    optimizer.step()  # momentum buffers exist, as in a real checkpoint
    return {"model": net.state_dict(), "optimizer": optimizer.state_dict(), "iteration": 1}


def hdfs_faults(work: Path) -> None:
    """Seconds lost per HDFS fault, against the same write without one, on one mini cluster."""
    from hadoop import MiniCluster

    state = resnet50_state()

    def save(run: RunFolder, iteration: int, fault: Callable[[], str] | None = None, after_s: float = 0.5) -> float:
        injector = threading.Timer(after_s, fault) if fault else None
        started = time.perf_counter()
        if injector:
            injector.start()
        run.save_checkpoint(state, iteration, keep=1)
        seconds = time.perf_counter() - started
        if injector:
            injector.join()
        return seconds

    with MiniCluster(work / "hadoop") as cluster:
        run = RunFolder(fs.resolve(f"{cluster.hdfs_url}/bench/run"))
        run.create()
        plain = min(save(run, 1), save(run, 2))
        namenode = save(run, 3, lambda: cluster.command("restart-namenode"))
        datanode = save(run, 4, lambda: cluster.command("stop-datanode 1"))
        cluster.command("start-datanode")
        appends, stop = [], threading.Event()

        def append() -> None:
            while not stop.is_set():
                run.append_metrics({"iteration": len(appends)})
                appends.append(time.perf_counter())
                time.sleep(0.1)

        appender = threading.Thread(target=append)
        appender.start()
        time.sleep(1)
        cluster.command("restart-namenode")
        time.sleep(3)
        stop.set()
        appender.join()
        held = max(b - a for a, b in zip(appends, appends[1:])) - 0.1
        whole = [r["iteration"] for r in run.read_metrics()] == list(range(len(appends)))
    print(f"ResNet-50 checkpoint ({len(io_bytes(state)) / 1e6:.0f} MB) to HDFS, replication 2, best of 2:")
    print(f"no fault                                   {plain:6.2f} s")
    print(f"NameNode restarted 0.5 s into the write    {namenode:6.2f} s   lost {namenode - plain:5.1f} s")
    print(f"DataNode stopped 0.5 s into the write      {datanode:6.2f} s   lost {datanode - plain:5.1f} s")
    print(f"ratio, NameNode restart / no fault         {namenode / plain:6.2f}")
    print(f"ratio, DataNode lost / no fault            {datanode / plain:6.2f}")
    print(f"metrics appends (every 0.1 s) held up by a NameNode restart between checkpoints: {held:.1f} s; "
          f"{len(appends)} lines, each once: {whole}")


def yarn_lost_container(work: Path, data: Path) -> None:
    """Seconds from a killed executor container to the first new iteration, Spark's barrier check
    interval against the jobs' own, on one mini cluster."""
    from hadoop import MiniCluster, put_tree, spark_submit_yarn

    with MiniCluster(work / "hadoop") as cluster:
        put_tree(data, f"{cluster.hdfs_url}/data/digits")
        results = {}
        for name, interval in (("Spark's default (15 s)", "15s"), ("1 s", "1s")):
            run = RunFolder(fs.resolve(f"{cluster.hdfs_url}/runs/{interval}"))
            faulted: dict = {}

            def inject(run: RunFolder = run, faulted: dict = faulted) -> None:
                deadline = time.monotonic() + 600
                kill = kill_executor_of_rank(1)
                while time.monotonic() < deadline:
                    try:
                        shown = [r["iteration"] for r in run.read_metrics() if "loss" in r]
                    except (OSError, ValueError):
                        shown = []
                    if shown and shown[-1] >= 120 and kill() is not None:
                        faulted["time"] = time.time()
                        return
                    time.sleep(0.2)

            injector = threading.Thread(target=inject, daemon=True)
            injector.start()
            started = time.monotonic()
            result = spark_submit_yarn(cluster, Path(__file__).resolve().parents[1] / "sparkjobs" / "train_resnet.py",
                                       "--recipe", "digits", "--data", f"{cluster.hdfs_url}/data/digits", "--output", run.root.url,
                                       "--workers", "2", "--epochs", "10", "--snapshot", "100",
                                       conf={"spark.scheduler.barrier.maxConcurrentTasksCheck.interval": interval})
            seconds = time.monotonic() - started
            if result.returncode != 0 or "time" not in faulted:
                raise SystemExit(f"the run with a {interval} check failed:\n{(result.stdout + result.stderr)[-3000:]}")
            records = run.read_metrics()
            restart = next(r for r in records if r.get("event") == "restart")
            first_new = min(r["time"] for r in records if "loss" in r and r["time"] > restart["time"])
            results[name] = (seconds, first_new - faulted["time"])
    print("digits recipe, 10 epochs on 2 YARN executors (mini cluster), rank 1's executor killed after iteration 120")
    for name, (seconds, recovery) in results.items():
        print(f"barrier check {name:24s} app {seconds:6.1f} s   kill -> first new iteration {recovery:5.1f} s")
    (default, _), (ours, _) = results.values()
    print(f"ratio, app with the 1 s check / with the 15 s check   {ours / default:5.2f}")


def io_bytes(state: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--snapshot", type=int, default=50)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "torchonspark-bench")
    parser.add_argument("--hdfs", action="store_true", help="only the HDFS faults, on the mini cluster")
    parser.add_argument("--yarn", action="store_true", help="only a lost container on the mini cluster's YARN")
    args = parser.parse_args()
    if args.hdfs or args.yarn:
        args.work.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=args.work) as work:
            if args.hdfs:
                hdfs_faults(Path(work))
            else:
                yarn_lost_container(Path(work), digits_parquet(args.work))
        return
    data = digits_parquet(args.work)
    after = args.snapshot + args.snapshot // 2  # half an interval past a checkpoint: the expected loss
    runs = {}
    with tempfile.TemporaryDirectory(dir=args.work) as work:
        runs["no fault"] = train(data, Path(work) / "plain", args.iterations, args.snapshot, None)
        runs["SIGKILL of rank 1"] = train(data, Path(work) / "kill", args.iterations, args.snapshot,
                                          (after, signal_rank(signal.SIGKILL, 1)))
        runs["SIGSTOP of rank 0 (stall)"] = train(data, Path(work) / "stop", args.iterations, args.snapshot,
                                                  (after, signal_rank(signal.SIGSTOP, 0)))
        runs["lost executor (local-cluster)"] = train(data, Path(work) / "executor", args.iterations, args.snapshot,
                                                      (after, kill_executor_of_rank(1)), master="local-cluster[2,1,1024]")
    print(f"digits recipe, {args.iterations} iterations on 2 workers (local[2]), checkpoint every {args.snapshot}, "
          f"fault at iteration {after}, --stall-timeout {STALL_TIMEOUT_S}")
    for name, result in runs.items():
        line = f"{name:30s} run {result['seconds']:6.1f} s"
        if "recovery" in result:
            line += (f"   fault -> first new iteration {result['recovery']:5.1f} s, {result['redone']} iterations redone"
                     f"   ({result['cause'][:60]})")
        print(line)
    for name in ("SIGKILL of rank 1", "SIGSTOP of rank 0 (stall)"):  # the local-cluster run starts differently
        print(f"ratio, run with {name} / without fault      {runs[name]['seconds'] / runs['no fault']['seconds']:5.2f}")
    plain, verified = checkpoint_seconds(verify=False), checkpoint_seconds(verify=True)
    print(f"ResNet-50 checkpoint, written whole             {plain:6.2f} s")
    print(f"ResNet-50 checkpoint, written and verified      {verified:6.2f} s")
    print(f"ratio verified / written                        {verified / plain:6.2f}")


if __name__ == "__main__":
    main()
