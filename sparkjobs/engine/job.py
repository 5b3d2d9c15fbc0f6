"""The train job's description (``TrainJob``), its command-line arguments, and their validation.

One parser serves the Spark driver (``torchonspark train``, ``spark-submit sparkjobs/train_resnet.py``)
and the bare worker (``torchrun -m torchonspark.sparkjobs.train_worker``). ``job_from_args`` checks
everything that can be checked before a worker starts and resolves every input once: the recipe and
its network, the data set's location and labels, the run folder, the initial weights. The job then
travels to every worker as these values. Imports no Spark.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Any

from torchonspark.datasets import fs
from torchonspark.datasets.loader import list_row_groups
from torchonspark.netdefs import NetDef, load_model
from torchonspark.sparkjobs.commandline import OneLineErrorParser, PrintAndExit
from torchonspark.sparkjobs.engine.recipe import Recipe, describe_recipes, load_recipe
from torchonspark.sparkjobs.engine.runfolder import RunFolder
from torchonspark.sparkjobs.engine.tracking import TrackingTarget, tracking_target

DATA_PARTS = ("train", "val", "labels.json")  # what `torchonspark convert` writes and training reads

# Recipe keys a flag may override: (flag, recipe key, type).
OVERRIDES = (
    ("--max-iter", "max_iter", int),
    ("--epochs", "epochs", int),
    ("--batch-size", "batch_size", int),
    ("--base-lr", "base_lr", float),
    ("--seed", "seed", int),
    ("--test-interval", "test_interval", int),
    ("--display", "display", int),
    ("--snapshot", "snapshot", int),
    ("--snapshot-minutes", "snapshot_minutes", float),
    ("--gradient-compression", "gradient_compression", str),
    ("--bucket-cap-mb", "bucket_cap_mb", float),
)


@dataclass(frozen=True)
class TrainJob:
    """Everything a worker needs, resolved once on the driver and pickled to every barrier task."""

    recipe: Recipe  # its model sized for the data's classes
    data: fs.Location  # a converted data set: train/, val/, labels.json
    labels: list[dict[str, Any]]  # the data set's labels.json
    output: fs.Location  # the run folder
    device: str = "cpu"  # "cpu" or "cuda"
    threads: int = 1  # CPU threads for torch and for decoding
    # The run's workers (virtual.py): they decide the global batch, the schedule and the data order,
    # whatever number of processes computes them. None: one per process.
    virtual_workers: int | None = None
    resume: bool = False
    overwrite: bool = False  # replace an existing run folder once this run has finished
    weights: fs.Location | None = None  # initial weights (a state dict file, or an exported model folder)
    tensorboard: bool = True  # rank 0 writes TensorBoard event files in RUN/tb
    mlflow: TrackingTarget | None = None  # rank 0 tracks the run in this MLflow store (train --mlflow)
    task_bound: bool = False  # the workers end with the Spark task that started them (lifeline.py; launch sets it)
    # The driver's newest HDFS delegation tokens and where it puts fresher ones while the run goes on, for
    # runs longer than the tokens live (credentials.py; launch sets them). Never printed.
    tokens: bytes | None = dataclasses.field(default=None, repr=False)
    token_relay: fs.Location | None = None

    @property
    def netdef(self) -> NetDef:
        return self.recipe.model

    def run_folder(self) -> RunFolder:
        """Where this run writes. Replacing an existing run, it trains beside it and is published over
        it at the end (RunFolder.publish): the old run stays whole until the new one is."""
        if self.overwrite and self.output.exists():
            return RunFolder(RunFolder.replacement_of(self.output), publish_to=self.output)
        return RunFolder(self.output)

    def replace(self, **changes: Any) -> TrainJob:
        return dataclasses.replace(self, **changes)


def get_args_parser(prog: str = "train_resnet", spark: bool = True) -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog=prog,
        description="Train a ResNet variant with synchronous SGD on a converted data set"
        + (" (barrier-mode Spark tasks running PyTorch DDP)." if spark else " (one process of a torchrun job)."),
    )
    # --recipe, not only --conf: spark-submit has its own --conf k=v before the job file, and ours sat
    # next to it; --conf still works.
    parser.add_argument("--recipe", "--conf", dest="recipe", required=True, metavar="NAME|FILE",
                        help="training recipe: a packaged one by name (see --list-recipes) or a YAML file")
    parser.add_argument("--list-recipes", action=PrintAndExit, text=describe_recipes, help="list the packaged recipes and exit")
    parser.add_argument("--data", required=True, help="a converted data set: OUTPUT of `torchonspark convert`")
    parser.add_argument("--output", required=True, help="the run folder (local path or URL)")
    parser.add_argument("--resume", action="store_true", help="continue from the run folder's latest checkpoint")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing run folder (once the new run has finished)")
    parser.add_argument("--weights", help="start from these weights (a .pt state dict or an exported model folder)")
    parser.add_argument("--model", help="train this network instead of the recipe's (a conf/models name or a netdef file)")
    for flag, key, kind in OVERRIDES:
        parser.add_argument(flag, type=kind, dest=key, help=f"override the recipe's {key}")
    parser.add_argument("--no-tensorboard", dest="tensorboard", action="store_false",
                        help="write no TensorBoard event files (RUN/tb/)")
    parser.add_argument("--mlflow", action="store_true",
                        help="track the run in MLflow: MLFLOW_TRACKING_URI, or else RUN's parent folder/mlflow.db (the mlflow extra)")
    parser.add_argument("--take-over-lock", action="store_true",
                        help="take the run folder's lock from a job that is gone (the refusal names it)")
    if spark:
        parser.add_argument("--workers", type=int, default=1, help="number of barrier tasks, one DDP process each (default 1)")
        parser.add_argument("--min-workers", type=int, metavar="M",
                            help="go on with as few as M processes when the cluster cannot give every worker a slot (the "
                                 "workers become virtual: the same mathematics, slower); grow back at a checkpoint when "
                                 "slots return (default: --workers, no shrinking)")
        parser.add_argument("--elastic-wait", type=float, default=180, metavar="SECONDS",
                            help="with --min-workers: how long a relaunch waits for every worker's slot before it goes on "
                                 "with fewer (default %(default)g)")
        parser.add_argument("--max-restarts", type=int, default=3,
                            help="relaunches from the newest checkpoint after a lost worker or executor (default %(default)s)")
        parser.add_argument("--stall-timeout", type=float, default=600,
                            help="seconds without a new iteration in metrics.jsonl before a stalled stage is cancelled and "
                                 "relaunched (default %(default)g: above a display interval plus a validation pass and a "
                                 "checkpoint of ImageNet on GPUs)")
        device = parser.add_mutually_exclusive_group()
        device.add_argument("--gpu", action="store_true", help="train on GPUs (default: when Spark schedules GPUs to tasks)")
        device.add_argument("--cpu", action="store_true", help="train on CPUs even where GPUs are scheduled")
        parser.add_argument("--master", help="Spark master when not run by spark-submit (default: local[*])")
        parser.add_argument("--onnx", action="store_true",
                            help="also export model/model.onnx and check it with onnxruntime on the val split (the onnx extra)")
    else:
        parser.add_argument("--virtual-workers", type=int, metavar="V",
                            help="the run's workers, computed by however many processes torchrun starts (1 to V): the "
                                 "same global batch, schedule and data order as V processes (default: one per process)")
        parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="default %(default)s")
        parser.add_argument("--threads", type=int, help="torch and decode threads (default: torch's)")
    return parser


def read_dataset_labels(data: fs.Location) -> list[dict[str, Any]]:
    """A converted data set's labels, after checking it has what training needs."""
    missing = [name for name in DATA_PARTS if not data.join(name).exists()]
    if missing:
        raise ValueError(f"--data {data.url} is not a converted data set (missing {', '.join(missing)}); "
                         "make one with `torchonspark convert`")
    return json.loads(data.join("labels.json").read_bytes())


