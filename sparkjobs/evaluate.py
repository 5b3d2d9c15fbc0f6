"""Top-1 / top-5 centre-crop accuracy of an exported model on a split, in parallel on the cluster,
and where it goes wrong.

    torchonspark evaluate --model ./run/model --data ./digits-parquet --output ./eval.json

writes three files:

    eval.json                 top-1, top-5, images; per class (images, correct top-1, top-1) and the
                              confusion matrix (rows: the label, columns: the top-1 prediction)
    eval.confusion.png        the confusion matrix as a heat map (each row as fractions of its class)
    eval.misclassified.csv    each misclassified image: path, label and prediction (index, wnid,
                              name), the prediction's probability; the most confident first

Each Spark task scores one shard of the split (row groups i mod N) and returns its confusion matrix,
top-5 hits and misclassified images; the driver adds them, so the result is exact over every image.
The PNG and the CSV are written first and the JSON last, each under a temporary name and renamed:
a JSON that is there means its two companions are whole.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import operator
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial, reduce
from typing import Any

import numpy as np

from pyspark.sql import SparkSession

from torchonspark.datasets import fs
from torchonspark.sparkjobs.cluster.session import spark_session, task_cpus
from torchonspark.sparkjobs.cluster.shards import on_shards, shard_count
from torchonspark.sparkjobs.commandline import OneLineErrorParser, job_main
from torchonspark.sparkjobs.engine.export import check_model_folder
from torchonspark.sparkjobs.engine.scoring import Mistake, ShardScore, dataset_split, score_shard


def add_scoring_arguments(parser: argparse.ArgumentParser, output_help: str) -> argparse.ArgumentParser:
    """The arguments of the jobs that apply an exported model to a split (evaluate, features)."""
    parser.add_argument("--model", required=True, help="an exported model folder (RUN/model)")
    parser.add_argument("--data", required=True, help="a converted data set")
    parser.add_argument("--output", required=True, help=output_help)
    parser.add_argument("--split", default="val", help="default %(default)s")
    parser.add_argument("--workers", type=int, help="Spark tasks, one shard each (default: one per core)")
    parser.add_argument("--batch-size", type=int, default=64, help="default %(default)s")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    parser.add_argument("--master", help="Spark master when not run by spark-submit (default: local[*])")
    return parser


def check_scoring_arguments(args: argparse.Namespace) -> tuple[fs.Location, fs.Location, fs.Location]:
    """The model folder, the split and the output, checked before Spark starts (a mistake costs a
    second, not a session)."""
    if args.workers is not None and args.workers < 1 or args.batch_size < 1:
        raise ValueError("--workers and --batch-size must be at least 1")
    model = fs.resolve(args.model)
    check_model_folder(model)
    data = fs.resolve(args.data)
    check_same_classes(model, data)
    split_data = dataset_split(data, args.split)
    output = fs.resolve(args.output)
    fs.refuse_existing(output, args.overwrite, "--output")
    return model, split_data, output


def check_same_classes(model: fs.Location, data: fs.Location) -> None:
    """The model's classes must be the data's, in the same order: a label is an index into both
    labels.json files. The same wnids in another order are refused, not remapped: convert sorts the
    wnids, so another order means a data set from another tool or a hand-edited file, whose labels
    cannot be trusted to follow its labels.json either."""
    if not data.join("labels.json").exists():
        raise ValueError(f"--data {data.url} has no labels.json: is it the OUTPUT of `torchonspark convert`?")
    ours = [entry["wnid"] for entry in json.loads(model.join("labels.json").read_bytes())]
    theirs = [entry["wnid"] for entry in json.loads(data.join("labels.json").read_bytes())]
    if ours == theirs:
        return
    if sorted(ours) == sorted(theirs):
        raise ValueError(f"--model {model.url} and --data {data.url} have the same {len(ours)} classes in another order "
                         "(labels.json); the labels would be compared wrongly")
    missing, extra = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
    raise ValueError(f"--model {model.url} was trained on {len(ours)} classes and --data {data.url} has {len(theirs)}: "
                     f"{len(missing)} of the model's are not in the data (e.g. {missing[:3]}), {len(extra)} of the data's "
                     f"are not in the model (e.g. {extra[:3]})")


MISCLASSIFIED_COLUMNS = ("path", "label", "label_wnid", "label_name", "predicted", "predicted_wnid", "predicted_name",
                         "probability")
FEW_CLASSES = 30  # up to this many, the heat map names every class; up to PER_CELL_COUNTS, it shows the counts
PER_CELL_COUNTS = 20


@dataclass
class Evaluation:
    """What evaluate writes: the summary (--output, JSON) and the misclassified images (its CSV)."""

    summary: dict[str, Any]
    misclassified: list[dict[str, Any]]


def _score_task(model: fs.Location, split_data: fs.Location, batch_size: int, threads: int, rank: int, world_size: int):
    yield score_shard(model, split_data, rank, world_size, batch_size, threads)


def score_split(spark: SparkSession, model: fs.Location, split_data: fs.Location, workers: int | None = None,
                batch_size: int = 64) -> Evaluation:
    """The model folder ``model`` over the split folder ``split_data``: the summary and the misclassified images."""
    check_model_folder(model)
    workers = shard_count(spark, split_data, workers)
    task = partial(_score_task, model, split_data, batch_size, task_cpus(spark))
    score: ShardScore = reduce(operator.add, on_shards(spark, workers, f"evaluate {model.url} on {split_data.url}", task).collect())
    labels = json.loads(model.join("labels.json").read_bytes())
    summary = {
        "model": model.url,
        "data": split_data.parent().url,
        "split": split_data.name,
        "images": score.images,
        "top1": score.top1 / score.images,
        "top5": score.top5 / score.images,
        "correct_top1": score.top1,
        "correct_top5": score.top5,
        "workers": workers,
        "per_class": per_class(score.confusion, labels),
        "confusion": score.confusion.tolist(),
    }
    mistakes = sorted(score.misclassified, key=lambda mistake: (-mistake.probability, mistake.path))
    return Evaluation(summary, [misclassified_row(mistake, labels) for mistake in mistakes])


def evaluate(spark: SparkSession, model: fs.Location, split_data: fs.Location, workers: int | None = None,
             batch_size: int = 64) -> dict[str, Any]:
    """Top-1/top-5, per class and the confusion matrix of the model folder ``model`` over the split
    folder ``split_data`` (the summary of ``score_split``)."""
    return score_split(spark, model, split_data, workers, batch_size).summary


def per_class(confusion: np.ndarray, labels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Images and top-1 of each class, from the confusion matrix (its diagonal over its row sums);
    top-1 is null for a class the split has no image of."""
    images, correct = confusion.sum(axis=1), np.diagonal(confusion)
    return [{"index": entry["index"], "wnid": entry["wnid"], "name": entry["name"], "images": int(images[i]),
             "correct_top1": int(correct[i]), "top1": float(correct[i] / images[i]) if images[i] else None}
            for i, entry in enumerate(labels)]


