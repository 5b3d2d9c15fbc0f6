"""The exported model: what a trained run hands on (CaffeOnSpark's "model export").

    model/weights.pt          the module's state dict (load with torch.load(weights_only=True))
    model/netdef.yaml         the netdef that rebuilds the module (build_resnet --model model/netdef.yaml)
    model/labels.json         index, wnid, name of each class
    model/preprocessing.json  how to turn an image into the input the logits were trained on
    model/model.pt2           a self-contained inference program (torch.export), any batch size:
                              torch.export.load("model.pt2").module()(images) -> logits

torch.export rather than TorchScript (deprecated in this torch) or ONNX (needs packages the stack
does not have to verify): loading it needs torch alone, and the tests check it reproduces the logits.
The folder is written under a temporary name and renamed, so it appears whole.
"""

from __future__ import annotations

import io
import json
from typing import Any

import torch

from torchonspark.datasets import fs
from torchonspark.datasets.transforms import EVAL_RESIZE_RATIO, IMAGENET_MEAN, IMAGENET_STD
from torchonspark.netdefs import NetDef, ResNet
from torchonspark.netdefs.config import parse_yaml
from torchonspark.netdefs.netdef import netdef_from_dict
from torchonspark.sparkjobs.engine.checkpoint import load_tensors

REQUIRED_MODEL_FILES = ("weights.pt", "netdef.yaml", "labels.json")  # what rebuilding the module needs
MODEL_FILES = (*REQUIRED_MODEL_FILES, "preprocessing.json", "model.pt2")  # what an export writes
MAX_EXPORT_BATCH = 4096


def preprocessing(crop_size: int) -> dict[str, Any]:
    return {
        "input": "RGB, float32, NCHW, (pixel / 255 - mean) / std",
        "crop_size": crop_size,
        "resize_shorter_side_to": round(crop_size * EVAL_RESIZE_RATIO),
        "crop": "centre",
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
    }


def export_model(net: ResNet, netdef: NetDef, labels: list[dict[str, Any]], target: fs.Location) -> fs.Location:
    """Write the model folder at ``target`` (replacing one that is there)."""
    cpu_net = netdef.build()
    cpu_net.load_state_dict({key: value.detach().float().cpu() for key, value in net.state_dict().items()})
    cpu_net.eval()
    example = torch.zeros(2, 3, netdef.input_size, netdef.input_size)
    batch = torch.export.Dim("batch", min=1, max=MAX_EXPORT_BATCH)
    program = torch.export.export(cpu_net, (example,), dynamic_shapes=({0: batch},))
    contents = {
        "weights.pt": _saved(cpu_net.state_dict()),
        "netdef.yaml": netdef.to_yaml().encode(),
        "labels.json": (json.dumps(labels, indent=1) + "\n").encode(),
        "preprocessing.json": (json.dumps(preprocessing(netdef.input_size), indent=1) + "\n").encode(),
        "model.pt2": _saved_program(program),
    }
    with fs.building(target) as temporary:
        for name, data in contents.items():
            temporary.join(name).write_bytes(data)
    return target


def _saved(value: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def _saved_program(program: torch.export.ExportedProgram) -> bytes:
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    return buffer.getvalue()


def check_model_folder(folder: fs.Location) -> None:
    """Refuse a folder that is not an exported model, naming what it lacks."""
    missing = [name for name in REQUIRED_MODEL_FILES if not folder.join(name).exists()]
    if missing:
        raise ValueError(f"--model {folder.url} is not an exported model folder (RUN/model of `torchonspark train`): "
                         f"no {', '.join(missing)}")


def load_model_folder(folder: fs.Location) -> tuple[ResNet, NetDef, list[dict[str, Any]]]:
    """Rebuild the trained module from an exported model folder (eval mode, on the CPU)."""
    check_model_folder(folder)
    source = folder.join("netdef.yaml")
    netdef = netdef_from_dict(parse_yaml(source.read_bytes(), source.url), source.url)
    net = netdef.build()
    net.load_state_dict(load_tensors(folder.join("weights.pt")))
    labels = json.loads(folder.join("labels.json").read_bytes())
    return net.eval(), netdef, labels


def load_inference_program(folder: fs.Location) -> torch.nn.Module:
    """The exported torch.export program as a callable module: images -> logits."""
    return torch.export.load(io.BytesIO(folder.join("model.pt2").read_bytes())).module()