def check_dataset(data: fs.Location, labels: list[dict[str, Any]], workers: int) -> None:
    """What training needs of the data, checked on the driver before any worker starts: readable
    Parquet, no empty split, a row group for every worker, and labels within labels.json's classes
    (from the Parquet statistics, without reading a row)."""
    for split in DATA_PARTS[:2]:
        groups = list_row_groups(data.join(split))
        if sum(group.rows for group in groups) == 0:
            raise ValueError(f"--data {data.url}: the {split} split is empty; convert the data again")
        if len(groups) < workers:
            raise ValueError(f"--data {data.url}: the {split} split has {len(groups)} row groups, fewer than the {workers} "
                             "workers; use fewer workers or convert again with a larger --num-files")
        ranges = [group.labels for group in groups if group.labels is not None]
        low, high = min((r[0] for r in ranges), default=0), max((r[1] for r in ranges), default=0)
        if low < 0 or high >= len(labels):
            bad = high if high >= len(labels) else low
            raise ValueError(f"--data {data.url}: label {bad} in {split}/ is out of range for the {len(labels)} classes of "
                             "labels.json; the data and its labels.json do not belong together")


def check_output(run: RunFolder, resume: bool, overwrite: bool, weights: str | None) -> None:
    if resume and overwrite:
        raise ValueError("give --resume or --overwrite, not both")
    if resume and weights:
        raise ValueError("--weights starts a new run; a resumed run continues from its own checkpoint (drop one of them)")
    if resume:
        if run.latest_checkpoint() is None:
            raise ValueError(f"--resume: {run.checkpoints.url} holds no checkpoint to resume from")
    elif run.root.exists() and not overwrite:
        raise ValueError(f"--output {run.root.url} already exists; pass --resume to continue it or --overwrite to replace it")


def job_from_args(args: argparse.Namespace, threads: int, device: str, check_output_folder: bool = True) -> TrainJob:
    """Validate everything that can be checked before a worker starts; raise ValueError naming the problem."""
    if threads < 1:
        raise ValueError(f"threads must be at least 1; got {threads}")
    recipe = load_recipe(args.recipe).replace(**{key: getattr(args, key) for _, key, _ in OVERRIDES})
    if args.model:
        try:
            recipe = recipe.replace(model=load_model(args.model))
        except ValueError as error:
            raise ValueError(f"--model: {error}") from None
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    virtual = getattr(args, "virtual_workers", None)
    if virtual is not None and not 1 <= processes <= virtual:
        raise ValueError(f"--virtual-workers {virtual}: give at least as many virtual workers as processes ({processes})")
    data = fs.resolve(args.data)
    labels = read_dataset_labels(data)
    check_dataset(data, labels, getattr(args, "workers", None) or virtual or processes)
    output = fs.resolve(args.output)
    mlflow = tracking_target(output) if args.mlflow else None
    if check_output_folder:
        check_output(RunFolder(output), args.resume, args.overwrite, args.weights)
    weights = fs.resolve(args.weights) if args.weights else None
    if weights is not None and not weights.exists():
        raise ValueError(f"--weights {args.weights}: no such file or folder")
    return TrainJob(
        recipe=recipe.for_classes(len(labels)),
        data=data,
        labels=labels,
        output=output,
        device=device,
        threads=threads,
        virtual_workers=virtual,
        resume=args.resume,
        overwrite=args.overwrite,
        weights=weights,
        tensorboard=args.tensorboard,
        mlflow=mlflow,
    )
