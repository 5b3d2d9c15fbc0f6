"""Convert an ImageNet-style tree, or ImageNet's release archives as they are, to petastorm Parquet with Spark.

    spark-submit --master yarn ... sparkjobs/convert_imagenet.py hdfs:///data/imagenet hdfs:///data/imagenet-pq
    torchonspark convert ./digits ./digits-parquet

ROOT is either a tree (``train/<wnid>/*.JPEG``, ``val/...``: ``imagenet.py``) or a folder holding
ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar and ILSVRC2012_devkit_t12.tar.gz, which are read
where they lie, without extraction (``archives.py``; ``--train-archive``, ``--val-archive`` and
``--devkit`` name them one by one instead). Both give the same rows, labels.json and report.

The driver lists the tree and validates it (for archives: reads the devkit and the outer tars'
headers, then Spark tasks walk the class tars' headers, a byte range of the train archive each); executors read, validate,
(optionally) fix or resize and store each image, a file of the tree or a member of an archive read by
offset. OUTPUT gets ``train/`` and ``val/`` (petastorm datasets of ``ImageSchema``),
``labels.json`` and ``report.json``. Everything is written under a temporary name beside OUTPUT and
renamed at the end, so OUTPUT appears whole or not at all.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from functools import partial

from petastorm.etl.dataset_metadata import materialize_dataset
from pyspark import AccumulatorParam
from pyspark.sql import SparkSession

from torchonspark.datasets import archives, fs, hdfs
from torchonspark.datasets.images import DEFAULT_JPEG_QUALITY, BadImage, convert_image
from torchonspark.datasets.imagenet import SPLITS, ImageNetTree, SplitListing, list_imagenet
from torchonspark.datasets.loader import list_row_groups
from torchonspark.datasets.outputlock import OutputLock
from torchonspark.datasets.schema import ImageSchema, image_row
from torchonspark.sparkjobs.cluster.session import spark_session
from torchonspark.sparkjobs.commandline import OneLineErrorParser, job_main

DEFAULT_ROW_GROUP_MB = 32
MIN_FILES = 16  # so that a few training workers each get several row groups even of a small set
ROW_GROUPS_PER_FILE = 4
WALK_TASKS_PER_CORE = 4  # byte ranges of the train archive per core of the cluster, for balance


class _OutcomeParam(AccumulatorParam):
    """Per-file outcomes gathered from the executors, keyed by path: a task that Spark re-runs
    reports the same paths again, which merge instead of counting twice."""

    def zero(self, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        return {"skipped": {}, "fixed": {}}

    def addInPlace(self, total: dict[str, dict[str, str]], more: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for kind, outcomes in more.items():
            total[kind].update(outcomes)
        return total


def _convert_partition(
    root_url: str, archive_url: str | None, resize_shorter: int | None, quality: int, outcomes,
    items: Iterator[tuple[str, str, int, int | None, int]],
):
    """Rows of a partition's items (path, wnid, label, offset, size): files under ROOT, or members of
    the archive read by offset (opened once per partition)."""
    root = fs.resolve(root_url)
    skipped: dict[str, str] = {}
    fixed: dict[str, str] = {}
    with ExitStack() as stack:
        archive = stack.enter_context(archives.open_archive(fs.resolve(archive_url))) if archive_url else None
        for path, wnid, label, offset, size in items:
            try:
                data = root.join(path).read_bytes() if archive is None else archives.read_member(archive, offset, size)
                image = convert_image(data, resize_shorter, quality)
            except BadImage as error:
                skipped[path] = str(error)
                continue
            except OSError as error:
                skipped[path] = f"unreadable ({error})"
                continue
            if image.fix is not None:
                fixed[path] = image.fix
            yield image_row(image.jpeg, label, wnid, path, image.height, image.width)
    outcomes.add({"skipped": skipped, "fixed": fixed})


def default_num_files(total_bytes: int, row_group_mb: int) -> int:
    return max(MIN_FILES, math.ceil(total_bytes / (ROW_GROUPS_PER_FILE * row_group_mb * 2**20)))


def _dataset_stats(location: fs.Location) -> tuple[int, int, int]:
    """(rows, row groups, bytes) of a written dataset."""
    groups = list_row_groups(location)
    size = sum(info.size or 0 for info in fs.list_files(location))
    return sum(group.rows for group in groups), len(groups), size


def convert_split(
    spark: SparkSession,
    tree: ImageNetTree,
    listing: SplitListing,
    target: fs.Location,
    resize_shorter: int | None,
    jpeg_quality: int,
    row_group_mb: int,
    num_files: int | None,
    seed: int,
) -> dict[str, object]:
    """Write one split as a petastorm dataset at ``target``; return its report entry."""
    started = time.monotonic()
    items = [(image.path, image.wnid, image.label, image.offset, image.size) for image in listing.images]
    # Shuffled before partitioning so every row group mixes classes (files are listed class by class).
    # Archives too: their members are listed in the tree's order and read by offset, so the rows come
    # out as from the extracted tree, rather than a class tar per task and class by class.
    random.Random(seed).shuffle(items)
    files = min(num_files or default_num_files(listing.bytes, row_group_mb), max(1, len(items)))
    context = spark.sparkContext
    outcomes = context.accumulator({"skipped": {}, "fixed": {}}, _OutcomeParam())
    archive_url = listing.archive.url if listing.archive is not None else None
    convert = partial(_convert_partition, tree.root.url, archive_url, resize_shorter, jpeg_quality, outcomes)
    url = fs.to_url(target)
    context.setJobDescription(f"convert {listing.name}: {len(items)} images into {files} files")
    with materialize_dataset(spark, url, ImageSchema, row_group_mb, filesystem_factory=hdfs.petastorm_filesystem_factory(url)):
        rows = context.parallelize(items, files).mapPartitions(convert)
        spark.createDataFrame(rows, ImageSchema.as_spark_schema()).write.parquet(url)
    converted, row_groups, bytes_written = _dataset_stats(target)
    skipped = listing.skipped + [{"path": p, "reason": r} for p, r in sorted(outcomes.value["skipped"].items())]
    if converted + len(skipped) != listing.seen:
        raise RuntimeError(
            f"{listing.name}: {listing.seen} files seen but {converted} converted and {len(skipped)} skipped; "
            "the output is incomplete and was not kept"
        )
    if converted == 0:
        reasons = Counter(item["reason"] for item in skipped).most_common(3)
        raise ValueError(f"no image of the {listing.name} split could be converted (most common reasons: {reasons})")
    archive = {} if listing.archive is None else {"archive": listing.archive.url, "truncated": listing.truncated}
    return {
        **archive,
        "seen": listing.seen,
        "converted": converted,
        "fixed": dict(sorted(Counter(outcomes.value["fixed"].values()).items())),
        "skipped": skipped,
        "empty_classes": listing.empty_classes,
        "notes": listing.notes,
        "files": files,
        "row_groups": row_groups,
        "bytes_read": listing.bytes,
        "bytes_written": bytes_written,
        "seconds": round(time.monotonic() - started, 3),
    }


def convert_imagenet(
    root: str | None,
    output: str,
    val_labels: str | None = None,
    synset_words: str | None = None,
    resize_shorter: int | None = None,
    jpeg_quality: int = DEFAULT_JPEG_QUALITY,
    row_group_mb: int = DEFAULT_ROW_GROUP_MB,
    num_files: int | None = None,
    overwrite: bool = False,
    seed: int = 0,
    train_archive: str | None = None,
    val_archive: str | None = None,
    devkit: str | None = None,
    spark: SparkSession | None = None,
    master: str | None = None,
) -> dict[str, object]:
    """Convert ROOT's train/ and val/, or ImageNet's release archives (in ROOT, or named by
    ``train_archive``, ``val_archive``, ``devkit``), into OUTPUT; return the report (also written as
    report.json). Runs on ``spark``, or on a session of its own on ``master`` that starts after the
    checks and stops at the end.

    Raises ValueError for input that cannot be converted, before any Spark work where it can tell.
    """
    _check_positive(resize_shorter=resize_shorter, row_group_mb=row_group_mb, num_files=num_files)
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f"--jpeg-quality must be between 1 and 100; got {jpeg_quality}")
    target = fs.resolve(output)
    fs.refuse_existing(target, overwrite, "OUTPUT")
    release = find_release(root, train_archive, val_archive, devkit)
    if release is None:
        tree = list_imagenet(root, val_labels, synset_words)

        def listed(session: SparkSession) -> ImageNetTree:
            return tree
    else:
        if val_labels or synset_words:
            raise ValueError("--val-labels and --synset-words are for a tree: with the release archives, labels and class names come from the devkit")
        index = archives.index_release(release)

        def listed(session: SparkSession) -> ImageNetTree:
            return archives.list_release(index, partial(_walk_class_tars, session))

    if spark is not None:
        return convert_tree(listed(spark), target, spark, resize_shorter, jpeg_quality, row_group_mb, num_files, seed)
    with spark_session("torchonspark convert", master) as own:
        return convert_tree(listed(own), target, own, resize_shorter, jpeg_quality, row_group_mb, num_files, seed)


def find_release(
    root: str | None, train_archive: str | None = None, val_archive: str | None = None, devkit: str | None = None
) -> archives.Release | None:
    """Which input this is: None for a tree (ROOT with train/ or val/), else where the release's files
    are (the flags, else their names in ROOT). A flag makes it a release whatever ROOT holds."""
    folder = fs.resolve(root) if root else None
    if not (train_archive or val_archive or devkit):
        if folder is None:
            raise ValueError("give ROOT (a tree, or a folder of ImageNet's release archives), or the archives with --train-archive and --devkit")
        if not folder.is_dir() or any(folder.join(split).is_dir() for split in SPLITS):
            return None  # a tree, or nothing: list_imagenet says which
        if not any(folder.join(name).exists() for name in archives.RELEASE_FILES):
            raise ValueError(
                f"ROOT {root} has neither train/ nor val/ (a tree: ROOT/train/<wnid>/*.JPEG) nor ImageNet's release "
                f"archives ({', '.join(archives.RELEASE_FILES)})"
            )

    def located(flag_value: str | None, name: str) -> fs.Location | None:
        if flag_value:
            return fs.resolve(flag_value)
        return folder.join(name) if folder is not None and folder.join(name).exists() else None

    train, val, kit = (located(value, name) for value, name in zip((train_archive, val_archive, devkit), archives.RELEASE_FILES))
    missing = [f"{name} (--{flag})" for name, flag, found in
               ((archives.TRAIN_ARCHIVE, "train-archive", train), (archives.DEVKIT, "devkit", kit)) if found is None]
    if missing:
        where = f"in ROOT {root}" if folder is not None else "given"
        raise ValueError(f"ImageNet's release archives: {' and '.join(missing)} not {where}; the train archive and the devkit are needed")
    return archives.Release(folder if folder is not None else train.parent(), train, val, kit)


def _walk_class_tars(spark: SparkSession, archive_url: str, class_tars: Sequence[archives.ClassTar]) -> list[archives.TarWalk]:
    """Walk the class tars' headers in parallel: a task per byte range of the outer tar, a few per core.
    Not a task per class tar: ImageNet's 1,000 would cost more in Spark's per-task overhead than the
    walks themselves (docs/benchmarks.md)."""
    context = spark.sparkContext
    ranges = archives.byte_ranges(class_tars, WALK_TASKS_PER_CORE * context.defaultParallelism)
    context.setJobDescription(f"list {len(class_tars)} class tars of {archive_url} in {len(ranges)} byte ranges")
    walks = context.parallelize(ranges, len(ranges)).map(partial(archives.walk_class_tars, archive_url)).collect()
    return [walk for range_walks in walks for walk in range_walks]


def convert_tree(
    tree: ImageNetTree,
    target: fs.Location,
    spark: SparkSession,
    resize_shorter: int | None = None,
    jpeg_quality: int = DEFAULT_JPEG_QUALITY,
    row_group_mb: int = DEFAULT_ROW_GROUP_MB,
    num_files: int | None = None,
    seed: int = 0,
) -> dict[str, object]:
    """Convert an already-listed tree into ``target`` on ``spark`` (see ``convert_imagenet``)."""
    started = time.monotonic()
    with fs.building(target) as temporary:
        splits = {
            name: convert_split(
                spark, tree, listing, temporary.join(name), resize_shorter, jpeg_quality, row_group_mb, num_files, seed
            )
            for name, listing in tree.splits.items()
        }
        report = {
            "root": tree.root.url,
            "output": target.url,
            "classes": len(tree.wnids),
            "resize_shorter": resize_shorter,
            "jpeg_quality": jpeg_quality,
            "row_group_mb": row_group_mb,
            "splits": splits,
            "seconds": round(time.monotonic() - started, 3),
        }
        temporary.join("labels.json").write_text_atomically(json.dumps(tree.labels(), indent=1) + "\n")
        temporary.join("report.json").write_text_atomically(json.dumps(report, indent=1) + "\n")
    return report


def _check_positive(**values: int | None) -> None:
    for name, value in values.items():
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer; got {value}")


def convert_report_lines(report: dict[str, object]) -> list[str]:
    lines = []
    for name, split in report["splits"].items():
        fixed = ", ".join(f"{kind} {count}" for kind, count in split["fixed"].items()) or "none"
        lines.append(
            f"{name}: {split['converted']} of {split['seen']} files converted (fixed: {fixed}), "
            f"{len(split['skipped'])} skipped, {split['row_groups']} row groups in {split['files']} files"
        )
        if split.get("truncated"):
            lines.append(f"{name}: {split['truncated']}")
    lines.append(f"{report['classes']} classes; report: {report['output']}/report.json ({report['seconds']:.1f} s)")
    return lines


def get_args_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="convert_imagenet",
        description="Convert ROOT/train/<wnid>/*.JPEG and ROOT/val/..., or ImageNet's release archives as they are "
        f"({', '.join(archives.RELEASE_FILES)}, in ROOT or named by flags), to petastorm Parquet datasets in OUTPUT.",
    )
    parser.add_argument("root", metavar="ROOT", nargs="?", help="the ImageNet-style tree, or the folder of the release archives "
                        "(local path or URL, e.g. hdfs:///data/imagenet); optional when the archive flags name the files")
    parser.add_argument("output", metavar="OUTPUT", help="where to write train/, val/, labels.json and report.json")
    parser.add_argument("--val-labels", metavar="FILE", help="labels of a flat val/ folder: 'filename wnid' lines or ImageNet's CSV")
    parser.add_argument("--synset-words", metavar="FILE", help="'wnid name' lines for human-readable class names (default: ROOT/synset_words.txt if present)")
    parser.add_argument("--train-archive", metavar="FILE", help=f"{archives.TRAIN_ARCHIVE}, read without extracting it (default: ROOT/{archives.TRAIN_ARCHIVE})")
    parser.add_argument("--val-archive", metavar="FILE", help=f"{archives.VAL_ARCHIVE} (default: ROOT/{archives.VAL_ARCHIVE} if present)")
    parser.add_argument("--devkit", metavar="FILE", help=f"{archives.DEVKIT}: classes, names, val ground truth (default: ROOT/{archives.DEVKIT})")
    parser.add_argument("--resize-shorter", type=int, metavar="N", help="shrink images whose shorter side exceeds N pixels")
    parser.add_argument("--jpeg-quality", type=int, default=DEFAULT_JPEG_QUALITY, help="quality of re-encoded JPEGs (default %(default)s)")
    parser.add_argument("--row-group-mb", type=int, default=DEFAULT_ROW_GROUP_MB, help="Parquet row group size in MB (default %(default)s)")
    parser.add_argument("--num-files", type=int, help=f"Parquet files per split (default: enough for {ROW_GROUPS_PER_FILE} row groups each, at least {MIN_FILES})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the order rows are written in (default %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    parser.add_argument("--take-over-lock", action="store_true", help="take OUTPUT's lock from a conversion that is gone")
    parser.add_argument("--master", help="Spark master when not run by spark-submit (default: local[*])")
    return parser


def run(args: argparse.Namespace) -> int:
    with OutputLock(fs.resolve(args.output), "OUTPUT", take_over=args.take_over_lock):  # one conversion per OUTPUT
        report = _convert(args)
    print("\n".join(convert_report_lines(report)))
    return 0


def _convert(args: argparse.Namespace) -> dict[str, object]:
    return convert_imagenet(
        args.root,
        args.output,
        val_labels=args.val_labels,
        synset_words=args.synset_words,
        resize_shorter=args.resize_shorter,
        jpeg_quality=args.jpeg_quality,
        row_group_mb=args.row_group_mb,
        num_files=args.num_files,
        overwrite=args.overwrite,
        seed=args.seed,
        train_archive=args.train_archive,
        val_archive=args.val_archive,
        devkit=args.devkit,
        master=args.master,
    )


def main(argv: Sequence[str] | None = None) -> int:
    return job_main(get_args_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