def misclassified_row(mistake: Mistake, labels: list[dict[str, Any]]) -> dict[str, Any]:
    label, predicted = labels[mistake.label], labels[mistake.predicted]
    return dict(zip(MISCLASSIFIED_COLUMNS, (mistake.path, mistake.label, label["wnid"], label["name"], mistake.predicted,
                                            predicted["wnid"], predicted["name"], round(mistake.probability, 6))))


def companion_files(output: fs.Location) -> tuple[fs.Location, fs.Location]:
    """The heat map and the CSV written beside --output: ``<output without .json>.confusion.png``
    and ``….misclassified.csv``."""
    stem = output.name[: -len(".json")] if output.name.endswith(".json") else output.name
    return output.parent().join(f"{stem}.confusion.png"), output.parent().join(f"{stem}.misclassified.csv")


def refuse_existing_companions(output: fs.Location, overwrite: bool) -> None:
    """The PNG and the CSV are outputs too: refused, as --output is, unless --overwrite."""
    heat_map, table = companion_files(output)
    fs.refuse_existing(heat_map, overwrite, "--output's confusion matrix")
    fs.refuse_existing(table, overwrite, "--output's misclassified images")


def write_evaluation(evaluation: Evaluation, output: fs.Location) -> tuple[fs.Location, fs.Location]:
    """The heat map and the CSV, then the JSON at ``output``, each written whole. An old JSON is
    removed first, so that until the new one is there no JSON stands beside a half-replaced set."""
    heat_map, table = companion_files(output)
    if output.exists():
        output.fs.delete_file(output.path)
    summary = evaluation.summary
    title = f"{summary['split']}: top-1 {summary['top1']:.4f} over {summary['images']} images"
    heat_map.write_bytes_atomically(confusion_png(np.array(summary["confusion"], dtype=np.int64), summary["per_class"], title))
    table.write_text_atomically(misclassified_csv(evaluation.misclassified))
    output.write_text_atomically(summary_json(summary))
    return heat_map, table


