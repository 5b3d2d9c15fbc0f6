"""The train job's arguments, shared by the Spark driver (``torchonspark train``, ``spark-submit
sparkjobs/train_resnet.py``) and the bare worker (``torchrun -m torchonspark.sparkjobs.train_worker``),
and their validation into a ``TrainJob``, done before any worker starts. Does not import pyspark."""

from __future__ import annotations

import argparse
import json

from torchonspark.datasets import fs
from torchonspark.netdefs.cli import OneLineErrorParser
from torchonspark.sparkjobs.recipe import load_recipe
from torchonspark.sparkjobs.runfolder import RunFolder
from torchonspark.sparkjobs.train_worker import TrainJob

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
)


def get_args_parser(prog: str = "train_resnet", spark: bool = True) -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog=prog,
        description="Train a ResNet variant with synchronous SGD on a converted data set"
        + (" (barrier-mode Spark tasks running PyTorch DDP)." if spark else " (one process of a torchrun job)."),
    )
    parser.add_argument("--conf", required=True, help="training recipe (YAML), e.g. conf/digits.yaml")
    parser.add_argument("--data", required=True, help="a converted data set: OUTPUT of `torchonspark convert`")
    parser.add_argument("--output", required=True, help="the run folder (local path or URL)")
    parser.add_argument("--resume", action="store_true", help="continue from the run folder's latest checkpoint")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    parser.add_argument("--weights", help="start from these weights (a .pt state dict or an exported model folder)")
    for flag, key, kind in OVERRIDES:
        parser.add_argument(flag, type=kind, dest=key, help=f"override the recipe's {key}")
    if spark:
        parser.add_argument("--workers", type=int, default=1, help="number of barrier tasks, one DDP process each (default 1)")
        device = parser.add_mutually_exclusive_group()
        device.add_argument("--gpu", action="store_true", help="train on GPUs (default: when Spark schedules GPUs to tasks)")
        device.add_argument("--cpu", action="store_true", help="train on CPUs even where GPUs are scheduled")
        parser.add_argument("--master", help="Spark master when not run by spark-submit (default: local[*])")
    else:
        parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="default %(default)s")
        parser.add_argument("--threads", type=int, help="torch and decode threads (default: torch's)")
    return parser


def check_data(data_url: str) -> list[dict]:
    """The data set's labels, after checking it has what training needs."""
    data = fs.resolve(data_url)
    missing = [name for name in ("train", "val", "labels.json") if not data.join(name).exists()]
    if missing:
        raise ValueError(f"--data {data_url} is not a converted data set (missing {', '.join(missing)}); "
                         "make one with `torchonspark convert`")
    return json.loads(data.join("labels.json").read_bytes())


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
    recipe = load_recipe(args.conf).replace(**{key: getattr(args, key) for _, key, _ in OVERRIDES})
    labels = check_data(args.data)
    if check_output_folder:
        check_output(RunFolder(args.output), args.resume, args.overwrite, args.weights)
    if args.weights and not fs.resolve(args.weights).exists():
        raise ValueError(f"--weights {args.weights}: no such file or folder")
    if threads < 1:
        raise ValueError(f"threads must be at least 1; got {threads}")
    return TrainJob(
        recipe=recipe,
        netdef=recipe.netdef(num_classes=len(labels)),
        data_url=args.data,
        output_url=args.output,
        device=device,
        threads=threads,
        resume=args.resume,
        overwrite=args.overwrite,
        weights=args.weights,
    )
