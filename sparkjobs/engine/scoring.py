"""Scoring with a network: top-k hits of a batch (validation during training), and an exported model
applied to one shard of a data set's split (evaluate and features, inside a Spark task). Imports no
Spark: the Spark jobs launch these functions, one task per shard, and they are tested alone."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from torchonspark.datasets import fs
from torchonspark.datasets.loader import ShardedLoader
from torchonspark.datasets.transforms import EvalTransform
from torchonspark.sparkjobs.engine.export import load_model_folder

TOP_K = 5


def count_hits(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """How many of the images have their label first (top-1) and among the first five (top-5)."""
    hits = logits.topk(min(TOP_K, logits.shape[1]), dim=1).indices.eq(labels.unsqueeze(1))
    return hits[:, 0].sum(), hits.any(dim=1).sum()


def dataset_split(data: fs.Location, split: str) -> fs.Location:
    """The folder of split ``split`` (``val``, ``train``) of a converted data set."""
    location = data.join(split)
    if not location.is_dir():
        raise ValueError(f"--data {data.url} has no {split}/ split (make one with `torchonspark convert`)")
    return location


def shard_batches(model: fs.Location, split_data: fs.Location, rank: int, world_size: int, batch_size: int,
                  threads: int) -> tuple[torch.nn.Module, Iterator]:
    """The exported model, and batches (images, labels, paths) of shard ``rank`` of ``world_size``."""
    torch.set_num_threads(threads)
    net, netdef, _ = load_model_folder(model)
    loader = ShardedLoader(split_data, rank, world_size, batch_size, EvalTransform(netdef.input_size), train=False,
                           decode_threads=threads, with_paths=True)
    return net, iter(loader)


def count_shard(model: fs.Location, split_data: fs.Location, rank: int, world_size: int, batch_size: int,
                threads: int) -> dict[str, int]:
    """Top-1 and top-5 hits and images of one shard (centre crops)."""
    net, batches = shard_batches(model, split_data, rank, world_size, batch_size, threads)
    counts = {"images": 0, "top1": 0, "top5": 0}
    with torch.no_grad():
        for images, labels, _ in batches:
            top1, top5 = count_hits(net(images), labels)
            counts["images"] += len(labels)
            counts["top1"] += int(top1)
            counts["top5"] += int(top5)
    return counts
