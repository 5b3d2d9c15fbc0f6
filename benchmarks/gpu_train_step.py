"""ResNet-50's training step on one GPU, as the worker takes it, and the loader's CPU rate per core:
the two figures docs/scaling.md needs from a GPU machine (issue 12, part 5).

The step is the worker's own: the large-batch recipe's network (zero-init residuals), its SGD with
the decay groups, DDP as the recipe sets it (wrap_ddp), `train_step` with bf16 autocast and
channels_last, on synthetic batches at the recipe's per-GPU batch (256); first eager, then through
torch.compile (the recipe's `torch_compile`). The loader is ShardedLoader with the recipe's
TrainTransform over a converted data set, with 1 decode thread and with every core, no GPU involved.
No Spark, no JVM: this is what runs on a GPU machine that has only torch.

    python benchmarks/gpu_train_step.py --loader-data build/gpu-check/imagenet-parquet   # a GPU machine, < 8 min
    .venv/bin/python benchmarks/gpu_train_step.py --device cpu --batch 4 --steps 2 --warmup 1 \\
        --model resnet_18 --crop 64 --loader-data build/gpu-check/imagenet-parquet --loader-images 128   # a smoke run

On a GPU machine that has torch, pyarrow, numpy, OpenCV and PyYAML but not this project (nor Spark),
install the checkout without touching its packages first: `pip install --no-deps --no-build-isolation -e .`
`make gpu-check-data` (here, where Spark runs) converts the data the loader part reads.

Goal (issue 12): >= 3,000 images/s per H100 (moonshot 4,000).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from torchonspark.datasets import fs
from torchonspark.datasets.loader import ShardedLoader
from torchonspark.datasets.transforms import TrainTransform
from torchonspark.netdefs import load_model
from torchonspark.netdefs.legos import zero_init_residual
from torchonspark.sparkjobs.engine.distributed import init_distributed, select_device, train_step, wrap_ddp
from torchonspark.sparkjobs.engine.optimizer import sgd
from torchonspark.sparkjobs.engine.recipe import load_recipe

RECIPE = "imagenet_resnet_50_large_batch"


def step_rate(model: torch.nn.Module, optimizer: torch.optim.Optimizer, device: torch.device, batch: int, crop: int,
              steps: int, warmup: int) -> float:
    """Images/s of ``steps`` train steps after ``warmup`` (which also absorbs torch.compile's compiling)."""
    images = torch.randn(batch, 3, crop, crop, device=device).contiguous(memory_format=torch.channels_last)
    targets = torch.randint(0, 1000, (batch,), device=device)
    for step in range(warmup + steps):
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
        train_step(model, optimizer, images, targets, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - started)


def worker_step_rate(args: argparse.Namespace, device: torch.device, compiled: bool) -> float:
    recipe = load_recipe(RECIPE)
    torch.manual_seed(0)
    net = load_model(args.model).replace(input_size=args.crop).build()
    zero_init_residual(net)
    net = net.to(device, memory_format=torch.channels_last)
    model = wrap_ddp(net, device, recipe.ddp_options())
    if compiled:
        model = torch.compile(model)
    rate = step_rate(model, sgd(net, recipe), device, args.batch, args.crop, args.steps, args.warmup)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rate


def loader_rate(data: str, crop: int, batch: int, threads: int, images: int) -> float:
    """Images/s of the training loader alone (decode, scale augmentation, crop, normalise)."""
    loader = ShardedLoader(fs.resolve(data).join("train"), 0, 1, batch, TrainTransform(crop), train=True, seed=0,
                           decode_threads=threads)
    seen, started = 0, time.perf_counter()
    for epoch in range(1000):  # bounded: small data sets are read again until ``images`` are seen
        loader.set_epoch(epoch, 0)
        for batch_images, _ in loader:
            seen += len(batch_images)
            if seen >= images:
                return seen / (time.perf_counter() - started)
    return seen / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--model", default="resnet_50", help="a conf/models name (default %(default)s)")
    parser.add_argument("--batch", type=int, default=load_recipe(RECIPE).batch_size, help="per GPU (default: the recipe's)")
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="measure eager only")
    parser.add_argument("--loader-data", help="a converted data set (OUTPUT of `torchonspark convert`) for the loader rate")
    parser.add_argument("--loader-images", type=int, default=3000)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    if args.loader_data and not fs.resolve(args.loader_data).join("train").exists():
        parser.error(f"--loader-data {args.loader_data} is not a converted data set (no train/); run make gpu-check-data")
    device = select_device(args.device, int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    init_distributed(device)
    figures: dict[str, object] = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU",
                                  "torch": torch.__version__, "model": args.model, "batch": args.batch, "crop": args.crop}
    figures["eager_images_per_s"] = worker_step_rate(args, device, compiled=False)
    if args.compile:
        figures["compiled_images_per_s"] = worker_step_rate(args, device, compiled=True)
    if args.loader_data:
        cores = len(os.sched_getaffinity(0))
        one = loader_rate(args.loader_data, args.crop, 64, 1, args.loader_images // 4)
        every = loader_rate(args.loader_data, args.crop, 64, cores, args.loader_images)
        figures.update(loader_cores=cores, loader_one_thread_images_per_s=one, loader_all_cores_images_per_s=every,
                       loader_images_per_s_per_core=every / cores)
    report(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


def report(figures: dict) -> None:
    print(f"{figures['model']}, batch {figures['batch']} at {figures['crop']}px, bf16 autocast + channels_last, the "
          f"worker's DDP and SGD, on {figures['device']}, torch {figures['torch']}")
    eager = figures["eager_images_per_s"]
    print(f"eager                           {eager:8.0f} images/s   (goal >= 3000 on an H100)")
    if "compiled_images_per_s" in figures:
        compiled = figures["compiled_images_per_s"]
        print(f"torch.compile                   {compiled:8.0f} images/s")
        print(f"ratio compiled / eager          {compiled / eager:8.2f}")
    if "loader_cores" in figures:
        per_core = figures["loader_images_per_s_per_core"]
        best = max(eager, figures.get("compiled_images_per_s", 0))
        print(f"loader, 1 decode thread         {figures['loader_one_thread_images_per_s']:8.0f} images/s")
        print(f"loader, {figures['loader_cores']:2d} decode threads       {figures['loader_all_cores_images_per_s']:8.0f} "
              f"images/s ({per_core:.0f} per core)")
        print(f"cores to feed one GPU           {best / per_core:8.1f}")


if __name__ == "__main__":
    sys.exit(main())
