"""Checkpoints and weight files: what a checkpoint holds, loading tensors safely, and the checks that
let a run resume only as the run it was.

A checkpoint holds exactly what a restart needs to continue as if nothing happened: the weights, the
optimizer's momentum, the iteration, every rank's RNG state (CPU and CUDA), and the network, workers
and batch it was trained with (they decide the shards and the order of the data).
"""

from __future__ import annotations

import io
import pickle
import re
import time
from typing import Any

import torch
from torch import nn

from torchonspark.datasets import fs
from torchonspark.datasets.hdfs import first_line
from torchonspark.netdefs import NetDef


def load_tensors(location: fs.Location) -> Any:
    """A file written by ``torch.save``, loaded without running code (``weights_only``), on the CPU.
    Anything else is a one-line ValueError naming the file: a pickle that would run code when loaded,
    a truncated file, a file that is not torch's."""
    data = location.read_bytes()
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch names what its safe unpickler refused: a global (a function or class that loading would
        # call: code) or an operand that is not a pickle's at all (not torch's file).
        refused = re.search(r"unsupported GLOBAL (\S+)|Unsupported class (\S+)", str(error))
        if refused:
            raise ValueError(f"{location.url} holds a Python object ({refused.group(1) or refused.group(2)}) that loading "
                             "would run; only tensors and plain values are loaded from checkpoints and weights "
                             "(refused, not run)") from None
        raise ValueError(f"{location.url} is not a file torch.save wrote") from None
    except Exception as error:  # noqa: BLE001 (the unpickler's errors on arbitrary bytes are arbitrary: IndexError...)
        raise ValueError(f"{location.url} is truncated or not a file torch.save wrote ({first_line(error)[:200]})") from None


def newest_loadable(checkpoints: list[fs.Location]) -> tuple[fs.Location, dict[str, Any], list[str]] | None:
    """The newest checkpoint that loads, its state, and a line for each newer one skipped and why;
    None if none loads."""
    skipped = []
    for location in reversed(checkpoints):
        try:
            return location, load_tensors(location), skipped
        except (ValueError, FileNotFoundError) as error:
            skipped.append(f"skipped {location.name}: {error}")
    return None


def checkpoint_state(net: nn.Module, optimizer: torch.optim.Optimizer, iteration: int, epoch: int, rng: list[torch.Tensor],
                     cuda_rng: list[torch.Tensor] | None, world_size: int, batch_size: int, recipe: dict[str, Any],
                     netdef: NetDef) -> dict[str, Any]:
    return {"model": net.state_dict(), "optimizer": optimizer.state_dict(), "iteration": iteration, "epoch": epoch,
            "rng": rng, "cuda_rng": cuda_rng, "world_size": world_size, "batch_size": batch_size, "recipe": recipe,
            "netdef": netdef.to_dict(), "saved_at": time.time()}


def check_resumable(state: dict[str, Any], netdef: NetDef, world_size: int, batch_size: int, max_iter: int, source: str,
                    exported: bool = True) -> None:
    """A resumed run must be the run that was checkpointed: the same network, and the same workers
    and batch; and it must have steps left, or a model still to export (a run whose export failed)."""
    if state["netdef"] != netdef.to_dict():
        raise ValueError(f"--resume: {source} was trained as {state['netdef']}, not {netdef.to_dict()}")
    saved = (state.get("world_size"), state.get("batch_size"))
    if saved != (world_size, batch_size):
        raise ValueError(f"--resume: {source} ran on {saved[0]} workers x {saved[1]} images; resume it with the same "
                         f"(now {world_size} x {batch_size}; fewer processes can compute them as virtual workers)")
    if state["iteration"] >= max_iter and exported:
        raise ValueError(f"--resume: {source} already reached iteration {state['iteration']} of {max_iter} and its model "
                         "is exported; raise --max-iter or --epochs to train further")


def load_initial_weights(net: nn.Module, source: fs.Location) -> list[str]:
    """Start from given weights (CaffeOnSpark's incremental learning): every tensor whose name and
    shape match is loaded; the names of the others (a new classifier, say) are returned."""
    file = source.join("weights.pt") if source.is_dir() else source
    try:
        state = load_tensors(file)
    except FileNotFoundError:
        raise ValueError(f"--weights {source.url}: no such file") from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]  # a checkpoint
    own = net.state_dict()
    matching = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not matching:
        raise ValueError(f"--weights {source.url}: no tensor matches this network")
    net.load_state_dict(matching, strict=False)
    return sorted(set(own) - set(matching))
