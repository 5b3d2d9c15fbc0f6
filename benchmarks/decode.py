"""Which JPEG decoder is fastest on this CPU, one thread: images/s per library and the ratio to Pillow.

    .venv/bin/python benchmarks/decode.py [--images 500]

simplejpeg is measured when installed (`make bench-deps` installs it).
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torchvision.io
from PIL import Image
from synthetic_imagenet import jpeg_files, make_tree


def decoders():
    found = {
        "pillow": lambda data: np.asarray(Image.open(io.BytesIO(data)).convert("RGB")),
        "opencv": lambda data: cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB),
        "torchvision.io": lambda data: torchvision.io.decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8)),
    }
    try:
        import simplejpeg

        found["simplejpeg"] = lambda data: simplejpeg.decode_jpeg(data, colorspace="RGB")
    except ImportError:
        print("simplejpeg: not installed (make bench-deps)")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--tree", type=Path, default=Path(tempfile.gettempdir()) / "torchonspark-bench-tree")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    files = jpeg_files(make_tree(args.tree, args.images))[: args.images]
    payloads = [path.read_bytes() for path in files]
    rates = {}
    for name, decode in decoders().items():
        decode(payloads[0])
        started = time.perf_counter()
        for data in payloads:
            decode(data)
        rates[name] = len(payloads) / (time.perf_counter() - started)
    print(f"{len(payloads)} JPEGs of 500x375, {sum(map(len, payloads)) / len(payloads) / 1024:.0f} KiB on average, one thread")
    for name, rate in sorted(rates.items(), key=lambda item: -item[1]):
        print(f"{name:15s} {rate:7.0f} images/s   ratio to pillow {rate / rates['pillow']:.2f}")


if __name__ == "__main__":
    main()
