"""The run's figures, drawn with matplotlib's object API (no pyplot: no global state, no backend to
choose, and a figure is freed as soon as it is dropped), returned as PNG bytes for the caller to
write atomically.

``training_figure`` is plots/training.png, the seed's plot: training loss and validation top-1 and
top-5 against iterations, with the learning rate faintly behind the loss, its multistep drops and the
run's restarts and resumes marked; the worker redraws it at every validation. ``comparison_figure``
overlays several runs' curves (``torchonspark report --plot``).

A long run's loss is drawn as at most ``MAX_POINTS`` means of consecutive display lines (the legend
says how many each): the seed's 600k-iteration run has 30,000 display lines, which matplotlib would
take half a second to draw for no visible gain. Validations are drawn as they are.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter

from torchonspark.netdefs.netdef import netdef_from_dict

Record = dict[str, Any]
MAX_POINTS = 1500
ACCURACIES = (("val_top5", "top-5", "C2", "s"), ("val_top1", "top-1", "C1", "o"))  # top-1 drawn last, on top
ACCURACY_RANGE = (-0.02, 1.02)  # 0 to 1, with room for a marker at either end


def training_figure(records: Sequence[Record], job: Record | None) -> bytes:
    """The run's figure from its metrics.jsonl records; ``job``: what the run was started with
    (job.json: model, recipe, max_iter, world_size, starts), or None for a run that has no record of it."""
    figure = Figure(figsize=(9, 6.5), dpi=100, layout="constrained")
    loss_axes, accuracy_axes = figure.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    iterations, losses, rates = _columns(records, ("loss", "lr"))
    (x, loss, rate), each = thin(iterations, losses, rates)
    loss_axes.plot(x, loss, color="C0", linewidth=1.2, label="training loss" + _thinned(each))
    loss_axes.set_ylim(bottom=0)
    loss_axes.set_ylabel("training loss")
    rate_axes = loss_axes.twinx()
    rate_axes.plot(x, rate, color="0.6", linewidth=0.8, label="learning rate (right axis)")
    rate_axes.set_ylim(bottom=0)
    rate_axes.set_ylabel("learning rate", color="0.45")
    rate_axes.tick_params(axis="y", colors="0.45")
    _plot_accuracies(accuracy_axes, records)
    accuracy_axes.set_ylim(*ACCURACY_RANGE)
    accuracy_axes.set_ylabel("validation accuracy (centre crop)")
    accuracy_axes.set_xlabel("iteration")
    accuracy_axes.xaxis.set_major_formatter(EngFormatter(sep=""))  # 150k, as the seed's tutorial wrote them
    max_iter = job.get("max_iter") if job else None
    for step, rate_after in lr_drops(job, max_iter) if job else []:
        _mark(loss_axes, accuracy_axes, step, f"lr {rate_after:g}", "0.35", ":")
    for iteration, kind in interruptions(records, job.get("starts", []) if job else []):
        _mark(loss_axes, accuracy_axes, iteration, kind, "C3", "--")
    if max_iter:  # a live run is drawn against its whole length
        accuracy_axes.set_xlim(0, max_iter)
    else:
        accuracy_axes.set_xlim(left=0)
    handles, labels = loss_axes.get_legend_handles_labels()
    more_handles, more_labels = rate_axes.get_legend_handles_labels()
    loss_axes.legend(handles + more_handles, labels + more_labels, loc="center right", fontsize=8)  # clear of the marks' labels
    for axes in (loss_axes, accuracy_axes):
        axes.grid(True, alpha=0.3)
    figure.suptitle(run_title(job) if job else "training loss and validation accuracy", fontsize=10)
    return _png(figure)


def comparison_figure(runs: Sequence[tuple[str, Sequence[Record]]]) -> bytes:
    """Several runs' training loss and validation top-1 on shared axes, one colour per run."""
    figure = Figure(figsize=(9, 6.5), dpi=100, layout="constrained")
    loss_axes, accuracy_axes = figure.subplots(2, 1, sharex=True, height_ratios=(1, 1))
    for index, (label, records) in enumerate(runs):
        colour = f"C{index % 10}"
        iterations, losses = _columns(records, ("loss",))
        (x, loss), each = thin(iterations, losses)
        loss_axes.plot(x, loss, color=colour, linewidth=1.2, label=label + _thinned(each))
        points = [(r["iteration"], r["val_top1"]) for r in records if r.get("val_top1") is not None]
        if points:
            accuracy_axes.plot(*zip(*points), color=colour, marker="o" if len(points) <= 60 else None, markersize=4,
                               label=f"{label} (last {points[-1][1]:.4f})")
    loss_axes.set_ylim(bottom=0)
    loss_axes.set_ylabel("training loss")
    accuracy_axes.set_ylim(*ACCURACY_RANGE)
    accuracy_axes.set_xlim(left=0)
    accuracy_axes.set_ylabel("validation top-1 (centre crop)")
    accuracy_axes.set_xlabel("iteration")
    accuracy_axes.xaxis.set_major_formatter(EngFormatter(sep=""))
    for axes in (loss_axes, accuracy_axes):
        axes.grid(True, alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=8, loc="upper right" if axes is loss_axes else "lower right")
    figure.suptitle("training loss and validation top-1", fontsize=10)
    return _png(figure)


