"""ImageNet's release archives -> petastorm Parquet on local[2], against converting their extracted tree.

The miniature release is built here with the real names and formats, independently of the reader:
tars of tars with tarfile, a devkit .tar.gz whose data/meta.mat is written with scipy in the devkit's
structure (a struct array ``synsets`` as torchvision's parse_meta_mat reads it: ILSVRC2012_ID, WNID,
words, gloss, num_children, children, wordnet_height, num_train_images; classes are the synsets
without children), and the validation ground truth (line n: the ILSVRC2012_ID of image n).
"""

import io
import json
import tarfile

import numpy as np
import pyarrow.parquet as pq
import pytest
import scipy.io
from imagetree import image_bytes, write

from torchonspark.datasets import archives
from torchonspark.sparkjobs.convert_imagenet import convert_imagenet, main

pytestmark = pytest.mark.e2e

CLASSES = {  # ILSVRC2012_ID: (wnid, words)
    1: ("n01440764", "tench, Tinca tinca"),
    2: ("n01443537", "goldfish, Carassius auratus"),
    3: ("n01484850", "great white shark, white shark, man-eater"),
}
FISH = (1001, "n02512053", "fish")  # a synset with children: in meta.mat, not a class
VAL_GROUND_TRUTH = [1, 2, 3, 1, 2, 3, 1]  # image 7 is not in the val archive
VAL_IMAGES = [1, 2, 3, 4, 5, 6, 9]  # image 9 has no ground-truth line
NOT_A_JPEG = b"ImageNet's train tar holds a few of these\n" * 10


