"""ImageNet's release archives, read where they lie: no copy, no extraction.

ILSVRC2012 ships as three files, found under these names in one folder or given one by one:
  - ``ILSVRC2012_img_train.tar``: one inner tar per class, ``<wnid>.tar``, each holding that class's JPEGs;
  - ``ILSVRC2012_img_val.tar``: 50,000 JPEGs side by side, ``ILSVRC2012_val_00000001.JPEG`` ...;
  - ``ILSVRC2012_devkit_t12.tar.gz``: ``data/meta.mat`` (a MATLAB struct array ``synsets``: ILSVRC2012_ID,
    WNID, words, ...; the 1,000 classes are the synsets without children) and
    ``data/ILSVRC2012_validation_ground_truth.txt`` (line n: the ILSVRC2012_ID of validation image n).

An archive is read through ranged reads of one open file (``fs``: local or HDFS): a walk over a tar's
headers seeks past member data, so listing a 140 MB class tar reads about a thousand small blocks, and
a member's bytes are read by offset later. The listing says what converting the extracted tree
(``train/<wnid>/<member>``, a flat ``val/`` with the ground truth as its labels file) would list, path
for path, so both inputs give the same rows, in the same order. Whatever cannot be listed is recorded
with a reason: members that are not regular files, outer-tar members that are not ``<wnid>.tar`` of a
devkit class, inner tars that are broken or cut short, validation images without a ground-truth line.
A tar that ends early (a truncated download) gives what it holds before the cut, and says where it stopped.
"""

from __future__ import annotations

import io
import posixpath
import re
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import BinaryIO, NamedTuple

import scipy.io

from . import fs
from .imagenet import ImageNetTree, SourceImage, SplitListing

TRAIN_ARCHIVE = "ILSVRC2012_img_train.tar"
VAL_ARCHIVE = "ILSVRC2012_img_val.tar"
DEVKIT = "ILSVRC2012_devkit_t12.tar.gz"
RELEASE_FILES = (TRAIN_ARCHIVE, VAL_ARCHIVE, DEVKIT)
META_MAT = "data/meta.mat"
VAL_GROUND_TRUTH = "data/ILSVRC2012_validation_ground_truth.txt"
VAL_NAME = re.compile(r"ILSVRC2012_val_(\d{8})\.JPEG")
# A header walk reads a byte at the end of each member's data (tarfile's check that it is there) and then
# the next header: one read-ahead serves both, so each member costs one ranged read (one round trip on HDFS).
READAHEAD = 4096


class ByteRange(io.RawIOBase):
    """Bytes [start, start + size) of an open seekable file, as a file of their own: what tarfile reads an
    inner tar through. Reads shorter than READAHEAD are served from a buffer of READAHEAD bytes."""

    def __init__(self, file: BinaryIO, start: int, size: int) -> None:
        super().__init__()
        self.file, self.start, self.size = file, start, size
        self.position = 0
        self.buffer, self.buffer_at = b"", 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def read(self, n: int = -1) -> bytes:
        end = self.size if n is None or n < 0 else min(self.size, self.position + n)
        if end <= self.position:
            return b""
        if end - self.position >= READAHEAD:
            data = self._read_at(self.position, end - self.position)
        else:
            if not self.buffer_at <= self.position or end > self.buffer_at + len(self.buffer):
                self.buffer, self.buffer_at = self._read_at(self.position, min(READAHEAD, self.size - self.position)), self.position
            data = self.buffer[self.position - self.buffer_at:end - self.buffer_at]
        self.position += len(data)
        return data

    def readinto(self, buffer: bytearray) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _read_at(self, position: int, n: int) -> bytes:
        self.file.seek(self.start + position)
        return _read_fully(self.file, n)


class TarMember(NamedTuple):
    name: str  # as the tar has it
    offset: int  # of its data, in the file the walk read (the outer archive for an inner tar)
    size: int
    regular: bool  # a regular file (not a link, device or fifo)


