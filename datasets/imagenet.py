"""Walking an ImageNet-style tree: which files belong to which class of which split.

Accepted forms, under ROOT (a local path or URL):
  - ``train/<wnid>/*`` and ``val/<wnid>/*`` (class folders), and
  - ``val/*`` flat, as ImageNet ships it, with a labels file (``--val-labels``): lines
    ``filename wnid``, or the CSV whose first field is the image id and whose second starts with the wnid.
Labels are the train wnids sorted (torchvision's and Caffe's convention), the same for every split;
class names come from ``--synset-words``, or ``ROOT/synset_words.txt`` when present.
Every file under a split is either listed for conversion or recorded as skipped with a reason.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field

from . import fs

SPLITS = ("train", "val")
DEFAULT_SYNSET_WORDS = "synset_words.txt"  # used when present in ROOT and --synset-words is not given
CSV_HEADER_IDS = ("imageid", "image_id", "id", "filename", "file")


@dataclass(frozen=True)
class SourceImage:
    path: str  # relative to ROOT, with "/" separators
    wnid: str
    label: int
    size: int  # bytes
    offset: int | None = None  # of its bytes in the release archive its split reads (archives.py); None: a file


@dataclass
class SplitListing:
    name: str
    images: list[SourceImage] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"path", "reason"}, found while listing
    empty_classes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. labels-file entries with no file
    archive: fs.Location | None = None  # the release archive the images lie in (archives.py); None: files under ROOT
    truncated: str | None = None  # where that archive stopped early, in words

    @property
    def seen(self) -> int:
        return len(self.images) + len(self.skipped)

    @property
    def bytes(self) -> int:
        return sum(image.size for image in self.images)


@dataclass(frozen=True)
class ImageNetTree:
    root: fs.Location
    wnids: list[str]  # index = label
    names: dict[str, str]  # wnid -> human-readable name
    splits: dict[str, SplitListing]

    def labels(self) -> list[dict[str, object]]:
        return [{"index": i, "wnid": w, "name": self.names.get(w, w)} for i, w in enumerate(self.wnids)]


def read_synset_words(location: fs.Location) -> dict[str, str]:
    """``n01440764 tench, Tinca tinca`` lines -> {wnid: name}."""
    names = {}
    for number, line in enumerate(_read_lines(location, "--synset-words"), 1):
        wnid, _, name = line.strip().partition(" ")
        if not wnid:
            continue
        if not name.strip():
            raise ValueError(f"{location.url} line {number}: expected 'wnid name', got {line.strip()!r}")
        names[wnid] = name.strip()
    return names


def read_val_labels(location: fs.Location) -> dict[str, str]:
    """The flat val split's labels file -> {image id (file name without extension): wnid}."""
    labels = {}
    for number, line in enumerate(_read_lines(location, "--val-labels"), 1):
        line = line.strip()
        if not line:
            continue
        if "," in line:  # CSV: ImageId,PredictionString (the first word of which is the wnid)
            image_id, _, rest = line.partition(",")
            if number == 1 and image_id.strip().lower() in CSV_HEADER_IDS:
                continue
            wnid = rest.split()[0] if rest.split() else ""
        else:
            parts = line.split()
            image_id, wnid = (parts[0], parts[1]) if len(parts) >= 2 else (parts[0], "")
        if not wnid:
            raise ValueError(f"{location.url} line {number}: expected 'filename wnid' or 'id,wnid ...', got {line!r}")
        labels[posixpath.splitext(posixpath.basename(image_id))[0]] = wnid
    if not labels:
        raise ValueError(f"{location.url}: the val labels file holds no labels")
    return labels


def _read_lines(location: fs.Location, flag: str) -> list[str]:
    try:
        return location.read_bytes().decode("utf-8").splitlines()
    except FileNotFoundError:
        raise ValueError(f"{flag} {location.url}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{flag} {location.url}: cannot read it ({error})") from None


def list_imagenet(root_url: str, val_labels_url: str | None = None, synset_words_url: str | None = None) -> ImageNetTree:
    """List the splits under ROOT; raise ValueError for a tree that cannot be converted at all."""
    root = fs.resolve(root_url)
    if not root.is_dir():
        raise ValueError(f"ROOT {root_url} does not exist or is not a folder")
    present = [split for split in SPLITS if root.join(split).is_dir()]
    if not present:
        raise ValueError(f"ROOT {root_url} has neither train/ nor val/ (expected ROOT/train/<wnid>/*.JPEG)")
    class_split = "train" if "train" in present else "val"
    wnids = [info.base_name for info in fs.list_dirs(root.join(class_split))]
    if not wnids:
        raise ValueError(f"{root.join(class_split).url} has no class folders (expected {class_split}/<wnid>/*.JPEG)")
    labels = {wnid: index for index, wnid in enumerate(wnids)}
    val_labels = read_val_labels(fs.resolve(val_labels_url)) if val_labels_url else None
    if synset_words_url is None and root.join(DEFAULT_SYNSET_WORDS).exists():
        synset_words_url = root.join(DEFAULT_SYNSET_WORDS).url
    names = read_synset_words(fs.resolve(synset_words_url)) if synset_words_url else {}
    splits = {}
    for split in present:
        listing = _list_split(root, split, labels, val_labels if split == "val" else None)
        if not listing.seen:
            raise ValueError(f"{root.join(split).url} holds no files")
        splits[split] = listing
    return ImageNetTree(root, wnids, names, splits)


def _list_split(root: fs.Location, split: str, labels: dict[str, int], val_labels: dict[str, str] | None) -> SplitListing:
    split_dir = root.join(split)
    listing = SplitListing(split)
    class_dirs = {info.base_name for info in fs.list_dirs(split_dir)}
    files_per_class = dict.fromkeys(sorted(class_dirs), 0)
    flat_ids: set[str] = set()
    for info in fs.list_files(split_dir):
        inside = posixpath.relpath(info.path, split_dir.path)
        relative = posixpath.join(split, inside)
        folder = inside.split("/", 1)[0] if "/" in inside else None
        if folder is not None:
            files_per_class[folder] += 1
        if info.type != fs.FileType.File:
            listing.skipped.append({"path": relative, "reason": "not a regular file"})
        elif folder is not None:
            if folder in labels:
                listing.images.append(SourceImage(relative, folder, labels[folder], info.size))
            else:
                listing.skipped.append({"path": relative, "reason": f"class folder {folder!r} is not a class of the train split"})
        elif val_labels is None:
            listing.skipped.append({"path": relative, "reason": "not in a class folder"})
        else:
            image_id = posixpath.splitext(inside)[0]
            flat_ids.add(image_id)
            wnid = val_labels.get(image_id)
            if wnid is None:
                listing.skipped.append({"path": relative, "reason": "not named in the val labels file"})
            elif wnid not in labels:
                listing.skipped.append({"path": relative, "reason": f"labelled {wnid!r}, which is not a class of the train split"})
            else:
                listing.images.append(SourceImage(relative, wnid, labels[wnid], info.size))
    listing.empty_classes = [wnid for wnid, count in files_per_class.items() if count == 0]
    if val_labels is not None:
        missing = sorted(set(val_labels) - flat_ids)
        if missing:
            listing.notes.append(
                f"the val labels file names {len(missing)} files that are not in val/ (first: {', '.join(missing[:5])})"
            )
    elif split == "val" and any(item["reason"] == "not in a class folder" for item in listing.skipped) and not class_dirs:
        raise ValueError(f"{split_dir.url} holds images directly (ImageNet's flat form): give --val-labels FILE")
    return listing
