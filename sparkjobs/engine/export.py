"""The exported model: what a trained run hands on (CaffeOnSpark's "model export").

    model/weights.pt          the module's state dict (load with torch.load(weights_only=True))
    model/netdef.yaml         the netdef that rebuilds the module (build_resnet --model model/netdef.yaml)
    model/labels.json         index, wnid, name of each class
    model/preprocessing.json  exactly how an image becomes the input (sizes, rounding, interpolation,
                              normalisation), as evaluate and predict do it
    model/model.pt2           a self-contained inference program (torch.export), any batch size:
                              torch.export.load("model.pt2").module()(images) -> logits
    model/README.md           what each file is, and a few lines of torch + OpenCV that run model.pt2
                              on an image with the logits `torchonspark predict` gets

    model/model.onnx          only on request (`train --onnx`, `torchonspark onnx`): onnxexport.py

torch.export rather than TorchScript (deprecated in this torch) as the program every export has:
loading it needs torch alone, and the tests check it reproduces the logits. ONNX needs packages the
training stack does not (the onnx extra), so it is added on request. The folder is written under a
temporary name and renamed, so it appears whole.
"""

from __future__ import annotations

import io
import json
from typing import Any

import torch

from torchonspark.datasets import fs
from torchonspark.datasets.loader import PIXEL_INVERSE_STD, PIXEL_MEAN
from torchonspark.datasets.transforms import EVAL_RESIZE_RATIO, IMAGENET_MEAN, IMAGENET_STD
from torchonspark.netdefs import NetDef, ResNet
from torchonspark.netdefs.config import parse_yaml
from torchonspark.netdefs.netdef import netdef_from_dict
from torchonspark.sparkjobs.engine.checkpoint import load_tensors

REQUIRED_MODEL_FILES = ("weights.pt", "netdef.yaml", "labels.json")  # what rebuilding the module needs
MODEL_FILES = (*REQUIRED_MODEL_FILES, "preprocessing.json", "model.pt2", "README.md")  # what an export writes
MAX_EXPORT_BATCH = 4096


def preprocessing(crop_size: int) -> dict[str, Any]:
    """The evaluation input (EvalTransform, then the loader's normalize_into) in terms that reproduce it
    bit for bit elsewhere: the numbers as the code holds them, the operations by their OpenCV and Python
    names. "Shorter side to 256/224 of the crop" was not enough: a rounded resize size and an unnamed
    interpolation made a hand-written version disagree with evaluate on some images."""
    return {
        "crop_size": crop_size,
        "layout": "NCHW",
        "dtype": "float32",
        "channel_order": "RGB",
        "decode": "cv2.imdecode(numpy.frombuffer(data, numpy.uint8), cv2.IMREAD_COLOR): 3 channels (grey repeated, "
                  "alpha dropped), EXIF orientation applied; BGR, made RGB with cv2.cvtColor(image, cv2.COLOR_BGR2RGB)",
        "crop": "centre",
        "resize_ratio": EVAL_RESIZE_RATIO,
        "centre_square": {
            "side": "min(height, width) / resize_ratio",
            "top": "(height - side) / 2",
            "left": "(width - side) / 2",
            "rows": "round(top) to round(top) + max(1, round(side)), end excluded",
            "columns": "round(left) to round(left) + max(1, round(side)), end excluded",
            "round": "Python's round() of a float64: to the nearest integer, halves to even",
        },
        "resize": {
            "function": "cv2.resize of the uint8 square to crop_size x crop_size (uint8 result)",
            "interpolation": "cv2.INTER_AREA when max(1, round(side)) > crop_size (shrinking), else cv2.INTER_LINEAR",
        },
        "scale": 1 / 255,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "normalize": "(pixel * scale - mean) / std, computed in float32 as (pixel - pixel_mean) * pixel_inverse_std",
        "pixel_mean": PIXEL_MEAN.ravel().tolist(),  # float32(mean) * 255, exact in JSON
        "pixel_inverse_std": PIXEL_INVERSE_STD.ravel().tolist(),  # 1 / (float32(std) * 255)
        "reference": "README.md: the same steps in Python",
    }


# The snippet reads its sizes and numbers from preprocessing.json, so one text serves every model; the test
# runs it from an exported README and compares its logits with predict's.
MODEL_README = """\
# An exported TorchOnSpark model

| file | what it is |
| --- | --- |
| `model.pt2` | the network as a torch.export program (needs torch alone): images, float32 NCHW, batch of 1 to {max_batch} -> logits |
| `weights.pt` | the trained weights, a state dict (`torch.load(path, weights_only=True)`) |
| `netdef.yaml` | the network's definition: `build_resnet --model netdef.yaml` rebuilds it and counts its params and FLOPs |
| `labels.json` | the classes: `index` (the position of its logit), `wnid`, `name` |
| `preprocessing.json` | exactly how an image becomes the input: decoding, centre square, rounding, interpolation, mean and std |
| `README.md` | this file |

With TorchOnSpark installed, `torchonspark predict --model THIS_FOLDER IMAGE|FOLDER|URL...` prints the top
5 classes of each image with their probabilities (`--json`, `--csv` for programs).

Without it, these lines (torch, numpy, opencv-python; run in this folder) give the logits predict gives
for `image.jpg`:

```python
import json, cv2, numpy as np, torch
p, labels = json.load(open("preprocessing.json")), json.load(open("labels.json"))
image = cv2.cvtColor(cv2.imdecode(np.fromfile("image.jpg", np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
h, w, size = *image.shape[:2], p["crop_size"]; side = min(h, w) / p["resize_ratio"]
top, left, n = round((h - side) / 2), round((w - side) / 2), max(1, round(side))
crop = cv2.resize(image[top:top + n, left:left + n], (size, size), interpolation=cv2.INTER_AREA if n > size else cv2.INTER_LINEAR)
x = (crop.transpose(2, 0, 1) - np.float32(p["pixel_mean"])[:, None, None]) * np.float32(p["pixel_inverse_std"])[:, None, None]
logits = torch.export.load("model.pt2").module()(torch.tensor(x[None]))
print(labels[logits.argmax().item()]["name"], logits.softmax(1).max().item())
```

Bit for bit, that is: OpenCV's decoder, not PIL's (their JPEG decoding differs slightly), and a batch
of one, as `torchonspark predict --batch-size 1` (a convolution's last bits can depend on the batch
size). `torch.export.load` may fall back to unpickling, which runs code: load only a model.pt2 you
trust (`torchonspark predict` loads `weights.pt`, tensors only).
"""


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
        "README.md": MODEL_README.format(max_batch=MAX_EXPORT_BATCH).encode(),
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


def is_exported(folder: fs.Location) -> bool:
    """Whether ``folder`` holds a whole export: every file ``export_model`` writes."""
    return all(folder.join(name).exists() for name in MODEL_FILES)


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
    try:
        net.load_state_dict(load_tensors(folder.join("weights.pt")))
    except RuntimeError as error:  # missing, unexpected or misshapen tensors: files of two different models
        reason = str(error).strip().splitlines()[0]
        raise ValueError(f"{folder.join('weights.pt').url} does not fit {source.url} ({reason}): "
                         "export the model again") from None
    labels = json.loads(folder.join("labels.json").read_bytes())
    return net.eval(), netdef, labels


def load_inference_program(folder: fs.Location) -> torch.nn.Module:
    """The exported torch.export program as a callable module: images -> logits."""
    return torch.export.load(io.BytesIO(folder.join("model.pt2").read_bytes())).module()