@dataclass(frozen=True)
class TarStop:
    """Where a walk ended before a tar's end-of-archive blocks."""

    byte: int  # from the start of the tar
    reason: str
    member: str | None = None  # the member cut short, when the cut is inside one
    member_offset: int | None = None  # where that member's data starts, in the file the walk read


@dataclass(frozen=True)
class TarWalk:
    members: list[TarMember]  # directories left out: they hold nothing themselves
    stop: TarStop | None  # None when the tar ends as a tar should


def open_archive(location: fs.Location) -> BinaryIO:
    """A seekable file of the archive (pyarrow's, local or HDFS), for ``walk_tar`` and ``read_member``."""
    return location.fs.open_input_file(location.path)


def archive_size(location: fs.Location) -> int:
    return location.fs.get_file_info(location.path).size


def read_member(file: BinaryIO, offset: int, size: int) -> bytes:
    """A member's bytes, by offset; OSError if the file ends first (it changed since it was walked)."""
    file.seek(offset)
    data = _read_fully(file, size)
    if len(data) != size:
        raise OSError(f"the archive ends {size - len(data)} bytes before this member's end; did it change since it was listed?")
    return data


def _read_fully(file: BinaryIO, n: int) -> bytes:
    """``n`` bytes, or fewer only at the end of the file: a raw HDFS reader may return less than asked."""
    chunks = []
    while n > 0:
        chunk = file.read(n)
        if not chunk:
            break
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def walk_tar(file: BinaryIO, start: int, size: int) -> TarWalk:
    """The members of the tar that fills bytes [start, start + size) of ``file``, header by header,
    without reading their data. A tar that ends early gives the members before the cut and a TarStop."""
    window = ByteRange(file, start, size)
    try:
        tar = tarfile.open(fileobj=window, mode="r:")
    except tarfile.ReadError as error:
        return TarWalk([], TarStop(0, f"not a tar archive ({error})"))
    members: list[TarMember] = []
    while True:
        try:
            info = tar.next()
        except tarfile.ReadError as error:  # e.g. a long-name header whose continuation is broken
            return TarWalk(members, TarStop(min(tar.offset, size), f"unreadable tar header ({error})"))
        if info is None:  # tarfile stops quietly at an end block, a bad checksum or a short header: which was it?
            return TarWalk(members, _ending(window, tar.offset))
        if info.offset_data + info.size > size:
            present = max(0, size - info.offset_data)
            reason = f"the tar ends inside member {info.name!r} ({present} of its {info.size} bytes are there)"
            return TarWalk(members, TarStop(size, reason, info.name, start + info.offset_data))
        if not info.isdir():
            members.append(TarMember(info.name, start + info.offset_data, info.size, info.isreg()))
        tar.members.clear()  # tarfile keeps every header it has read; a walk needs none of them


def _ending(window: ByteRange, offset: int) -> TarStop | None:
    window.seek(offset)
    block = window.read(tarfile.BLOCKSIZE)
    if len(block) == tarfile.BLOCKSIZE and block == tarfile.NUL * tarfile.BLOCKSIZE:
        return None
    if not block:
        return TarStop(offset, "the tar ends without its end-of-archive blocks (a cut between two members?)")
    if len(block) < tarfile.BLOCKSIZE:
        return TarStop(offset, "the tar ends inside a header")
    return TarStop(offset, "no valid tar header here (bad checksum)")


# ---- the devkit ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Devkit:
    wnids: dict[int, str]  # ILSVRC2012_ID -> wnid, the classes (synsets without children)
    names: dict[str, str]  # wnid -> words ("tench, Tinca tinca")
    val_ground_truth: list[int]  # ILSVRC2012_ID of validation image n at index n - 1


def read_devkit(location: fs.Location) -> Devkit:
    """The classes and the validation ground truth from ILSVRC2012_devkit_t12.tar.gz (read whole: 2.5 MB)."""
    try:
        data = location.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"devkit {location.url}: no such file") from None
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            meta_mat = _devkit_file(tar, META_MAT, location)
            ground_truth = _devkit_file(tar, VAL_GROUND_TRUTH, location)
    except (tarfile.TarError, EOFError, OSError) as error:  # gzip's errors are OSError and EOFError
        raise ValueError(f"devkit {location.url}: not a readable .tar.gz ({error})") from None
    wnids, names = _classes(meta_mat, location)
    return Devkit(wnids, names, _ground_truth(ground_truth, location))


