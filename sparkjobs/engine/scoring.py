"""Scoring with a network: top-k hits of a batch (validation during training), and an exported model
applied to one shard of a data set's split inside a Spark task (evaluate: the shard's confusion
matrix, top-5 hits and misclassified images; features). Imports no Spark: the Spark jobs launch
these functions, one task per shard, and they are tested alone."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
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


def top1_predictions(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The class each image is predicted to be (the argmax of its logits) and that class's softmax probability."""
    predicted = logits.argmax(dim=1)
    return predicted, logits.softmax(dim=1).gather(1, predicted.unsqueeze(1)).squeeze(1)


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


class Mistake(NamedTuple):
    """An image whose top-1 prediction is not its label."""

    path: str
    label: int
    predicted: int
    probability: float  # the softmax probability of the prediction


@dataclass
class ShardScore:
    """What one shard adds to an evaluation: the confusion matrix (rows: the label, columns: the top-1
    prediction), the top-5 hits and the misclassified images alone. Shards add up with ``+``."""

    confusion: np.ndarray  # int64, classes x classes
    top5: int
    misclassified: list[Mistake]

    @property
    def images(self) -> int:
        return int(self.confusion.sum())

    @property
    def top1(self) -> int:
        return int(np.trace(self.confusion))

    def __add__(self, other: ShardScore) -> ShardScore:
        return ShardScore(self.confusion + other.confusion, self.top5 + other.top5, self.misclassified + other.misclassified)


def score_batch(logits: torch.Tensor, labels: torch.Tensor, paths: list[str]) -> ShardScore:
    """The score of one batch: the bin of each (label, prediction) pair, and the misclassified images."""
    classes = logits.shape[1]
    outside = labels[(labels < 0) | (labels >= classes)]
    if len(outside):  # bincount would mistake it for another cell
        raise ValueError(f"label {int(outside[0])} is out of range for the model's {classes} classes")
    predicted, probabilities = top1_predictions(logits)
    confusion = torch.bincount(labels * classes + predicted, minlength=classes * classes).reshape(classes, classes)
    _, top5 = count_hits(logits, labels)
    wrong = predicted.ne(labels).nonzero().flatten().tolist()
    misclassified = [Mistake(paths[i], int(labels[i]), int(predicted[i]), float(probabilities[i])) for i in wrong]
    return ShardScore(confusion.numpy().astype(np.int64), int(top5), misclassified)


def score_shard(model: fs.Location, split_data: fs.Location, rank: int, world_size: int, batch_size: int,
                threads: int) -> ShardScore:
    """The score of one shard (centre crops)."""
    net, batches = shard_batches(model, split_data, rank, world_size, batch_size, threads)
    classes = len(json.loads(model.join("labels.json").read_bytes()))
    score = ShardScore(np.zeros((classes, classes), dtype=np.int64), 0, [])
    with torch.no_grad():
        for images, labels, paths in batches:
            score += score_batch(net(images), labels, paths)
    return score
