"""The training worker: one torch.distributed process of a synchronous SGD job.

Each barrier task of the train job runs ``train_worker`` (through TorchDistributor); it runs the
same under plain torchrun, without Spark or a JVM:

    torchrun --nproc_per_node=2 -m torchonspark.sparkjobs.train_worker \\
        --conf conf/digits.yaml --data ./digits-parquet --output ./run

Every rank builds the net from the netdef, wraps it in DDP (nccl on GPU, gloo on CPU), reads its
shard of the data, and steps SGD in lockstep. Rank 0 writes metrics, checkpoints, the summary, the
plots and the exported model into the run folder. This module must not import pyspark.
"""

from __future__ import annotations

import io
import json
import os
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from torchonspark.datasets import fs
from torchonspark.datasets.loader import ShardedLoader
from torchonspark.datasets.transforms import EvalTransform, TrainTransform
from torchonspark.netdefs import NetDef
from torchonspark.sparkjobs.export import export_model
from torchonspark.sparkjobs.recipe import Recipe, learning_rate
from torchonspark.sparkjobs.runfolder import RunFolder, load_checkpoint

TOP_K = 5
PROCESS_GROUP_TIMEOUT = timedelta(minutes=30)


@dataclass(frozen=True)
class TrainJob:
    """Everything a worker needs, as plain values (pickled to every barrier task)."""

    recipe: Recipe
    netdef: NetDef  # with num_classes and input_size set
    data_url: str  # a converted dataset: train/, val/, labels.json
    output_url: str
    device: str = "cpu"  # "cpu" or "cuda"
    threads: int = 1  # CPU threads for torch and for decoding
    resume: bool = False
    overwrite: bool = False  # rank 0 deletes an existing run folder first
    weights: str | None = None  # initial weights (a state dict file, or an exported model folder)


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


def _init_distributed(device: torch.device) -> tuple[int, int]:
    """Join the process group torchrun (or TorchDistributor) described in the environment; a
    process started without one becomes a group of one."""
    if "RANK" not in os.environ:
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()))
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, timeout=PROCESS_GROUP_TIMEOUT)
    return dist.get_rank(), dist.get_world_size()


def _load_initial_weights(net: nn.Module, location: str) -> list[str]:
    """Start from given weights (CaffeOnSpark's incremental learning): every tensor whose name and
    shape match is loaded; the names of the others (a new classifier, say) are returned."""
    source = fs.resolve(location)
    if source.is_dir():
        source = source.join("weights.pt")
    try:
        state = torch.load(io.BytesIO(source.read_bytes()), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"--weights {location}: no such file") from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]  # a checkpoint
    own = net.state_dict()
    matching = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not matching:
        raise ValueError(f"--weights {location}: no tensor matches this network")
    net.load_state_dict(matching, strict=False)
    return sorted(set(own) - set(matching))


