"""The top classes of images by an exported model, with their probabilities, on this machine.

    torchonspark predict --model ./run/model photo.jpg ./more-photos/ https://example.org/seven.png

Needs the model folder alone (a path or any URL the filesystem layer reads, hdfs:// included): no Spark,
no data set. One line per image; ``--json`` (JSON lines) and ``--csv`` for programs. A bad input (missing,
unreadable, not an image) is reported with its reason, in the same stream as the answers with --json
and --csv, on stderr otherwise, and the others are still predicted; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import TextIO

from torchonspark.datasets import fs
from torchonspark.sparkjobs.commandline import OneLineErrorParser, job_main
from torchonspark.sparkjobs.engine.predicting import Prediction, find_sources, load_classifier, predict

Writer = Callable[[Prediction], None]


def get_args_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="predict", description="Top classes and their probabilities for images, by an "
                                "exported model, on this machine (no Spark).")
    parser.add_argument("--model", required=True, help="an exported model folder (RUN/model), a path or URL")
    parser.add_argument("inputs", nargs="+", metavar="IMAGE",
                        help="an image file, a folder (its image files, recursively) or a URL "
                             "(file://, hdfs://, http://, https://)")
    parser.add_argument("--top-k", type=int, default=5, help="classes per image (default %(default)s; at most the model's)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default %(default)s)")
    formats = parser.add_mutually_exclusive_group()
    formats.add_argument("--json", action="store_true", help="one JSON object per image (JSON lines)")
    formats.add_argument("--csv", action="store_true", help="CSV with a header, one row per image")
    return parser


def text_writer(out: TextIO, errors: TextIO, top_k: int) -> Writer:
    def write(prediction: Prediction) -> None:
        if prediction.error is not None:
            print(f"predict: {prediction.source}: {prediction.error}", file=errors, flush=True)
            return
        guesses = "  ".join(f"{guess.name} ({guess.probability:.3f})" for guess in prediction.guesses)
        print(f"{prediction.source}: {guesses}", file=out, flush=True)

    return write


def json_writer(out: TextIO, errors: TextIO, top_k: int) -> Writer:
    def write(prediction: Prediction) -> None:
        if prediction.error is not None:
            row: dict[str, object] = {"input": prediction.source, "error": prediction.error}
        else:
            row = {"input": prediction.source, "top": [asdict(guess) for guess in prediction.guesses]}
        print(json.dumps(row), file=out, flush=True)

    return write


def csv_writer(out: TextIO, errors: TextIO, top_k: int) -> Writer:
    """One row per image, its guesses side by side; a failed image has only ``input`` and ``error``."""
    rows = csv.writer(out, lineterminator="\n")
    ranks = range(1, top_k + 1)
    rows.writerow(["input", *(f"{column}_{r}" for r in ranks for column in ("index", "name", "probability")), "error"])
    out.flush()

    def write(prediction: Prediction) -> None:
        guesses = [value for guess in prediction.guesses for value in (guess.index, guess.name, guess.probability)]
        padding = [""] * (3 * top_k - len(guesses))
        rows.writerow([prediction.source, *guesses, *padding, prediction.error or ""])
        out.flush()

    return write


def run(args: argparse.Namespace) -> int:
    if args.top_k < 1 or args.batch_size < 1:
        raise ValueError("--top-k and --batch-size must be at least 1")
    classifier = load_classifier(fs.resolve(args.model))
    top_k = min(args.top_k, len(classifier.labels))
    make_writer = json_writer if args.json else csv_writer if args.csv else text_writer
    write = make_writer(sys.stdout, sys.stderr, top_k)
    failed = 0
    try:
        for prediction in predict(classifier, find_sources(args.inputs), top_k, args.batch_size):
            write(prediction)
            failed += prediction.error is not None
    except BrokenPipeError:
        # The reader stopped (`| head`): stop quietly, as other line tools do, and point stdout at
        # /dev/null so that the interpreter's last flush does not fail once more on the way out.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    return job_main(get_args_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
