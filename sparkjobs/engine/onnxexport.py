"""An exported model as ONNX (``model/model.onnx``), for serving stacks that run ONNX rather than
torch, and its check with onnxruntime against the torch module on a split.

The network is the one ``evaluate`` and ``predict`` rebuild from ``weights.pt`` and ``netdef.yaml``,
exported with torch's own exporter (``torch.onnx.export(dynamo=True)``: the torch.export program
translated by onnxscript) with a dynamic batch size; its input is what ``preprocessing.json``
describes. The packages it needs (onnx, onnxscript, onnxruntime) are the ``onnx`` extra: the
training stack does not need them. Imports no Spark."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import sys
import tempfile
from typing import Any

import numpy as np
import torch

from torchonspark.datasets import fs
from torchonspark.sparkjobs.engine.export import MAX_EXPORT_BATCH, load_model_folder
from torchonspark.sparkjobs.engine.scoring import shard_batches

ONNX_FILE = "model.onnx"
ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")


def check_onnx_installed() -> None:
    """Refuse in one line, before any work, when the onnx extra is not installed."""
    missing = [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise ValueError(f"ONNX export needs {', '.join(missing)}: install the onnx extra "
                         "(in this repository: .venv/bin/pip install -e '.[onnx]'; elsewhere: pip install onnx onnxscript onnxruntime)")


def export_onnx(folder: fs.Location) -> fs.Location:
    """Write ``folder/model.onnx`` (whole or not at all) from the model folder's module."""
    check_onnx_installed()
    net, netdef, _ = load_model_folder(folder)
    batch = torch.export.Dim("batch", min=1, max=MAX_EXPORT_BATCH)
    example = torch.zeros(2, 3, netdef.input_size, netdef.input_size)
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter narrates each of its steps on stdout
        program = torch.onnx.export(net, (example,), dynamo=True, dynamic_shapes=({0: batch},), verbose=False)
    with tempfile.TemporaryDirectory() as work:  # onnx saves to a path; the target may be on HDFS
        path = os.path.join(work, ONNX_FILE)
        program.save(path)
        with open(path, "rb") as saved:
            data = saved.read()
    target = folder.join(ONNX_FILE)
    target.write_bytes_atomically(data)
    return target


def check_onnx(folder: fs.Location, split_data: fs.Location, batch_size: int = 64, threads: int = 1) -> dict[str, Any]:
    """Score the split with the torch module and with onnxruntime on ``model.onnx``: top-1 of each,
    how many images get the same top-1 class, and the largest difference of a logit."""
    import onnxruntime

    net, batches = shard_batches(folder, split_data, 0, 1, batch_size, threads)  # evaluate's own reading of a split
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(folder.join(ONNX_FILE).read_bytes(), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    images = torch_hits = onnx_hits = same = 0
    largest = 0.0
    with torch.no_grad():
        for batch, labels, _ in batches:
            ours = net(batch).numpy()
            theirs = session.run(None, {name: batch.numpy()})[0]
            labels = labels.numpy()
            images += len(labels)
            torch_hits += int((ours.argmax(1) == labels).sum())
            onnx_hits += int((theirs.argmax(1) == labels).sum())
            same += int((ours.argmax(1) == theirs.argmax(1)).sum())
            largest = max(largest, float(np.abs(ours - theirs).max()))
    return {"images": images, "torch_top1": torch_hits / images, "onnx_top1": onnx_hits / images, "same_top1": same,
            "max_logit_difference": largest}


def export_and_check(model: fs.Location, split_data: fs.Location | None, batch_size: int, threads: int, prog: str) -> int:
    """Write model.onnx and, given a split, check it there; the exit status: 1 when onnxruntime's top-1
    class differs from torch's for any image."""
    target = export_onnx(model)
    print(f"ONNX model -> {target.url}")
    if split_data is None:
        return 0
    result = check_onnx(model, split_data, batch_size, threads)
    print(check_line(result, split_data.name))
    if result["same_top1"] != result["images"]:
        print(f"{prog}: onnxruntime's top-1 class differs from torch's on some {split_data.name} images", file=sys.stderr)
        return 1
    return 0


def check_line(result: dict[str, Any], split: str) -> str:
    return (f"onnxruntime on {split}: top-1 {result['onnx_top1']:.4f} (torch {result['torch_top1']:.4f}), "
            f"the same class for {result['same_top1']}/{result['images']} images, logits within "
            f"{result['max_logit_difference']:.1e}")