def count_hits(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """How many of the images have their label first (top-1) and among the first five (top-5)."""
    hits = logits.topk(min(TOP_K, logits.shape[1]), dim=1).indices.eq(labels.unsqueeze(1))
    return hits[:, 0].sum(), hits.any(dim=1).sum()


def _check_resumable(state: dict[str, Any], netdef: NetDef, world_size: int, batch_size: int, max_iter: int, source: str) -> None:
    """A resumed run must be the run that was checkpointed: the same network, and the same workers
    and batch (they decide the shards and the order of the data); and it must have steps left."""
    if state["netdef"] != netdef.to_dict():
        raise ValueError(f"--resume: {source} was trained as {state['netdef']}, not {netdef.to_dict()}")
    saved = (state.get("world_size"), state.get("batch_size"))
    if saved != (world_size, batch_size):
        raise ValueError(f"--resume: {source} ran on {saved[0]} workers x {saved[1]} images; resume it with the same "
                         f"(now {world_size} x {batch_size})")
    if state["iteration"] >= max_iter:
        raise ValueError(f"--resume: {source} already reached iteration {state['iteration']} of {max_iter}; "
                         "raise --max-iter or --epochs to train further")


def _evaluate(net: nn.Module, loader: ShardedLoader, device: torch.device) -> tuple[float, float]:
    """Top-1 and top-5 over the whole split: each rank counts its shard, the counts are summed."""
    # DDP gives every rank rank 0's BatchNorm statistics at the start of each forward, and each rank
    # then updates its own copy with its own batch: without this, ranks would score with different
    # statistics from the ones rank 0 checkpoints and exports.
    for buffer in net.buffers():
        dist.broadcast(buffer, src=0)
    was_training = net.training
    net.eval()
    counts = torch.zeros(3, dtype=torch.float64, device=device)
    with torch.no_grad(), _autocast(device):
        for images, labels in loader:
            images, labels = _to_device(images, labels, device)
            top1, top5 = count_hits(net(images), labels)
            counts += torch.stack([top1, top5, torch.tensor(len(labels), device=device)]).double()
    dist.all_reduce(counts)
    net.train(was_training)
    top1, top5, images = counts.tolist()
    return top1 / images, top5 / images


def _autocast(device: torch.device, mixed_precision: bool = True):
    # bf16 on GPU (no loss scaling needed); plain fp32 on CPU.
    if device.type == "cuda" and mixed_precision:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor, targets: torch.Tensor,
               device: torch.device, mixed_precision: bool = True) -> torch.Tensor:
    """One synchronous SGD step (DDP all-reduces the gradients inside backward); the loss, detached."""
    images, targets = _to_device(images, targets, device)
    with _autocast(device, mixed_precision):
        loss = F.cross_entropy(model(images), targets)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def _to_device(images: torch.Tensor, labels: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    if images.device != device:
        images = images.to(device, non_blocking=True, memory_format=torch.channels_last)
        labels = labels.to(device, non_blocking=True)
    return images, labels


def _eta(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def train_worker(job: TrainJob) -> dict[str, Any] | None:
    """Run this process's part of the job; rank 0 returns the summary, other ranks None."""
    device = select_device(job.device, int(os.environ.get("LOCAL_RANK", "0")))
    torch.set_num_threads(job.threads)
    rank, world_size = _init_distributed(device)
    try:
        summary = _train(job, device, rank, world_size)
        # Leave together: a rank that tore down its end of the group while rank 0 was still writing
        # the export was seen to abort (SIGABRT) at exit.
        dist.barrier()
        return summary
    finally:
        dist.destroy_process_group()


def _train(job: TrainJob, device: torch.device, rank: int, world_size: int) -> dict[str, Any] | None:
    recipe, netdef = job.recipe, job.netdef
    started = time.monotonic()
    data = fs.resolve(job.data_url)
    labels = json.loads(data.join("labels.json").read_bytes())
    run = RunFolder(job.output_url)
    train_transform = TrainTransform(recipe.crop_size, recipe.scale_range, recipe.mirror)
    train_loader = ShardedLoader(data.join("train").url, rank, world_size, recipe.batch_size, train_transform,
                                 train=True, seed=recipe.seed, decode_threads=job.threads)
    val_loader = ShardedLoader(data.join("val").url, rank, world_size, recipe.batch_size, EvalTransform(recipe.crop_size),
                               train=False, decode_threads=job.threads)
    per_epoch = len(train_loader)
    max_iter = recipe.max_iter if recipe.max_iter is not None else recipe.epochs * per_epoch

    torch.manual_seed(recipe.seed)  # the same initial weights everywhere (DDP also broadcasts rank 0's)
    net = netdef.build()
    torch.manual_seed(recipe.seed + rank)  # but each rank its own dropout masks
    if job.weights and not job.resume:
        skipped = _load_initial_weights(net, job.weights)
        if rank == 0 and skipped:
            print(f"--weights: kept the new initialisation of {', '.join(skipped)}", flush=True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        net = net.to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(net.parameters(), lr=recipe.base_lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    iteration = 0
    if job.resume:
        latest = run.latest_checkpoint()
        if latest is None:
            raise ValueError(f"--resume: {run.checkpoints.url} holds no checkpoint")
        state = load_checkpoint(latest)
        _check_resumable(state, netdef, world_size, recipe.batch_size, max_iter, latest.url)
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        iteration = state["iteration"]
        torch.set_rng_state(state["rng"][rank])
        if device.type == "cuda" and state.get("cuda_rng"):
            torch.cuda.set_rng_state(state["cuda_rng"][rank], device)
    model = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    if rank == 0:
        if job.overwrite and run.root.exists():
            run.root.fs.delete_dir(run.root.path)
        run.create()
        if job.resume:
            run.keep_metrics_through(iteration)
        print(f"training {netdef.name} on {world_size} {device.type} worker(s): {max_iter} iterations "
              f"({per_epoch} per epoch) of {world_size} x {recipe.batch_size} images", flush=True)

    def checkpoint() -> None:
        rng_states = [None] * world_size
        dist.all_gather_object(rng_states, torch.get_rng_state())
        cuda_states = [None] * world_size
        if device.type == "cuda":
            dist.all_gather_object(cuda_states, torch.cuda.get_rng_state(device))
        if rank == 0:
            state = {"model": net.state_dict(), "optimizer": optimizer.state_dict(), "iteration": iteration,
                     "epoch": (iteration - 1) // per_epoch, "rng": rng_states,
                     "cuda_rng": cuda_states if device.type == "cuda" else None, "world_size": world_size,
                     "batch_size": recipe.batch_size, "recipe": recipe.to_dict(), "netdef": netdef.to_dict()}
            run.save_checkpoint(state, iteration, recipe.keep_snapshots)

    def validate() -> tuple[float, float]:
        top1, top5 = _evaluate(net, val_loader, device)
        if rank == 0:
            run.append_metrics({"iteration": iteration, "epoch": (iteration - 1) // per_epoch, "val_top1": top1, "val_top5": top5})
        return top1, top5

    loss_sum = torch.zeros(2, dtype=torch.float64, device=device)  # loss total, iterations
    first_iteration = iteration
    train_seconds, last_top1, last_top5 = 0.0, None, None
    interval_seconds, interval_started = 0.0, time.monotonic()  # training time of this display interval
    validated_at = None

    def pause_clock() -> None:  # validation and checkpoints are not training time
        nonlocal interval_seconds
        interval_seconds += time.monotonic() - interval_started
    while iteration < max_iter:
        epoch, offset = divmod(iteration, per_epoch)
        train_loader.set_epoch(epoch, offset)
        for images, targets in train_loader:
            lr = learning_rate(recipe, iteration, max_iter)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = train_step(model, optimizer, images, targets, device)
            iteration += 1
            loss_sum += torch.stack([loss.double(), torch.ones((), dtype=torch.float64, device=device)])
            if iteration % recipe.display == 0 or iteration == max_iter:
                dist.all_reduce(loss_sum)
                seconds = interval_seconds + time.monotonic() - interval_started
                train_seconds += seconds
                done = loss_sum[1].item() / world_size
                speed = done * world_size * recipe.batch_size / seconds
                if rank == 0:
                    mean_loss = loss_sum[0].item() / loss_sum[1].item()
                    run.append_metrics({"iteration": iteration, "epoch": epoch, "loss": mean_loss, "lr": lr,
                                        "images_per_sec": speed, "elapsed": time.monotonic() - started})
                    eta = (max_iter - iteration) * seconds / max(done, 1)
                    top = f"  val top-1 {last_top1:.4f}" if last_top1 is not None else ""
                    print(f"iter {iteration}/{max_iter}  epoch {epoch}  loss {mean_loss:.4f}  lr {lr:.4g}  "
                          f"{speed:.0f} img/s  ETA {_eta(eta)}{top}", flush=True)
                loss_sum.zero_()
                interval_seconds, interval_started = 0.0, time.monotonic()
            if recipe.test_interval and iteration % recipe.test_interval == 0:
                pause_clock()
                last_top1, last_top5 = validate()
                validated_at = iteration
                interval_started = time.monotonic()
            if recipe.snapshot and iteration % recipe.snapshot == 0 and iteration < max_iter:
                pause_clock()
                checkpoint()
                interval_started = time.monotonic()
            if iteration == max_iter:
                break
    if validated_at != iteration:
        last_top1, last_top5 = validate()
    checkpoint()
    if rank != 0:
        return None
    export_model(net, netdef, labels, run.model.url)
    images_trained = (iteration - first_iteration) * world_size * recipe.batch_size
    summary = {
        "val_top1": last_top1,
        "val_top5": last_top5,
        "world_size": world_size,
        "iterations": iteration,
        "epochs": iteration / per_epoch,
        "train_images_per_sec": images_trained / train_seconds if train_seconds else None,
        "wall_seconds": time.monotonic() - started,
        "model": netdef.to_dict(),
        "recipe": recipe.to_dict(),
        "device": device.type,
        "resumed_from": first_iteration or None,
    }
    run.write_summary(summary)
    run.write_plots()
    print(f"done: val top-1 {last_top1:.4f}, top-5 {last_top5:.4f}; model in {run.model.url}", flush=True)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Run the worker under torchrun, with the train job's arguments (no Spark options)."""
    from torchonspark.sparkjobs.train_args import get_args_parser, job_from_args

    parser = get_args_parser(prog="torchonspark.sparkjobs.train_worker", spark=False)
    args = parser.parse_args(argv)
    try:
        # Only rank 0 may judge the output folder: it creates it, and another rank checking later would
        # find it there and refuse.
        job = job_from_args(args, threads=args.threads or torch.get_num_threads(), device=args.device,
                            check_output_folder=os.environ.get("RANK", "0") == "0")
    except ValueError as error:
        parser.error(str(error))
    train_worker(job)
    return 0


if __name__ == "__main__":
    sys.exit(main())