def summary_json(summary: dict[str, Any]) -> str:
    """The summary as indented JSON, but a class or a row of the confusion matrix on one line (a
    1000-class matrix would otherwise be a million lines)."""
    def value(item: Any) -> str:
        if isinstance(item, list) and item and isinstance(item[0], (list, dict)):
            return "[\n    " + ",\n    ".join(json.dumps(row) for row in item) + "\n  ]"
        return json.dumps(item)

    return "{\n" + ",\n".join(f"  {json.dumps(key)}: {value(item)}" for key, item in summary.items()) + "\n}\n"


def misclassified_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=MISCLASSIFIED_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def confusion_png(confusion: np.ndarray, classes: list[dict[str, Any]], title: str) -> bytes:
    """The confusion matrix as a heat map, each row as fractions of its class (so that a small class
    shows its errors as plainly as a large one), on a square-root scale (so that 1 error in 50 still
    shows); class names and per-cell counts only when they fit."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.colors import PowerNorm

    count = len(classes)
    rows = confusion.sum(axis=1, keepdims=True)
    fractions = np.divide(confusion, rows, out=np.zeros(confusion.shape), where=rows > 0)
    side = min(12.0, max(5.0, 0.45 * count + 2))
    dpi = max(100, math.ceil(1.5 * count / side))  # a pixel or more per class: a cell is never resampled away
    figure, axes = plt.subplots(figsize=(side + 1.5, side), dpi=dpi)
    image = axes.imshow(fractions, cmap="Blues", norm=PowerNorm(0.5, vmin=0, vmax=1), interpolation="nearest")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="fraction of the true class")
    if count <= FEW_CLASSES:
        names = [entry["name"][:20] for entry in classes]
        axes.set_xticks(range(count), names, rotation=90)
        axes.set_yticks(range(count), names)
    if count <= PER_CELL_COUNTS:
        for (row, column), cell in np.ndenumerate(confusion):
            if cell:
                axes.text(column, row, str(cell), ha="center", va="center", fontsize=8,
                          color="white" if fractions[row, column] > 0.4 else "black")
    axes.set_xlabel("predicted (top-1)")
    axes.set_ylabel("true label")
    axes.set_title(title)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def get_args_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="evaluate", description="Top-1/top-5 centre-crop accuracy of an exported model on a split, per class, "
                                "with its confusion matrix and misclassified images.")
    return add_scoring_arguments(parser, "where to write the result (JSON); beside it go NAME.confusion.png and "
                                         "NAME.misclassified.csv")


def run(args: argparse.Namespace) -> int:
    model, split_data, output = check_scoring_arguments(args)
    refuse_existing_companions(output, args.overwrite)
    with spark_session("torchonspark evaluate", args.master) as spark:
        evaluation = score_split(spark, model, split_data, args.workers, args.batch_size)
    heat_map, table = write_evaluation(evaluation, output)
    result = evaluation.summary
    print(f"{args.split}: top-1 {result['top1']:.4f}, top-5 {result['top5']:.4f} over {result['images']} images -> "
          f"{output.url}; confusion matrix -> {heat_map.url}; {len(evaluation.misclassified)} misclassified -> {table.url}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return job_main(get_args_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
