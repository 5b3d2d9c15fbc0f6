"""The sharded loader over converted digits: shards, equal batch counts, per-epoch order."""

import pytest
import torch

from torchonspark.datasets import fs
from torchonspark.datasets.loader import ShardedLoader, list_row_groups
from torchonspark.datasets.transforms import EvalTransform, TrainTransform

pytestmark = pytest.mark.e2e  # reads the digits set that a Spark job converted


def paths_of(loader):
    return [path for _, _, paths in loader for path in paths]


@pytest.mark.parametrize("world_size", [2, 3])
def test_shards_are_disjoint_and_cover_every_row(digits_parquet, world_size):
    output, _ = digits_parquet
    shards = [
        paths_of(ShardedLoader(fs.resolve(str(output / "val")), rank, world_size, 64, EvalTransform(32), train=False, with_paths=True))
        for rank in range(world_size)
    ]
    every = [path for shard in shards for path in shard]
    assert len(every) == len(set(every)) == 360
    assert all(shards)


def test_every_rank_gets_the_same_number_of_full_training_batches(digits_parquet):
    output, _ = digits_parquet
    loaders = [ShardedLoader(fs.resolve(str(output / "train")), rank, 3, 32, TrainTransform(32), train=True) for rank in range(3)]
    counts = {len(list(loader)) for loader in loaders}
    assert counts == {len(loaders[0])}
    rows = sum(group.rows for group in list_row_groups(fs.resolve(str(output / "train"))))
    assert rows == 1437 and len(loaders[0]) * 32 * 3 <= rows
    images, labels = next(iter(loaders[0]))
    assert images.shape == (32, 3, 32, 32) and images.dtype == torch.float32
    assert labels.dtype == torch.int64 and 0 <= labels.min() and labels.max() <= 9
    assert -3 < images.mean() < 3


def test_training_order_differs_by_epoch_and_repeats_for_the_same_seed_and_epoch(digits_parquet):
    output, _ = digits_parquet

    def epoch(seed, number):
        loader = ShardedLoader(fs.resolve(str(output / "train")), 1, 2, 50, TrainTransform(32), train=True, seed=seed, with_paths=True)
        loader.set_epoch(number)
        batches = list(loader)
        return [p for _, _, paths in batches for p in paths], torch.cat([images for images, _, _ in batches])

    first_paths, first_images = epoch(7, 0)
    again_paths, again_images = epoch(7, 0)
    next_paths, _ = epoch(7, 1)
    other_seed_paths, _ = epoch(8, 0)
    assert first_paths == again_paths and torch.equal(first_images, again_images)
    assert first_paths != next_paths and first_paths != other_seed_paths
    assert len(set(first_paths)) == len(first_paths)


def test_evaluation_reads_its_shard_in_order_ending_with_a_partial_batch(digits_parquet):
    output, _ = digits_parquet
    loader = ShardedLoader(fs.resolve(str(output / "val")), 0, 1, 100, EvalTransform(32), train=False, with_paths=True)
    batches = list(loader)
    assert [len(labels) for _, labels, _ in batches] == [100, 100, 100, 60] and len(loader) == 4
    assert paths_of(loader) == [p for _, _, paths in batches for p in paths]


def test_more_workers_than_row_groups_is_refused(digits_parquet):
    output, _ = digits_parquet
    with pytest.raises(ValueError, match="fewer than the 64 workers"):
        ShardedLoader(fs.resolve(str(output / "val")), 0, 64, 8, EvalTransform(32), train=False)


def test_a_batch_larger_than_the_smallest_shard_is_refused(digits_parquet):
    output, _ = digits_parquet
    with pytest.raises(ValueError, match="fewer than one batch"):
        ShardedLoader(fs.resolve(str(output / "val")), 0, 2, 1000, TrainTransform(32), train=True)
