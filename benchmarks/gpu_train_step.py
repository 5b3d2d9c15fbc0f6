"""The seed's ResNet-50 training step on one GPU: the worker's own step (train_step: DDP, SGD,
bf16 autocast, channels_last) on synthetic batches of 256, then fp32 for contrast. No Spark, no JVM:
this is what runs on a GPU machine that has only torch.

    python benchmarks/gpu_train_step.py                      # on a GPU machine
    python benchmarks/gpu_train_step.py --device cpu --batch 4 --steps 2 --warmup 1   # a smoke run anywhere

On a GPU machine that has torch, pyarrow, numpy, OpenCV and PyYAML but not this project (nor Spark),
install the checkout without touching its packages first: `pip install --no-deps --no-build-isolation -e .`

Goal (issue 4): >= 3,000 images/s on an H100 in bf16 (PyTorch eager peers ~2,600-2,800).
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torch.nn.parallel import DistributedDataParallel

from torchonspark.netdefs import load_model
from torchonspark.sparkjobs.engine.distributed import init_distributed, select_device, train_step


def images_per_second(model, optimizer, device, batch: int, steps: int, warmup: int, mixed: bool) -> float:
    images = torch.randn(batch, 3, 224, 224, device=device)
    targets = torch.randint(0, 1000, (batch,), device=device)
    if device.type == "cuda" and mixed:
        images = images.contiguous(memory_format=torch.channels_last)
    for step in range(warmup + steps):
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
        train_step(model, optimizer, images, targets, device, mixed_precision=mixed)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()
    device = select_device(args.device, int(os.environ.get("LOCAL_RANK", "0")))
    init_distributed(device)
    rates = {}
    for mixed in (True, False):
        torch.manual_seed(0)
        net = load_model("resnet_50").build()
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            net = net.to(device, memory_format=torch.channels_last if mixed else torch.contiguous_format)
        model = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
        rates[mixed] = images_per_second(model, optimizer, device, args.batch, args.steps, args.warmup, mixed)
        del model, net, optimizer
        if device.type == "cuda":
            torch.cuda.empty_cache()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"ResNet-50 (seed v1), batch {args.batch}, {args.steps} timed steps after {args.warmup}, on {name}, torch {torch.__version__}")
    print(f"bf16 autocast + channels_last   {rates[True]:8.0f} images/s   (goal >= 3000 on an H100)")
    print(f"fp32                            {rates[False]:8.0f} images/s")
    print(f"ratio bf16 / fp32               {rates[True] / rates[False]:8.2f}")


if __name__ == "__main__":
    main()
