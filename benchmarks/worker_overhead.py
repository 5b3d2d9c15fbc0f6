"""Worker-loop overhead on CPU: the full worker step (sharded loader decoding JPEGs + DDP + SGD, as
the train job runs it) against a bare torch loop over the same model on preloaded tensors, same run;
and the worker with its TensorBoard logging on against the same worker with it off (--no-tensorboard),
alternately, in the same run.

    .venv/bin/python benchmarks/worker_overhead.py [--iterations 300] [--repeats 4]

Goals: worker / bare >= 0.95 (issue 4); TensorBoard on / off >= 0.98 (issue 13: logging costs <= 2%).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from digits_data import digits_parquet

from torchonspark.datasets import fs
from torchonspark.datasets.loader import ShardedLoader
from torchonspark.datasets.transforms import TrainTransform
from torchonspark.sparkjobs.engine.job import TrainJob, read_dataset_labels
from torchonspark.sparkjobs.engine.recipe import load_recipe
from torchonspark.sparkjobs.engine.tensorboard import TrainingBoard
from torchonspark.sparkjobs.engine.worker import train_worker

CONF = Path(__file__).resolve().parents[1] / "conf" / "digits.yaml"


def bare_loop(netdef, recipe, batches, iterations: int) -> float:
    """images/s of forward + backward + SGD on tensors already in memory."""
    torch.manual_seed(0)
    net = netdef.build()
    optimizer = torch.optim.SGD(net.parameters(), lr=recipe.base_lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    for step in range(iterations + 20):
        if step == 20:
            started = time.perf_counter()
        images, labels = batches[step % len(batches)]
        loss = F.cross_entropy(net(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return iterations * recipe.batch_size / (time.perf_counter() - started)


class BoardTimes:
    """Seconds the training thread spends in TrainingBoard's methods, by method: the loop's share
    (display) apart from the start's and the end's."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        for name in ("__init__", "record_start", "display", "validation", "sync", "close"):
            setattr(TrainingBoard, name, self._timed(name, getattr(TrainingBoard, name)))

    def _timed(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started
                self.calls[name] = self.calls.get(name, 0) + 1

        return timed


def board_seconds_per_display(folder: Path, displays: int = 3000) -> float:
    """What TrainingBoard costs per display line (three scalars), its writer thread's work included:
    close() waits until every event is written."""
    board = TrainingBoard(fs.resolve(str(folder)), resumed_from=0)
    started = time.perf_counter()
    for iteration in range(1, displays + 1):
        board.display(iteration, 1.0, 0.1, 1000.0)
    board.close()
    return (time.perf_counter() - started) / displays


def worker_rate(job: TrainJob) -> tuple[float, float]:
    """(images/s of train_worker from its own metrics lines after the first interval, its seconds of training:
    wall time less validation and checkpoints)."""
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):  # a new group of one, on a new port
        os.environ.pop(key, None)
    train_worker(job)
    run = Path(job.output.path)
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    intervals = [line["images_per_sec"] for line in lines if "images_per_sec" in line][1:]  # the first one warms up
    summary = json.loads((run / "summary.json").read_text())
    return sum(intervals) / len(intervals), summary["iterations"] * job.recipe.batch_size / summary["train_images_per_sec"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=4, help="runs of the worker with TensorBoard off and on, alternately")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "torchonspark-bench")
    args = parser.parse_args()
    data = digits_parquet(args.work)
    torch.set_num_threads(args.threads)
    recipe = load_recipe(CONF).replace(max_iter=args.iterations + 20, display=20, test_interval=0, snapshot=0).for_classes(10)
    netdef = recipe.model

    loader = ShardedLoader(fs.resolve(str(data / "train")), 0, 1, recipe.batch_size,
                           TrainTransform(recipe.crop_size, recipe.scale_range, recipe.mirror), train=True)
    batches = list(loader)
    bare = bare_loop(netdef, recipe, batches, args.iterations)

    dataset = fs.resolve(str(data))
    shutil.rmtree(args.work / "board-alone", ignore_errors=True)
    per_display = board_seconds_per_display(args.work / "board-alone")
    times = BoardTimes()
    rates: dict[bool, list[float]] = {False: [], True: []}
    trained: dict[bool, list[float]] = {False: [], True: []}  # seconds of training
    for repeat in range(args.repeats):
        for tensorboard in (False, True) if repeat % 2 == 0 else (True, False):  # off on on off ...: a drift cancels
            run = args.work / f"worker-overhead-run-tensorboard-{'on' if tensorboard else 'off'}"
            job = TrainJob(recipe=recipe, data=dataset, labels=read_dataset_labels(dataset), output=fs.resolve(str(run)),
                           threads=args.threads, overwrite=True, tensorboard=tensorboard)
            rate, seconds = worker_rate(job)
            rates[tensorboard].append(rate)
            trained[tensorboard].append(seconds)
    off, on = (sum(rates[mode]) / len(rates[mode]) for mode in (False, True))
    loop = times.seconds.get("display", 0.0)
    edges = sum(spent for name, spent in times.seconds.items() if name != "display")
    print(f"digits recipe ({netdef.main_branch}, n={netdef.num_output_stage1}, {recipe.crop_size}px), batch {recipe.batch_size}, "
          f"{args.threads} threads, {args.iterations} iterations, {args.repeats} run(s) of the worker each way")
    print(f"bare torch loop on preloaded tensors      {bare:7.0f} images/s")
    print(f"train_worker, TensorBoard off             {off:7.0f} images/s  " + " ".join(f"{r:.0f}" for r in rates[False]))
    print(f"train_worker, TensorBoard on              {on:7.0f} images/s  " + " ".join(f"{r:.0f}" for r in rates[True]))
    print(f"ratio, worker (TensorBoard off) / bare    {off / bare:7.2f}   (goal >= 0.95)")
    print(f"ratio, TensorBoard on / off               {on / off:7.3f}   (goal >= 0.98)")
    print(f"TensorBoard in the loop: {times.calls.get('display', 0)} display calls, {1000 * loop:.1f} ms in all "
          f"({100 * loop / sum(trained[True]):.3f}% of the runs' {sum(trained[True]):.1f} s of training); "
          f"at the starts and ends: {1000 * edges:.0f} ms")
    interval = recipe.display * recipe.batch_size / on
    print(f"TensorBoard alone, per display line (3 scalars, its writer thread included): {1e6 * per_display:.0f} us, "
          f"{100 * per_display / interval:.3f}% of a display interval here ({recipe.display} iterations, "
          f"{1000 * interval:.0f} ms)")


if __name__ == "__main__":
    main()
