"""The seed's comparison table, from run folders (paths or URLs, hdfs:// included):

    torchonspark report ./run-a ./run-b                   Markdown
    torchonspark report ./run-a ./run-b --csv             CSV, for programs
    torchonspark report ./run-a ./run-b --plot runs.png   and their loss and top-1 curves overlaid

One row per run: Model | Top-1 | Top-5 | #Flops (M) | #Params (M) | Description | Iterations | Images/s.
Flops and params are counted in the seed's convention (netdefs/complexity.py) on the network the run
trained (its classes and input size); the description is the netdef's. A run that has not finished is
listed with what it has, and its iterations say so. The CSV also counts each run's restarts and, for
an elastic run, its resizes. No Spark.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from torchonspark.datasets import fs
from torchonspark.netdefs import NetDef, count_complexity
from torchonspark.netdefs.config import parse_yaml
from torchonspark.netdefs.netdef import netdef_from_dict
from torchonspark.sparkjobs.commandline import OneLineErrorParser, job_main
from torchonspark.sparkjobs.engine.runfolder import RunFolder
from torchonspark.sparkjobs.status import RunStatus, read_status

HEADER = ("Model", "Top-1", "Top-5", "#Flops (M)", "#Params (M)", "Description", "Iterations", "Images/s")
CSV_HEADER = ("run", "model", "top1", "top5", "flops_m", "params_m", "description", "iterations", "max_iter",
              "images_per_sec", "state", "restarts", "resizes")


@dataclass(frozen=True)
class Row:
    run: str
    model: str
    top1: float | None
    top5: float | None
    flops: int | None  # seed convention
    params: int | None
    description: str
    iterations: int
    max_iter: int | None
    images_per_sec: float | None
    state: str  # finished, running or stopped
    restarts: int = 0  # the driver's relaunches
    resizes: int = 0  # an elastic run's changes of processes


@cache
def _complexity(netdef: NetDef) -> tuple[int, int]:
    counted = count_complexity(netdef.build())
    return counted.flops, counted.params


def run_row(status: RunStatus, root: fs.Location) -> Row:
    """A run's row, from its status and its netdef (job.json, summary.json or model/netdef.yaml)."""
    model = status.model
    netdef_file = RunFolder(root).model.join("netdef.yaml")
    if model is None and netdef_file.exists():  # a finished run from before job.json
        model = parse_yaml(netdef_file.read_bytes(), netdef_file.url)
    netdef = netdef_from_dict(model, f"{root.url}: model") if model is not None else None
    flops, params = _complexity(netdef) if netdef is not None else (None, None)
    return Row(run=root.url, model=netdef.name if netdef else root.name, top1=status.val_top1, top5=status.val_top5,
               flops=flops, params=params, description=netdef.description if netdef else "", iterations=status.iteration,
               max_iter=status.max_iter, images_per_sec=status.images_per_sec,
               state="finished" if status.finished else status.state, restarts=status.restarts, resizes=len(status.resizes))


def labels(rows: Sequence[Row]) -> list[str]:
    """Each row's model name, and its run folder's name where two rows share a model."""
    shared = Counter(row.model for row in rows)
    return [row.model if shared[row.model] == 1 else f"{row.model} ({fs.resolve(row.run).name})" for row in rows]


def markdown_table(rows: Sequence[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |"]
    for label, row in zip(labels(rows), rows):
        iterations = str(row.iterations)
        if row.state != "finished":
            iterations += f" of {row.max_iter}" if row.max_iter else ""
            iterations += f" ({row.state}, unfinished)"
        cells = (label, _fixed(row.top1, 4), _fixed(row.top5, 4), _fixed(row.flops and row.flops / 1e6, 2),
                 _fixed(row.params and row.params / 1e6, 2), row.description, iterations, _fixed(row.images_per_sec, 0))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_csv(rows: Sequence[Row], out: object) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for label, row in zip(labels(rows), rows):
        writer.writerow([row.run, label, _raw(row.top1), _raw(row.top5), _raw(row.flops and row.flops / 1e6),
                         _raw(row.params and row.params / 1e6), row.description, row.iterations, _raw(row.max_iter),
                         _raw(row.images_per_sec), row.state, row.restarts, row.resizes])


def _fixed(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _raw(value: object) -> object:
    return "" if value is None else value


def get_args_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="report", description="Compare training runs in the seed's table: model, top-1, top-5, "
                                "#Flops, #Params, description, iterations, images/s (from run folders; no Spark).")
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run folders (train --output), paths or URLs")
    parser.add_argument("--csv", action="store_true", help="CSV with a header instead of a Markdown table")
    parser.add_argument("--plot", metavar="FILE.png", help="also draw the runs' training loss and top-1 in one figure")
    return parser


def run(args: argparse.Namespace) -> int:
    if args.plot is not None and not args.plot.lower().endswith(".png"):
        raise ValueError(f"--plot {args.plot}: give a .png file")
    roots = [fs.resolve(url) for url in args.runs]
    statuses = [read_status(root) for root in roots]
    rows = [run_row(status, root) for status, root in zip(statuses, roots)]
    if args.csv:
        write_csv(rows, sys.stdout)
    else:
        print(markdown_table(rows))
    if args.plot is not None:
        from torchonspark.sparkjobs.engine.plots import comparison_figure

        runs = [(label, RunFolder(root).read_metrics()) for label, root in zip(labels(rows), roots)]
        target = fs.resolve(args.plot)
        target.write_bytes_atomically(comparison_figure(runs))
        print(f"report: plot -> {target.url}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return job_main(get_args_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
