"""Export a trained model folder as ONNX, and check it with onnxruntime on a split.

    torchonspark onnx --model ./run/model --data ./digits-parquet

writes ``run/model/model.onnx`` (dynamic batch; the input preprocessing.json describes) and, with
``--data``, scores the split with onnxruntime and with torch and says whether they agree. Runs on
this machine, without Spark (``train --onnx`` does the same at the end of a run)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from torchonspark.datasets import fs
from torchonspark.sparkjobs.commandline import OneLineErrorParser, job_main
from torchonspark.sparkjobs.engine.export import check_model_folder
from torchonspark.sparkjobs.engine.onnxexport import check_onnx_installed, export_and_check
from torchonspark.sparkjobs.engine.scoring import dataset_split


def get_args_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="onnx", description="Export a model folder as ONNX (model.onnx) and check it with onnxruntime.")
    parser.add_argument("--model", required=True, help="an exported model folder (RUN/model)")
    parser.add_argument("--data", help="a converted data set: check the ONNX model's top-1 against torch's on --split")
    parser.add_argument("--split", default="val", help="default %(default)s")
    parser.add_argument("--batch-size", type=int, default=64, help="default %(default)s")
    return parser


def run(args: argparse.Namespace) -> int:
    check_onnx_installed()
    model = fs.resolve(args.model)
    check_model_folder(model)
    split_data = dataset_split(fs.resolve(args.data), args.split) if args.data else None
    return export_and_check(model, split_data, args.batch_size, os.cpu_count() or 1, "onnx")


def main(argv: Sequence[str] | None = None) -> int:
    return job_main(get_args_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