def _devkit_file(tar: tarfile.TarFile, name: str, location: fs.Location) -> bytes:
    for member in tar:  # ILSVRC2012_devkit_t12/data/... in the release; any folder above data/ will do
        if member.isreg() and (member.name == name or member.name.endswith("/" + name)):
            return tar.extractfile(member).read()
    raise ValueError(f"devkit {location.url} has no {name} (is it {DEVKIT}?)")


def _classes(meta_mat: bytes, location: fs.Location) -> tuple[dict[int, str], dict[str, str]]:
    try:
        synsets = scipy.io.loadmat(io.BytesIO(meta_mat), squeeze_me=True)["synsets"]
        fields = zip(synsets["ILSVRC2012_ID"], synsets["WNID"], synsets["words"], synsets["num_children"])
        rows = [(int(number), str(wnid), str(words), int(children)) for number, wnid, words, children in fields]
    except (KeyError, ValueError, TypeError, IndexError) as error:
        raise ValueError(
            f"devkit {location.url}: {META_MAT} is not a struct array 'synsets' with ILSVRC2012_ID, WNID, words "
            f"and num_children ({type(error).__name__}: {error})"
        ) from None
    leaves = [(number, wnid, words) for number, wnid, words, children in rows if children == 0]
    if not leaves:
        raise ValueError(f"devkit {location.url}: {META_MAT} defines no class (no synset without children)")
    return {number: wnid for number, wnid, _ in leaves}, {wnid: words for _, wnid, words in leaves}


def _ground_truth(text: bytes, location: fs.Location) -> list[int]:
    numbers = []
    for line_number, line in enumerate(text.decode("ascii", "replace").splitlines(), 1):
        if line.strip():
            try:
                numbers.append(int(line))
            except ValueError:
                raise ValueError(f"devkit {location.url}: {VAL_GROUND_TRUTH} line {line_number} is not a class ID: {line!r}") from None
    return numbers


# ---- listing a release -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Release:
    """Where the three files are; ``folder`` is what the report names as the input."""

    folder: fs.Location
    train: fs.Location
    val: fs.Location | None
    devkit: fs.Location


class ClassTar(NamedTuple):
    """An inner tar of the train archive: what a Spark task needs to walk it."""

    name: str  # as the outer tar has it: n01440764.tar
    wnid: str
    offset: int  # of its bytes in the outer tar
    size: int  # that the outer tar holds (less than its header says when the outer tar is cut inside it)


@dataclass(frozen=True)
class ReleaseIndex:
    """A release as far as the driver reads it alone: the devkit, the train archive's class tars, the
    val archive's members. The class tars' own members are walked in parallel (``list_release``)."""

    release: Release
    devkit: Devkit
    class_tars: list[ClassTar]
    train_skipped: list[dict[str, str]]
    train_stop: TarStop | None
    val_walk: TarWalk | None


def index_release(release: Release) -> ReleaseIndex:
    """Read the devkit and walk the headers of the train archive (about a thousand) and of the val
    archive; raise ValueError for a release that cannot be converted at all."""
    devkit = read_devkit(release.devkit)
    size = _existing_size(release.train, "train archive")
    with open_archive(release.train) as file:
        walk = walk_tar(file, 0, size)
    if walk.stop is not None and walk.stop.byte == 0:
        raise ValueError(f"train archive {release.train.url}: {walk.stop.reason}")
    members = walk.members
    if walk.stop is not None and walk.stop.member is not None:  # cut inside a class tar: walk what is there
        members = [*members, TarMember(walk.stop.member, walk.stop.member_offset, size - walk.stop.member_offset, True)]
    class_tars, skipped = _class_tars(members, devkit)
    if not class_tars:
        first = f" (first member: {walk.members[0].name})" if walk.members else ""
        raise ValueError(f"train archive {release.train.url} holds no class tar <wnid>.tar of the devkit's classes{first}")
    val_walk = None
    if release.val is not None:
        val_size = _existing_size(release.val, "val archive")
        with open_archive(release.val) as file:
            val_walk = walk_tar(file, 0, val_size)
        if val_walk.stop is not None and val_walk.stop.byte == 0:
            raise ValueError(f"val archive {release.val.url}: {val_walk.stop.reason}")
    return ReleaseIndex(release, devkit, class_tars, skipped, walk.stop, val_walk)


