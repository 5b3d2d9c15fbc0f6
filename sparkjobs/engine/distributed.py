"""The device, the process group and the synchronous SGD step: what every rank of a DDP job does the
same way, whether TorchDistributor or torchrun started it. Imports no Spark."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel

PROCESS_GROUP_TIMEOUT = timedelta(minutes=30)


def cuda_index(local_rank: int, visible_gpus: int) -> int:
    """Which of the visible GPUs a process uses. Under Spark each barrier task sees only the GPUs
    Spark gave it (CUDA_VISIBLE_DEVICES), and runs one process (local rank 0): index 0, its own
    GPU. Under torchrun on one multi-GPU machine, local rank r takes GPU r."""
    if visible_gpus < 1:
        raise ValueError("no GPU is visible to this process")
    if local_rank >= visible_gpus:
        raise ValueError(f"local rank {local_rank} has no GPU of its own: {visible_gpus} visible; start at most "
                         f"{visible_gpus} processes per machine (torchrun --nproc_per_node)")
    return local_rank


def select_device(kind: str, local_rank: int) -> torch.device:
    """The device this process trains on."""
    if kind == "cpu":
        return torch.device("cpu")
    if kind != "cuda":
        raise ValueError(f"device must be 'cpu' or 'cuda'; got {kind!r}")
    if not torch.cuda.is_available():
        raise RuntimeError("a GPU run was asked for but torch sees no GPU in this process (CUDA_VISIBLE_DEVICES="
                           f"{os.environ.get('CUDA_VISIBLE_DEVICES', '')!r})")
    return torch.device("cuda", cuda_index(local_rank, torch.cuda.device_count()))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def init_distributed(device: torch.device) -> tuple[int, int]:
    """Join the process group torchrun (or TorchDistributor) described in the environment; a
    process started without one becomes a group of one. Returns (rank, world size)."""
    if "RANK" not in os.environ:
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()))
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, timeout=PROCESS_GROUP_TIMEOUT)
    return dist.get_rank(), dist.get_world_size()


# Gradient compression on the wire: DDP's own communication hooks cast each bucket to 16 bits before
# the all-reduce and back after it, halving the bytes a step moves. Both dtypes all-reduce on NCCL and
# on gloo (checked on gloo with torch 2.14); bf16 keeps fp32's range, fp16 more mantissa.
COMPRESSION_HOOKS = {"none": None, "bf16": default_hooks.bf16_compress_hook, "fp16": default_hooks.fp16_compress_hook}
COMPRESSION_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class DdpOptions:
    """How DDP moves gradients: the knobs that matter on an Ethernet cluster."""

    compression: str = "none"  # a COMPRESSION_HOOKS key
    # None: DDP's own layout, a 1 MB first bucket (its all-reduce starts early in backward) then 25 MB
    # ones; a number (even 25) makes every bucket that size. Larger buckets: fewer, longer all-reduces.
    bucket_cap_mb: float | None = None
    gradient_as_bucket_view: bool = False  # gradients live in the buckets: one copy less, less memory
    static_graph: bool = False  # the same parameters take part in every step (true of every netdef ResNet)

    def __post_init__(self) -> None:
        if self.compression not in COMPRESSION_HOOKS:
            raise ValueError(f"gradient_compression must be one of {', '.join(COMPRESSION_HOOKS)}; got {self.compression!r}")
        if self.bucket_cap_mb is not None and not self.bucket_cap_mb > 0:
            raise ValueError(f"bucket_cap_mb must be positive; got {self.bucket_cap_mb}")


def wrap_ddp(net: nn.Module, device: torch.device, options: DdpOptions = DdpOptions(),
             workers: int | None = None) -> DistributedDataParallel:
    """``net`` in DDP as ``options`` say, its compression hook (if any) installed. ``workers``: the run's
    virtual workers when fewer processes compute them (virtual.py): gradients are then averaged over
    the workers, not the processes."""
    model = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None,
                                    bucket_cap_mb=options.bucket_cap_mb,
                                    gradient_as_bucket_view=options.gradient_as_bucket_view,
                                    static_graph=options.static_graph)
    if workers is not None and workers != dist.get_world_size():
        model.register_comm_hook(None, mean_over_workers_hook(workers, COMPRESSION_DTYPES[options.compression]))
        return model
    hook = COMPRESSION_HOOKS[options.compression]
    if hook is not None:
        model.register_comm_hook(None, hook)  # None: the default process group
    return model


def mean_over_workers_hook(workers: int, dtype: torch.dtype | None) -> Callable:
    """A DDP communication hook that averages over ``workers`` virtual workers rather than the
    processes: each process's bucket holds the sum of its workers' gradients, divided here by the
    workers before the all-reduce sums them (as DDP's own hooks divide by the processes). With V a
    power of two the division is exact, so the result differs from V processes' only in the order of
    the sums. ``dtype``: the 16-bit type gradients travel in (the recipe's gradient_compression), or
    None. torch's hooks divide by the process group's size, which is why this one is ours."""
    def hook(_, bucket):  # unannotated: DDP checks a hook's annotations as objects, and this module's are strings
        buffer = bucket.buffer()
        tensor = (buffer.to(dtype) if dtype is not None else buffer).div_(workers)

        def decompress(future: torch.futures.Future) -> torch.Tensor:
            reduced = future.value()[0]
            if dtype is not None:
                buffer.copy_(reduced)
            return buffer

        return dist.all_reduce(tensor, async_op=True).get_future().then(decompress)

    return hook


def autocast(device: torch.device, mixed_precision: bool = True) -> AbstractContextManager:
    # bf16 on GPU (no loss scaling needed); plain fp32 on CPU.
    if device.type == "cuda" and mixed_precision:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


def to_device(images: torch.Tensor, labels: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    if images.device != device:
        images = images.to(device, non_blocking=True, memory_format=torch.channels_last)
        labels = labels.to(device, non_blocking=True)
    return images, labels


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor, targets: torch.Tensor,
               device: torch.device, mixed_precision: bool = True) -> torch.Tensor:
    """One synchronous SGD step (DDP all-reduces the gradients inside backward); the loss, detached."""
    images, targets = to_device(images, targets, device)
    with autocast(device, mixed_precision):
        loss = F.cross_entropy(model(images), targets)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def accumulated_step(model: DistributedDataParallel, optimizer: torch.optim.Optimizer,
                     batches: Sequence[tuple[torch.Tensor, torch.Tensor]], device: torch.device,
                     before_last: Callable[[], None], random_state_of: Callable[[int], AbstractContextManager],
                     mixed_precision: bool = True) -> list[torch.Tensor]:
    """One synchronous SGD step over several virtual workers' batches (virtual.py): a forward and
    backward for each, gradients summed in place under ``no_sync`` but for the last, whose backward
    all-reduces them (averaged over the workers by ``mean_over_workers_hook``); ``before_last`` runs
    just before the last forward, and each batch's forward and backward under ``random_state_of(its
    index)``. Returns each batch's loss, detached."""
    optimizer.zero_grad(set_to_none=True)
    losses = []
    for index, (images, targets) in enumerate(batches):
        last = index == len(batches) - 1
        if last:
            before_last()
        images, targets = to_device(images, targets, device)
        with nullcontext() if last else model.no_sync(), random_state_of(index):
            with autocast(device, mixed_precision):
                loss = F.cross_entropy(model(images), targets)
            loss.backward()
        losses.append(loss.detach())
    optimizer.step()
    return losses
