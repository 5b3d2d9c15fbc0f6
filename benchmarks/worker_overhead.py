"""Worker-loop overhead on CPU: the full worker step (sharded loader decoding JPEGs + DDP + SGD, as
the train job runs it) against a bare torch loop over the same model on preloaded tensors, same run.

    .venv/bin/python benchmarks/worker_overhead.py [--iterations 300]

Goal (issue 4): ratio >= 0.95.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from digits_data import digits_parquet

from torchonspark.datasets import fs
from torchonspark.datasets.loader import ShardedLoader
from torchonspark.datasets.transforms import TrainTransform
from torchonspark.sparkjobs.engine.job import TrainJob, read_dataset_labels
from torchonspark.sparkjobs.engine.recipe import load_recipe
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=300)
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

    run = args.work / "worker-overhead-run"
    dataset = fs.resolve(str(data))
    job = TrainJob(recipe=recipe, data=dataset, labels=read_dataset_labels(dataset), output=fs.resolve(str(run)),
                   threads=args.threads, overwrite=True)
    train_worker(job)
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    intervals = [line["images_per_sec"] for line in lines if "images_per_sec" in line][1:]  # the first one warms up
    worker = sum(intervals) / len(intervals)
    print(f"digits recipe ({netdef.main_branch}, n={netdef.num_output_stage1}, {recipe.crop_size}px), batch {recipe.batch_size}, "
          f"{args.threads} threads, {args.iterations} iterations")
    print(f"bare torch loop on preloaded tensors      {bare:7.0f} images/s")
    print(f"train_worker (loader + DDP + SGD)         {worker:7.0f} images/s")
    print(f"ratio                                     {worker / bare:7.2f}   (goal >= 0.95)")


if __name__ == "__main__":
    main()
