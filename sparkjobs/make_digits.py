"""Write the embedded default data set (scikit-learn's digits) as an ImageNet-style JPEG tree.

    torchonspark make-digits ./digits
    torchonspark convert ./digits ./digits-parquet
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from torchonspark.datasets.digits import DEFAULT_SIZE, make_digits
from torchonspark.sparkjobs.commandline import OneLineErrorParser, job_main


def get_args_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="make_digits",
        description="Write scikit-learn's 1,797 handwritten digits as ROOT/{train,val}/<class>/*.JPEG (80/20, stratified).",
    )
    parser.add_argument("root", metavar="ROOT", help="folder to create (local path or URL)")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help="side of the upscaled images in pixels (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/val split (default %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing ROOT")
    return parser


def run(args: argparse.Namespace) -> int:
    counts = make_digits(args.root, size=args.size, seed=args.seed, overwrite=args.overwrite)
    print(f"{args.root}: {counts['train']} train and {counts['val']} val images of 10 classes, {args.size}x{args.size} JPEG")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return job_main(get_args_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