def _existing_size(location: fs.Location, what: str) -> int:
    info = location.fs.get_file_info(location.path)
    if info.type != fs.FileType.File:
        raise ValueError(f"{what} {location.url}: no such file")
    return info.size


def _class_tars(members: list[TarMember], devkit: Devkit) -> tuple[list[ClassTar], list[dict[str, str]]]:
    classes = set(devkit.names)
    by_name: dict[str, ClassTar] = {}
    skipped = []
    for member in members:
        path = _split_path("train", member.name)
        stem, extension = posixpath.splitext(posixpath.basename(member.name))
        if not member.regular:
            skipped.append({"path": path, "reason": "not a regular file"})
        elif extension != ".tar" or stem not in classes:
            skipped.append({"path": path, "reason": f"not a class tar: expected <wnid>.tar for a wnid of the devkit's {len(classes)} classes"})
        else:
            if member.name in by_name:
                skipped.append({"path": path, "reason": "replaced by a later member of the same name (as extracting the tar would)"})
            by_name[member.name] = ClassTar(member.name, stem, member.offset, member.size)
    return list(by_name.values()), skipped


def byte_ranges(class_tars: Sequence[ClassTar], parts: int) -> list[list[ClassTar]]:
    """The class tars in at most ``parts`` runs of neighbours holding about as many bytes each: byte
    ranges of the outer tar, cut between class tars."""
    total = sum(class_tar.size for class_tar in class_tars)
    ranges: list[list[ClassTar]] = [[]]
    done = 0
    for class_tar in class_tars:
        if ranges[-1] and len(ranges) < parts and done >= total * len(ranges) / parts:
            ranges.append([])
        ranges[-1].append(class_tar)
        done += class_tar.size
    return [run for run in ranges if run]


def walk_class_tars(archive_url: str, class_tars: Sequence[ClassTar]) -> list[TarWalk]:
    """Walk class tars of the train archive, opened once: the work of one Spark task."""
    with open_archive(fs.resolve(archive_url)) as file:
        return [walk_tar(file, class_tar.offset, class_tar.size) for class_tar in class_tars]


def list_release(index: ReleaseIndex, walk_all: Callable[[str, Sequence[ClassTar]], list[TarWalk]]) -> ImageNetTree:
    """The release as an ImageNetTree, listed as its extracted tree would be. ``walk_all(url, class_tars)``
    returns what ``walk_class_tars`` does (in the job, a Spark job of a task per byte range)."""
    walks = walk_all(index.release.train.url, index.class_tars)
    wnids = sorted({class_tar.wnid for class_tar in index.class_tars})
    labels = {wnid: label for label, wnid in enumerate(wnids)}
    splits = {"train": _train_listing(index, walks, labels)}
    if index.val_walk is not None:
        splits["val"] = _val_listing(index, labels)
    return ImageNetTree(index.release.folder, wnids, index.devkit.names, splits)


