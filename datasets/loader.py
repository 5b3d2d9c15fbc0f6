"""Sharded batches of a converted data set, for rank r of N.

The loader reads the petastorm dataset's Parquet row groups with pyarrow and decodes the stored JPEG
bytes itself, rather than through ``petastorm.make_reader``, for three reasons: petastorm's thread
pool hands row groups back in the order they finish, so an epoch's order could not be reproduced
from a seed; its codec decodes every image whole before any crop; and knowing every shard's row
count up front is what lets each rank stop after the same number of batches.

Sharding: row group i (in file-path order) belongs to rank i mod N, as in petastorm. Training
epochs shuffle the rank's row groups and the rows across a window of them, from (seed, epoch, rank),
and stop after the same number of full batches on every rank. Evaluation reads every row of the
shard once, in order, ending with a partial batch.

This module does not import Spark: the training worker also runs under plain torchrun.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from . import fs
from .transforms import DRAWS_PER_IMAGE, IMAGENET_MEAN, IMAGENET_STD

IMAGE_COLUMN = "image"
LABEL_COLUMN = "label"
PATH_COLUMN = "path"

# The normalisation in pixel units (0..255), float32: one subtraction and one multiplication per value.
# Exported models describe it in these terms (preprocessing.json), so that it can be reproduced bit for bit.
PIXEL_MEAN = (np.array(IMAGENET_MEAN, np.float32) * 255).reshape(3, 1, 1)
PIXEL_INVERSE_STD = (1 / (np.array(IMAGENET_STD, np.float32) * 255)).reshape(3, 1, 1)


def normalize_into(crop: np.ndarray, out: np.ndarray) -> np.ndarray:
    """An HxWx3 uint8 RGB crop -> 3xHxW float32 ``(pixel - PIXEL_MEAN) * PIXEL_INVERSE_STD``, written into
    ``out`` (a slot of a batch, so no copy is made). The one normalisation of training, evaluation and predict."""
    np.subtract(crop.transpose(2, 0, 1), PIXEL_MEAN, out=out)
    out *= PIXEL_INVERSE_STD
    return out


class Transform(Protocol):
    """Bytes of one image + its random draws (None when evaluating) -> crop_size x crop_size x 3 RGB uint8."""

    crop_size: int

    def __call__(self, data: bytes, draws: np.ndarray | None) -> np.ndarray: ...


@dataclass(frozen=True)
class RowGroup:
    path: str  # inside the dataset's filesystem
    index: int
    rows: int
    labels: tuple[int, int] | None = None  # the label column's (min, max), from the Parquet statistics


def list_row_groups(dataset: fs.Location) -> list[RowGroup]:
    """Every row group of the dataset's Parquet files, in file-path order. A file that is not readable
    Parquet (truncated, zeroed) is a ValueError naming it."""
    groups = []
    for info in fs.list_files(dataset):
        if not info.base_name.endswith(".parquet"):
            continue
        try:
            with dataset.fs.open_input_file(info.path) as stream:
                metadata = pq.ParquetFile(stream).metadata
        except (OSError, ValueError) as error:  # pyarrow.ArrowInvalid is a ValueError
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ValueError(f"{dataset.join(info.base_name).url} is not a readable Parquet file ({first}): "
                             "convert the data again") from None
        groups += [RowGroup(info.path, i, metadata.row_group(i).num_rows, _label_range(metadata.row_group(i)))
                   for i in range(metadata.num_row_groups)]
    return groups


def _label_range(row_group: pq.RowGroupMetaData) -> tuple[int, int] | None:
    for j in range(row_group.num_columns):
        column = row_group.column(j)
        if column.path_in_schema == LABEL_COLUMN and column.statistics is not None and column.statistics.has_min_max:
            return int(column.statistics.min), int(column.statistics.max)
    return None


def shard_row_groups(groups: list[RowGroup], rank: int, world_size: int) -> list[RowGroup]:
    return groups[rank::world_size]


class ShardedLoader:
    """Batches ``(images float32 NCHW normalized, labels int64)`` of one rank's shard, plus the
    source paths (a list of str) when ``with_paths``."""

    def __init__(
        self,
        dataset: fs.Location,
        rank: int,
        world_size: int,
        batch_size: int,
        transform: Transform,
        train: bool,
        seed: int = 0,
        decode_threads: int | None = None,
        shuffle_window: int = 4,
        prefetch_batches: int = 2,
        with_paths: bool = False,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}); got {rank}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive; got {batch_size}")
        self.dataset = dataset
        if not dataset.is_dir():
            raise ValueError(f"dataset {dataset.url} does not exist")
        groups = list_row_groups(self.dataset)
        if len(groups) < world_size:
            raise ValueError(
                f"{dataset.url} has {len(groups)} row groups, fewer than the {world_size} workers: "
                "convert it again with a larger --num-files"
            )
        self.shard = shard_row_groups(groups, rank, world_size)
        self.rows = sum(group.rows for group in self.shard)
        smallest_shard = min(sum(g.rows for g in shard_row_groups(groups, r, world_size)) for r in range(world_size))
        self.rank, self.world_size, self.batch_size = rank, world_size, batch_size
        self.transform, self.train, self.seed = transform, train, seed
        self.decode_threads = decode_threads or len(os.sched_getaffinity(0))
        self.shuffle_window, self.prefetch_batches = shuffle_window, prefetch_batches
        self.with_paths = with_paths
        self.epoch = 0
        self.start_batch = 0
        if train:
            self.batches = smallest_shard // batch_size
            if self.batches == 0:
                raise ValueError(
                    f"the smallest shard of {dataset.url} has {smallest_shard} rows, fewer than one batch of {batch_size}"
                )
        else:
            self.batches = -(-self.rows // batch_size)

    def __len__(self) -> int:
        return self.batches

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Training order depends on (seed, epoch, rank): call before each epoch, as with
        DistributedSampler. ``start_batch`` resumes an epoch part-way: the batches before it are
        skipped without decoding, and later ones come out exactly as in an uninterrupted epoch."""
        if not 0 <= start_batch <= self.batches:
            raise ValueError(f"start_batch must be in [0, {self.batches}]; got {start_batch}")
        self.epoch = epoch
        self.start_batch = start_batch

    def _samples(self, rng: np.random.Generator | None) -> Iterator[tuple[bytes, int, str | None]]:
        order = list(self.shard)
        window = 1
        if rng is not None:
            order = [order[i] for i in rng.permutation(len(order))]
            window = self.shuffle_window
        columns = [IMAGE_COLUMN, LABEL_COLUMN] + ([PATH_COLUMN] if self.with_paths else [])
        for start in range(0, len(order), window):
            images: list[bytes] = []
            labels: list[int] = []
            paths: list[str | None] = []
            for group in order[start : start + window]:
                # read again while a restarting NameNode is away: a training run meets restarts in days
                table = fs.retrying(self.dataset, f"reading {group.path} (row group {group.index}) of",
                                    lambda group=group: self._row_group(group, columns))
                images += table.column(IMAGE_COLUMN).to_pylist()
                labels += table.column(LABEL_COLUMN).to_pylist()
                paths += table.column(PATH_COLUMN).to_pylist() if self.with_paths else [None] * table.num_rows
            rows = rng.permutation(len(images)) if rng is not None else range(len(images))
            for row in rows:
                yield images[row], labels[row], paths[row]

    def _row_group(self, group: RowGroup, columns: list[str]) -> pa.Table:
        with self.dataset.fs.open_input_file(group.path) as stream:
            return pq.ParquetFile(stream).read_row_group(group.index, columns=columns)

    def _batches_of_work(self, pool: ThreadPoolExecutor) -> Iterator[tuple[tuple[torch.Tensor, list[Future]], list[tuple[bytes, int, str | None]]]]:
        rng = np.random.default_rng([self.seed, self.epoch, self.rank]) if self.train else None
        batch: list[tuple[bytes, int, str | None]] = []
        made = 0
        for sample in self._samples(rng):
            batch.append(sample)
            if len(batch) == self.batch_size:
                if made >= self.start_batch:
                    yield self._submit(pool, batch, rng), batch
                elif rng is not None:
                    rng.random((len(batch), DRAWS_PER_IMAGE))  # the skipped batch's draws, to stay in step
                batch, made = [], made + 1
                if made == self.batches:
                    return
        if batch and not self.train:
            yield self._submit(pool, batch, rng), batch

    def _submit(self, pool: ThreadPoolExecutor, batch: list[tuple[bytes, int, str | None]], rng: np.random.Generator | None) -> tuple[torch.Tensor, list[Future]]:
        draws = rng.random((len(batch), DRAWS_PER_IMAGE)) if rng is not None else [None] * len(batch)
        size = self.transform.crop_size
        images = torch.empty((len(batch), 3, size, size), dtype=torch.float32)
        slots = images.numpy()
        return images, [pool.submit(self._load_into, slots[i], sample[0], draw) for i, (sample, draw) in enumerate(zip(batch, draws))]

    def _load_into(self, slot: np.ndarray, data: bytes, draws: np.ndarray | None) -> None:
        """Decode, augment and normalize one image straight into its place in the batch, in a worker
        thread (OpenCV and NumPy release the GIL, so the threads run in parallel)."""
        normalize_into(self.transform(data, draws), slot)

    def _to_tensors(self, work: tuple[torch.Tensor, list[Future]], batch: list[tuple[bytes, int, str | None]]) -> tuple:
        images, futures = work
        for future in futures:
            future.result()
        labels = torch.tensor([sample[1] for sample in batch], dtype=torch.int64)
        if self.with_paths:
            return images, labels, [sample[2] for sample in batch]
        return images, labels

    def __iter__(self) -> Iterator[tuple]:
        with ThreadPoolExecutor(self.decode_threads, thread_name_prefix="decode") as pool:
            in_flight: deque = deque()
            for work in self._batches_of_work(pool):
                in_flight.append(work)
                if len(in_flight) > self.prefetch_batches:
                    yield self._to_tensors(*in_flight.popleft())
            while in_flight:
                yield self._to_tensors(*in_flight.popleft())