def tar_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def member_ends(data: bytes) -> dict[str, tuple[int, int]]:
    """name -> (start, end) of each member's data."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {info.name: (info.offset_data, info.offset_data + info.size) for info in tar}


def meta_mat() -> bytes:
    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height", "num_train_images"]
    rows = [(number, wnid, words, f"gloss of {wnid}", 0, np.zeros(0), 0, 3) for number, (wnid, words) in CLASSES.items()]
    rows.append((FISH[0], FISH[1], FISH[2], "a fish", 3, np.array(list(CLASSES), np.uint16), 1, 0))
    synsets = np.empty((len(rows), 1), dtype=[(name, object) for name in fields])  # (1860, 1) in the release
    for index, row in enumerate(rows):
        synsets[index, 0] = row
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {"synsets": synsets})
    return buffer.getvalue()


def devkit_bytes() -> bytes:
    buffer = io.BytesIO()
    ground_truth = "".join(f"{number}\n" for number in VAL_GROUND_TRUTH).encode()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in (("data/meta.mat", meta_mat()), ("data/ILSVRC2012_validation_ground_truth.txt", ground_truth)):
            info = tarfile.TarInfo(f"ILSVRC2012_devkit_t12/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def make_release(folder):
    """The three release files, and the tree that extracting them gives (what converts from it)."""
    wnids = [wnid for wnid, _ in CLASSES.values()]
    jpegs = {wnid: {f"{wnid}_{i}.JPEG": image_bytes(seed=10 * c + i) for i in range(1, 4)} for c, wnid in enumerate(wnids)}
    jpegs[wnids[0]]["notes.txt"] = NOT_A_JPEG
    class_tars = {f"{wnid}.tar": tar_bytes(files) for wnid, files in jpegs.items()}
    cut = class_tars[f"{wnids[2]}.tar"]  # a class tar cut inside its last image
    start, end = member_ends(cut)[f"{wnids[2]}_3.JPEG"]
    class_tars[f"{wnids[2]}.tar"] = cut[: (start + end) // 2]
    class_tars["extras.tar"] = tar_bytes({"x.JPEG": image_bytes()})  # not named after a class
    val = {f"ILSVRC2012_val_{number:08d}.JPEG": image_bytes(seed=100 + number) for number in VAL_IMAGES}
    write(folder / archives.TRAIN_ARCHIVE, tar_bytes(class_tars))
    write(folder / archives.VAL_ARCHIVE, tar_bytes(val))
    write(folder / archives.DEVKIT, devkit_bytes())

    tree = folder.parent / "extracted"
    for wnid, files in jpegs.items():
        for name, data in files.items():
            if name != f"{wnids[2]}_3.JPEG":  # tar stops extracting before the member it cannot finish
                write(tree / "train" / wnid / name, data)
    for name, data in val.items():
        write(tree / "val" / name, data)
    labels = "".join(f"ILSVRC2012_val_{i:08d}.JPEG {CLASSES[number][0]}\n" for i, number in enumerate(VAL_GROUND_TRUTH, 1))
    write(tree / "val_labels.txt", labels.encode())
    write(tree / "synset_words.txt", "".join(f"{wnid} {words}\n" for wnid, words in CLASSES.values()).encode())
    return folder, tree


def rows_of(dataset):
    return pq.ParquetDataset(str(dataset)).read(columns=["image", "label", "wnid", "path", "height", "width"]).to_pylist()


def skipped_reasons(report, split):
    return {item["path"]: item["reason"] for item in report["splits"][split]["skipped"]}


@pytest.fixture(scope="module")
def converted(spark, tmp_path_factory):
    base = tmp_path_factory.mktemp("release")
    release, tree = make_release(base / "release")
    from_archives = convert_imagenet(str(release), str(base / "from-archives"), num_files=2, spark=spark)
    from_tree = convert_imagenet(str(tree), str(base / "from-tree"), val_labels=str(tree / "val_labels.txt"), num_files=2, spark=spark)
    return base, from_archives, from_tree


def test_archives_and_their_extracted_tree_give_the_same_rows_in_the_same_order(converted):
    base, from_archives, from_tree = converted
    for split, count in (("train", 8), ("val", 6)):
        rows = rows_of(base / "from-archives" / split)
        assert rows == rows_of(base / "from-tree" / split)
        assert len(rows) == from_archives["splits"][split]["converted"] == count
    train = {row["path"]: row for row in rows_of(base / "from-archives" / "train")}
    jpeg = (base / "extracted" / "train" / "n01443537" / "n01443537_2.JPEG").read_bytes()
    assert train["train/n01443537/n01443537_2.JPEG"]["image"] == jpeg  # the original bytes
    assert {row["wnid"] for row in train.values()} == {"n01440764", "n01443537", "n01484850"}


def test_labels_json_is_identical_and_names_come_from_the_devkit(converted):
    base, _, _ = converted
    labels = (base / "from-archives" / "labels.json").read_text()
    assert labels == (base / "from-tree" / "labels.json").read_text()
    assert json.loads(labels)[1] == {"index": 1, "wnid": "n01443537", "name": "goldfish, Carassius auratus"}


def test_every_member_is_converted_or_listed_with_its_reason(converted):
    base, report, _ = converted
    assert json.loads((base / "from-archives" / "report.json").read_text()) == report
    for split in report["splits"].values():
        assert split["seen"] == split["converted"] + len(split["skipped"])
        assert split["truncated"] is None
    train = skipped_reasons(report, "train")
    assert train.keys() == {"train/n01440764/notes.txt", "train/n01484850/n01484850_3.JPEG", "train/extras.tar"}
    assert train["train/n01440764/notes.txt"].startswith("not an image")
    assert train["train/n01484850/n01484850_3.JPEG"].startswith("n01484850.tar is truncated: the tar ends inside member")
    assert train["train/extras.tar"].startswith("not a class tar")
    val = skipped_reasons(report, "val")
    assert val == {"val/ILSVRC2012_val_00000009.JPEG": "no ground-truth line for image 9 (the devkit's ground truth has 7 lines)"}
    assert "names 1 images that are not in the val archive (first: ILSVRC2012_val_00000007)" in report["splits"]["val"]["notes"][0]
    assert report["splits"]["train"]["archive"].endswith(archives.TRAIN_ARCHIVE)


def test_a_truncated_train_archive_converts_what_it_holds_and_says_where_it_stopped(spark, converted, tmp_path):
    base, _, _ = converted
    whole = (base / "release" / archives.TRAIN_ARCHIVE).read_bytes()
    start, _ = member_ends(whole)["n01443537.tar"]
    inner_start, inner_end = member_ends(whole[start:])["n01443537_2.JPEG"]
    cut_at = start + (inner_start + inner_end) // 2
    write(tmp_path / "cut.tar", whole[:cut_at])
    report = convert_imagenet(None, str(tmp_path / "out"), train_archive=str(tmp_path / "cut.tar"),
                              devkit=str(base / "release" / archives.DEVKIT), num_files=2, spark=spark)
    train = report["splits"]["train"]
    assert list(report["splits"]) == ["train"] and train["converted"] == 4  # 3 tench, 1 goldfish
    assert train["truncated"].startswith(f"cut.tar stopped at byte {cut_at} of {cut_at}: the tar ends inside member 'n01443537.tar'")
    assert skipped_reasons(report, "train")["train/n01443537/n01443537_2.JPEG"].startswith("n01443537.tar is truncated")
    assert [entry["wnid"] for entry in json.loads((tmp_path / "out" / "labels.json").read_text())] == ["n01440764", "n01443537"]


@pytest.mark.parametrize(
    "files, flags, message",
    [
        ([], [], "has neither train/ nor val/ (a tree: ROOT/train/<wnid>/*.JPEG) nor ImageNet's release archives"),
        ([archives.TRAIN_ARCHIVE], [], "ILSVRC2012_devkit_t12.tar.gz (--devkit) not in ROOT"),
        ([archives.DEVKIT], ["--val-labels", "labels.txt"], "--val-labels and --synset-words are for a tree"),
    ],
)
def test_a_folder_that_is_neither_input_is_refused_in_one_line(converted, tmp_path, capsys, files, flags, message):
    base, _, _ = converted
    folder = tmp_path / "folder"
    folder.mkdir()
    for name in files:
        (folder / name).symlink_to(base / "release" / name)
    if archives.DEVKIT in files:
        (folder / archives.TRAIN_ARCHIVE).symlink_to(base / "release" / archives.TRAIN_ARCHIVE)
    with pytest.raises(SystemExit) as exit_:
        main([str(folder), str(tmp_path / "out"), *flags])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and message in err
    assert not (tmp_path / "out").exists()


def test_walk_reads_a_tar_inside_a_file_by_its_headers_and_stops_at_a_bad_one():
    inner = tar_bytes({"a.JPEG": b"a" * 700, "b.JPEG": b"b" * 10})
    file = io.BytesIO(b"x" * 1000 + inner + b"y" * 100)
    walk = archives.walk_tar(file, 1000, len(inner))
    assert walk.stop is None and [(m.name, m.size) for m in walk.members] == [("a.JPEG", 700), ("b.JPEG", 10)]
    assert archives.read_member(file, walk.members[1].offset, 10) == b"b" * 10
    start, end = member_ends(inner)["b.JPEG"]
    garbage = inner[:end + (-end % 512)] + b"z" * 512
    walk = archives.walk_tar(io.BytesIO(garbage), 0, len(garbage))
    assert len(walk.members) == 2 and walk.stop == archives.TarStop(len(garbage) - 512, "no valid tar header here (bad checksum)")


def test_byte_ranges_cut_the_train_archive_between_class_tars_into_runs_of_about_equal_bytes():
    class_tars = [archives.ClassTar(f"n{i}.tar", f"n{i}", 1000 * i, size) for i, size in enumerate([100, 1, 1, 1, 1, 50, 50])]
    assert [[t.size for t in run] for run in archives.byte_ranges(class_tars, 3)] == [[100], [1, 1, 1, 1, 50], [50]]
    assert [len(run) for run in archives.byte_ranges(class_tars[1:5], 8)] == [1, 1, 1, 1]
    assert sum(archives.byte_ranges(class_tars, 1), []) == class_tars
