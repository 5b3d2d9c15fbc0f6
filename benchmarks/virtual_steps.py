"""The step of virtual workers (sparkjobs/engine/virtual.py) on CPU: one process computing V workers
of the digits recipe, against the same process computing one (DDP's plain step), in the same run; and
the all-reduces each step makes, counted.

    .venv/bin/python benchmarks/virtual_steps.py [--steps 60] [--workers 2 4]

Goals (issue 21): with P < V the step takes about V/P times as long (each worker's forward and
backward, one after another) and makes the same all-reduces as the plain step (one per DDP bucket:
the gradients are summed locally under no_sync, then reduced once).
"""

from __future__ import annotations

import argparse
import os
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist

from torchonspark.sparkjobs.engine import distributed
from torchonspark.sparkjobs.engine.distributed import DdpOptions, accumulated_step, train_step, wrap_ddp
from torchonspark.sparkjobs.engine.optimizer import sgd
from torchonspark.sparkjobs.engine.recipe import load_recipe

CONF = Path(__file__).resolve().parents[1] / "conf" / "digits.yaml"


class CountedAllReduce:
    """dist.all_reduce as the engine's step calls it, counted (DDP's own reducer is C++: with one
    process and no hook it reduces nothing in Python, so every measured step runs the workers' hook)."""

    def __init__(self) -> None:
        self.calls = 0
        self._all_reduce = dist.all_reduce
        distributed.dist.all_reduce = self  # type: ignore[assignment]

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self._all_reduce(*args, **kwargs)


def seconds_per_step(workers: int, steps: int, counter: CountedAllReduce) -> tuple[float, float]:
    """(seconds per step, all-reduces per step) of one process computing ``workers`` workers."""
    recipe = load_recipe(CONF).for_classes(10)
    torch.manual_seed(0)
    net = recipe.model.build()
    optimizer = sgd(net, recipe)
    # workers=2 with one process registers the workers' hook, so the 1-worker baseline does too: the
    # same all-reduce path, the plain step's arithmetic.
    model = wrap_ddp(net, torch.device("cpu"), DdpOptions(), workers=workers if workers > 1 else 2)
    batches = [(torch.randn(recipe.batch_size, 3, 32, 32), torch.randint(0, 10, (recipe.batch_size,))) for _ in range(workers)]
    warmup = 10
    for step in range(warmup + steps):
        if step == warmup:
            started, calls = time.perf_counter(), counter.calls
        if workers == 1:
            train_step(model, optimizer, *batches[0], torch.device("cpu"))
        else:
            accumulated_step(model, optimizer, batches, torch.device("cpu"), lambda: None, lambda _: nullcontext())
    return (time.perf_counter() - started) / steps, (counter.calls - calls) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4])
    args = parser.parse_args()
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29531")
    dist.init_process_group("gloo", rank=0, world_size=1)
    torch.set_num_threads(2)
    counter = CountedAllReduce()
    try:
        plain, plain_calls = seconds_per_step(1, args.steps, counter)
        print(f"digits recipe, batch 32, 1 process, 2 threads, {args.steps} steps each")
        print(f"1 worker  (the plain step)      {1000 * plain:7.1f} ms a step   {plain_calls:.1f} all-reduces a step")
        for workers in args.workers:
            seconds, calls = seconds_per_step(workers, args.steps, counter)
            print(f"{workers} workers (virtual)             {1000 * seconds:7.1f} ms a step   {calls:.1f} all-reduces a step   "
                  f"ratio {seconds / plain:.2f} (V/P = {workers})")
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
