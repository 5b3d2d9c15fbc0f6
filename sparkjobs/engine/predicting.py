"""An exported model applied to single images (``torchonspark predict``): files, folders or URLs in,
the top k classes of each with their probabilities out. It needs the model folder alone: no Spark, no
data set. Images go through evaluation's own steps (EvalTransform, then the loader's normalize_into),
so an image gets the logits evaluate gives it. A bad input is a Prediction with an error, never an
exception: one unreadable file does not cost the others their answer."""

from __future__ import annotations

import http.client
import posixpath
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import cv2
import numpy as np
import torch

from torchonspark.datasets import fs
from torchonspark.datasets.hdfs import first_line
from torchonspark.datasets.loader import normalize_into
from torchonspark.datasets.transforms import EvalTransform
from torchonspark.sparkjobs.engine.export import load_model_folder

# What a folder is searched for: the formats OpenCV decodes. A file named on the command line is tried
# whatever its name; in a folder, a README or a .csv beside the images is not a bad image.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm", ".pnm")
URL_SCHEMES = ("http", "https")  # read with urllib; every other scheme goes to the filesystem layer
HTTP_TIMEOUT_S = 30.0
MAX_IMAGE_BYTES = 256 * 2**20  # larger is not a photo; refusing it keeps one bad input from exhausting memory


@dataclass(frozen=True)
class Source:
    """One image to predict: the name it is reported under (as the user wrote it) and how to get its
    bytes. A source that cannot be read raises OSError or ValueError from ``read``, with the reason."""

    name: str
    read: Callable[[], bytes]


@dataclass(frozen=True)
class Guess:
    index: int
    wnid: str
    name: str
    probability: float


@dataclass(frozen=True)
class Prediction:
    """The top guesses for one source, most probable first; or, for a source that failed, why."""

    source: str
    guesses: tuple[Guess, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class Classifier:
    net: torch.nn.Module
    transform: EvalTransform
    labels: list[dict[str, Any]]


def load_classifier(model: fs.Location) -> Classifier:
    """The exported model as evaluate runs it; a folder that is not one is a ValueError."""
    # The module rebuilt from weights.pt and netdef.yaml rather than model.pt2: it is the very module
    # evaluate scores with, and its weights load as tensors only (torch.load(weights_only=True)), while
    # torch.export.load falls back to full unpickling, which would run code from a tampered file. Both
    # give the same logits for the same batch (tested); model.pt2 is for use outside the project.
    net, netdef, labels = load_model_folder(model)
    if len(labels) != netdef.num_classes:
        raise ValueError(f"--model {model.url}: labels.json names {len(labels)} classes and netdef.yaml has "
                         f"{netdef.num_classes}; export the model again")
    return Classifier(net, EvalTransform(netdef.input_size), labels)


def image_input(data: bytes, transform: EvalTransform) -> torch.Tensor:
    """The bytes of one image -> its 3 x crop x crop float32 input, by evaluate's steps."""
    if not data:
        raise ValueError("empty file")
    try:
        crop = transform(data)
    except (ValueError, cv2.error):
        raise ValueError("not an image (OpenCV cannot decode it)") from None
    size = transform.crop_size
    return torch.from_numpy(normalize_into(crop, np.empty((3, size, size), np.float32)))


def find_sources(inputs: Sequence[str]) -> list[Source]:
    """Every image the inputs name, in their order; a folder's images sorted by path."""
    return [source for given in inputs for source in _sources_of(given)]


def _sources_of(given: str) -> list[Source]:
    scheme = urlsplit(given).scheme.lower()
    if scheme in URL_SCHEMES:
        return [Source(given, partial(read_url, given))]
    if len(scheme) > 1 and scheme not in fs.SUPPORTED_SCHEMES:  # one letter is a Windows drive: a path
        schemes = ", ".join(f"{name}://" for name in (*fs.SUPPORTED_SCHEMES, *URL_SCHEMES))
        return [_failed(given, f"unsupported URL scheme {scheme!r}; use a path or one of {schemes}")]
    try:
        location = fs.resolve(given)
        info = location.fs.get_file_info(location.path)
        if info.type == fs.FileType.Directory:
            return _images_in(given, location)
    except (OSError, ValueError) as error:
        return [_failed(given, first_line(error))]
    if info.type == fs.FileType.NotFound:
        return [_failed(given, "no such file or folder")]
    if info.type != fs.FileType.File:
        return [_failed(given, "not a regular file")]
    return [_file_source(given, location, info.size)]


def _images_in(given: str, folder: fs.Location) -> list[Source]:
    sources = []
    for info in fs.list_files(folder):
        relative = posixpath.relpath(info.path, folder.path)
        # Hidden files and folders are tools' (macOS's ._photo.jpg, caches), not the user's images.
        if info.type != fs.FileType.File or any(part.startswith(".") for part in relative.split("/")):
            continue
        if info.base_name.lower().endswith(IMAGE_SUFFIXES):
            # Reported as the user's folder followed by the path inside it: the name they can find.
            sources.append(_file_source(f"{given.rstrip('/')}/{relative}", folder.join(relative), info.size))
    if not sources:
        return [_failed(given, f"a folder with no image files (searched for {', '.join(IMAGE_SUFFIXES)})")]
    return sources


def _file_source(name: str, location: fs.Location, size: int | None) -> Source:
    if size is not None and size > MAX_IMAGE_BYTES:
        return _failed(name, f"{size} bytes, larger than the {MAX_IMAGE_BYTES >> 20} MiB an image may have")
    return Source(name, location.read_bytes)


def _failed(name: str, reason: str) -> Source:
    def read() -> bytes:
        raise ValueError(reason)

    return Source(name, read)


def read_url(url: str) -> bytes:
    """The body of an http(s) URL, within HTTP_TIMEOUT_S per socket operation and MAX_IMAGE_BYTES."""
    with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as response:
        data = response.read(MAX_IMAGE_BYTES + 1)
    if len(data) > MAX_IMAGE_BYTES:
        raise ValueError(f"larger than the {MAX_IMAGE_BYTES >> 20} MiB an image may have")
    return data


def _reason(error: BaseException) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):  # a refused connection, an unknown host, a timeout
        return f"cannot fetch: {first_line(error.reason) if isinstance(error.reason, BaseException) else error.reason}"
    if isinstance(error, TimeoutError):
        return f"no answer within {HTTP_TIMEOUT_S:g} s"
    return first_line(error)