def _train_listing(index: ReleaseIndex, walks: list[TarWalk], labels: dict[str, int]) -> SplitListing:
    listing = SplitListing("train", archive=index.release.train)
    listing.skipped.extend(index.train_skipped)
    images: dict[str, SourceImage] = {}
    members_per_class = dict.fromkeys(labels, 0)
    for class_tar, walk in zip(index.class_tars, walks, strict=True):
        members_per_class[class_tar.wnid] += len(walk.members)
        for member in walk.members:
            path = _split_path(f"train/{class_tar.wnid}", member.name)
            if not member.regular:
                listing.skipped.append({"path": path, "reason": "not a regular file"})
                continue
            if path in images:
                listing.skipped.append({"path": path, "reason": "replaced by a later member of the same name (as extracting the tar would)"})
            images[path] = SourceImage(path, class_tar.wnid, labels[class_tar.wnid], member.size, member.offset)
        if walk.stop is not None:
            listing.skipped.append(_cut_entry(f"train/{class_tar.wnid}", class_tar.name, walk.stop))
    listing.images = [images[path] for path in sorted(images)]
    listing.empty_classes = [wnid for wnid, count in members_per_class.items() if count == 0]
    listing.truncated = _stop_text(index.release.train, index.train_stop)
    return listing


def _val_listing(index: ReleaseIndex, labels: dict[str, int]) -> SplitListing:
    devkit, walk = index.devkit, index.val_walk
    listing = SplitListing("val", archive=index.release.val)
    images: dict[str, SourceImage] = {}
    numbers: set[int] = set()
    for member in walk.members:
        path = _split_path("val", member.name)
        match = VAL_NAME.fullmatch(posixpath.basename(member.name))
        number = int(match.group(1)) if match else None
        class_id = devkit.val_ground_truth[number - 1] if number and number <= len(devkit.val_ground_truth) else None
        wnid = devkit.wnids.get(class_id)
        if not member.regular:
            reason = "not a regular file"
        elif number is None:
            reason = "not named ILSVRC2012_val_NNNNNNNN.JPEG, so no line of the devkit's ground truth is its label"
        elif class_id is None:
            reason = f"no ground-truth line for image {number} (the devkit's ground truth has {len(devkit.val_ground_truth)} lines)"
        elif wnid is None:
            reason = f"its ground-truth class ID {class_id} is not a class of the devkit's meta.mat"
        elif wnid not in labels:
            reason = f"labelled {wnid!r}, which is not a class of the train split"
        else:
            reason = None
        if number is not None:
            numbers.add(number)
        if reason is not None:
            listing.skipped.append({"path": path, "reason": reason})
            continue
        if path in images:
            listing.skipped.append({"path": path, "reason": "replaced by a later member of the same name (as extracting the tar would)"})
        images[path] = SourceImage(path, wnid, labels[wnid], member.size, member.offset)
    if walk.stop is not None and walk.stop.member is not None:
        listing.skipped.append({"path": _split_path("val", walk.stop.member), "reason": walk.stop.reason})
        match = VAL_NAME.fullmatch(posixpath.basename(walk.stop.member))
        numbers.update([int(match.group(1))] if match else [])
    listing.images = [images[path] for path in sorted(images)]
    missing = sorted(set(range(1, len(devkit.val_ground_truth) + 1)) - numbers)
    if missing:
        first = ", ".join(f"ILSVRC2012_val_{number:08d}" for number in missing[:5])
        listing.notes.append(f"the devkit's ground truth names {len(missing)} images that are not in the val archive (first: {first})")
    listing.truncated = _stop_text(index.release.val, walk.stop)
    return listing


def _split_path(folder: str, name: str) -> str:
    """Where a member would be in the extracted tree (``./n01_1.JPEG`` -> ``train/n01/n01_1.JPEG``)."""
    return posixpath.join(folder, posixpath.normpath(name).lstrip("/"))


def _cut_entry(folder: str, tar_name: str, stop: TarStop) -> dict[str, str]:
    """The skipped entry of a class tar that ends early: the member cut short, or the tar itself."""
    if stop.member is not None:
        return {"path": _split_path(folder, stop.member), "reason": f"{tar_name} is truncated: {stop.reason}"}
    where = "" if stop.byte == 0 else f" at byte {stop.byte}; what follows was not read"
    return {"path": _split_path(posixpath.dirname(folder), tar_name), "reason": f"broken class tar: {stop.reason}{where}"}


def _stop_text(archive: fs.Location, stop: TarStop | None) -> str | None:
    if stop is None:
        return None
    return f"{archive.name} stopped at byte {stop.byte} of {archive_size(archive)}: {stop.reason}; nothing after it was read"