def run_title(job: Record) -> str:
    """The model and the recipe in two lines, e.g. ``resnet_50 (bottleneck, 3 4 6 3, 256)`` over
    ``SGD lr 0.1, ÷10 at 150k 300k 450k; 16 × 16 images per step; 600k iterations``."""
    netdef = netdef_from_dict(job["model"], "job.json: model")
    recipe = _resolved(job)
    schedule = recipe["lr_policy"]
    if schedule == "multistep" and recipe.get("stepvalue"):
        factor = f"÷{1 / recipe['gamma']:g}" if recipe["gamma"] < 1 else f"×{recipe['gamma']:g}"
        schedule = f"{factor} at {' '.join(_short(step) for step in recipe['stepvalue'])}"
    warmup = f", warm-up {_short(recipe['warmup_iters'])}" if recipe.get("warmup_iters") else ""
    batch = (f"{job['world_size']} × {recipe['batch_size']} images per step" if job.get("world_size")
             else f"{recipe['batch_size']} images per worker and step")
    length = f"; {_short(job['max_iter'])} iterations" if job.get("max_iter") else ""
    return f"{netdef.name} ({netdef.description})\nSGD lr {recipe['base_lr']:g}, {schedule}{warmup}; {batch}{length}"


def _resolved(job: Record) -> Record:
    """The recipe with the run's resolved schedule over it (job.json's ``schedule``: the rate at the
    run's global batch, warm-up and steps in iterations), where the run recorded one."""
    return {**job["recipe"], **job.get("schedule", {})}


def lr_drops(job: Record, max_iter: int | None) -> list[tuple[int, float]]:
    """(iteration, rate from there on) of each multistep drop within the run."""
    recipe = _resolved(job)
    if recipe.get("lr_policy") != "multistep":
        return []
    steps = [step for step in recipe.get("stepvalue", ()) if max_iter is None or step < max_iter]
    return [(step, recipe["base_lr"] * recipe["gamma"] ** (n + 1)) for n, step in enumerate(steps)]


def interruptions(records: Sequence[Record], starts: Sequence[Record]) -> list[tuple[int, str]]:
    """(iteration, label) of each interruption: the driver's relaunches ("restart", from the restart
    records of metrics.jsonl), an elastic run's changes of processes ("2→1 processes", its resize
    records), and the run's other starts after its first (job.json), those by hand ("resume")."""
    marks: dict[int, list[str]] = {}
    for record in records:
        if record.get("event") == "restart":
            marks.setdefault(record["iteration"], []).append("restart")
        elif record.get("event") == "resize":
            marks.setdefault(record["iteration"], []).append(f"{record['from']}→{record['to']} processes")
    for start in starts[1:]:
        marks.setdefault(start["iteration"], ["resume"])
    return sorted((iteration, ", ".join(labels)) for iteration, labels in marks.items())


def thin(iterations: np.ndarray, *series: np.ndarray, max_points: int = MAX_POINTS) -> tuple[tuple[np.ndarray, ...], int]:
    """The iterations and each series as at most ``max_points`` means of consecutive points (a value
    that is not a number, a diverged loss, is left out of its mean), and how many points each mean has."""
    count = len(iterations)
    each = max(1, -(-count // max_points))
    if each == 1:
        return (iterations, *series), 1
    padding = (-count) % each
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a bucket of nothing but NaN stays NaN: a gap
        means = tuple(np.nanmean(np.concatenate([column, np.full(padding, np.nan)]).reshape(-1, each), axis=1)
                      for column in (iterations, *series))
    return means, each


def _columns(records: Sequence[Record], keys: Sequence[str]) -> tuple[np.ndarray, ...]:
    """The iterations of the display records and their ``keys``, as float arrays (null as NaN)."""
    rows = [record for record in records if "loss" in record]
    columns = [[record["iteration"] for record in rows]]
    columns += [[record.get(key) for record in rows] for key in keys]
    return tuple(np.array([np.nan if value is None else value for value in column], dtype=float) for column in columns)


def _plot_accuracies(axes: Axes, records: Sequence[Record]) -> None:
    for key, name, colour, marker in ACCURACIES:
        points = [(r["iteration"], r[key]) for r in records if r.get(key) is not None]
        if points:
            axes.plot(*zip(*points), color=colour, marker=marker if len(points) <= 60 else None, markersize=4,
                      linewidth=1.2, label=f"validation {name} (last {points[-1][1]:.4f})")
    handles, labels = axes.get_legend_handles_labels()
    if handles:
        axes.legend(handles[::-1], labels[::-1], loc="lower right", fontsize=8)  # top-1 first


def _mark(top: Axes, bottom: Axes, iteration: int, label: str, colour: str, style: str) -> None:
    """A vertical line through both panels, labelled at the top."""
    for axes in (top, bottom):
        axes.axvline(iteration, color=colour, linestyle=style, linewidth=1)
    top.text(iteration, 0.98, f" {label}", transform=top.get_xaxis_transform(), rotation=90, va="top", ha="right",
             fontsize=7, color=colour)


def _thinned(each: int) -> str:
    return f" (mean of {each} display lines)" if each > 1 else ""


def _short(iterations: int) -> str:
    return f"{iterations // 1000}k" if iterations >= 1000 and iterations % 1000 == 0 else str(iterations)


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