def _load(source: Source, transform: EvalTransform) -> torch.Tensor | str:
    """The source's input tensor, or the reason it has none."""
    try:
        return image_input(source.read(), transform)
    except (OSError, ValueError, http.client.HTTPException) as error:
        return _reason(error)


def logits_of(net: torch.nn.Module, images: Sequence[torch.Tensor]) -> torch.Tensor:
    """The logits of a batch of inputs (3 x crop x crop each)."""
    with torch.no_grad():
        return net(torch.stack(list(images)))


def top_guesses(logits: torch.Tensor, labels: list[dict[str, Any]], k: int) -> list[tuple[Guess, ...]]:
    """The k most probable classes of each row of ``logits`` (probability: softmax), most probable first."""
    probabilities, indices = logits.softmax(dim=1).topk(k, dim=1)
    return [tuple(Guess(i, labels[i]["wnid"], labels[i]["name"], p) for i, p in zip(row_indices, row_probabilities))
            for row_indices, row_probabilities in zip(indices.tolist(), probabilities.tolist())]


def predict(classifier: Classifier, sources: Sequence[Source], top_k: int, batch_size: int) -> Iterator[Prediction]:
    """A Prediction per source, in order, a batch at a time (so the first answers come early). Sources
    are read and decoded in threads: OpenCV and socket reads release the GIL, and a slow URL does not
    hold up the files beside it."""
    k = min(top_k, len(classifier.labels))
    with ThreadPoolExecutor(thread_name_prefix="predict-read") as pool:
        for start in range(0, len(sources), batch_size):
            batch = sources[start : start + batch_size]
            loaded = list(pool.map(partial(_load, transform=classifier.transform), batch))
            yield from _predict_batch(classifier, batch, loaded, k)


def _predict_batch(classifier: Classifier, batch: Sequence[Source], loaded: list[torch.Tensor | str],
                   k: int) -> Iterator[Prediction]:
    images = [item for item in loaded if isinstance(item, torch.Tensor)]
    guesses = iter(top_guesses(logits_of(classifier.net, images), classifier.labels, k) if images else [])
    for source, item in zip(batch, loaded):
        if isinstance(item, str):
            yield Prediction(source.name, error=item)
        else:
            yield Prediction(source.name, next(guesses))
