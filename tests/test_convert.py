"""ImageNet tree -> petastorm Parquet on local[2]: read back, bad input, the flat val form, refusals."""

import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
from imagetree import good_tree, image_bytes, write
from petastorm import make_reader

from torchonspark.datasets.imagenet import list_imagenet
from torchonspark.sparkjobs.convert_imagenet import convert_imagenet, convert_tree, main
from torchonspark.datasets import fs

pytestmark = pytest.mark.e2e

BAD_FILES = {
    "empty.JPEG": (b"", "empty file"),
    "random.JPEG": (np.random.default_rng(0).bytes(3000), "not an image"),
    "text.JPEG": (b"this is not a picture\n" * 20, "not an image"),
}
FIXABLE = {"gray.JPEG": ("L", "JPEG", "grayscale"), "cmyk.JPEG": ("CMYK", "JPEG", "cmyk"), "png.JPEG": ("RGB", "PNG", "png"),
           "palette.png": ("P", "PNG", "png"), "alpha.png": ("RGBA", "PNG", "png")}


def read_rows(url):
    with make_reader(f"file://{url}", reader_pool_type="dummy") as reader:
        return list(reader)


def raw_table(url):
    return pq.ParquetDataset(str(url)).read(columns=["image", "path", "label", "height", "width"]).to_pylist()


@pytest.fixture(scope="module")
def messy(spark, tmp_path_factory):
    """A tree with every kind of bad and fixable input, converted once."""
    root = good_tree(tmp_path_factory.mktemp("messy") / "tree")
    for name, (mode, fmt, _) in FIXABLE.items():
        write(root / "train" / "n02" / name, image_bytes(mode, fmt, seed=len(name)))
    for name, (data, _) in BAD_FILES.items():
        write(root / "train" / "n01" / name, data)
    good = (root / "train" / "n01" / "n01_0.JPEG").read_bytes()
    write(root / "train" / "n03" / "truncated.JPEG", good[: len(good) // 2])
    write(root / "train" / "n03" / "no-end-marker.JPEG", good[:-2])
    write(root / "train" / "stray.JPEG", good)
    write(root / "val" / "n99" / "unknown-class.JPEG", good)
    os.mkfifo(root / "train" / "n03" / "pipe.JPEG")
    (root / "train" / "n04").mkdir()
    gone = write(root / "train" / "n01" / "deleted-after-listing.JPEG", good)
    tree = list_imagenet(str(root))
    gone.unlink()
    output = tmp_path_factory.mktemp("out") / "pq"
    report = convert_tree(tree, fs.resolve(str(output)), spark)
    return root, output, report


def test_every_file_is_converted_or_skipped_and_the_counts_add_up(messy):
    _, output, report = messy
    on_disk = json.loads((output / "report.json").read_text())
    assert on_disk == report
    for split in report["splits"].values():
        assert split["seen"] == split["converted"] + len(split["skipped"])
    train = report["splits"]["train"]
    assert train["converted"] == 18 + len(FIXABLE) == len(read_rows(output / "train"))
    assert train["fixed"] == {"cmyk": 1, "grayscale": 1, "png": 3}


def test_each_bad_file_is_skipped_with_its_reason(messy):
    _, _, report = messy
    reasons = {item["path"]: item["reason"] for item in report["splits"]["train"]["skipped"]}
    for name, (_, reason) in BAD_FILES.items():
        assert reason in reasons[f"train/n01/{name}"]
    assert reasons["train/n03/truncated.JPEG"].startswith("broken image")
    assert reasons["train/n03/no-end-marker.JPEG"].startswith("broken image")
    assert reasons["train/n03/pipe.JPEG"] == "not a regular file"
    assert reasons["train/stray.JPEG"] == "not in a class folder"
    assert reasons["train/n01/deleted-after-listing.JPEG"].startswith("unreadable")
    val_reasons = {item["path"]: item["reason"] for item in report["splits"]["val"]["skipped"]}
    assert "not a class of the train split" in val_reasons["val/n99/unknown-class.JPEG"]
    assert report["splits"]["train"]["empty_classes"] == ["n04"]


def test_valid_rgb_jpegs_are_stored_byte_for_byte_and_fixed_ones_become_rgb_jpegs(messy):
    root, output, _ = messy
    rows = {row["path"]: row for row in raw_table(output / "train")}
    original = (root / "train" / "n01" / "n01_3.JPEG").read_bytes()
    assert rows["train/n01/n01_3.JPEG"]["image"] == original
    fixed = rows["train/n02/cmyk.JPEG"]
    assert fixed["image"][:2] == b"\xff\xd8" and fixed["image"] != (root / "train/n02/cmyk.JPEG").read_bytes()
    assert (fixed["height"], fixed["width"]) == (30, 40)


def test_petastorm_reader_decodes_rows_with_labels_in_sorted_wnid_order(messy):
    _, output, _ = messy
    labels = json.loads((output / "labels.json").read_text())
    assert [entry["wnid"] for entry in labels] == ["n01", "n02", "n03", "n04"]
    for row in read_rows(output / "val"):
        assert row.image.shape == (30, 40, 3) and row.image.dtype == np.uint8
        assert labels[row.label]["wnid"] == row.wnid == row.path.split("/")[1]


def test_flat_val_with_a_labels_file_in_either_form(spark, tmp_path):
    root = good_tree(tmp_path / "tree", val_per_class=0)
    for index, wnid in enumerate(["n01", "n02", "n03", "n02"], 1):
        write(root / "val" / f"ILSVRC2012_val_{index:08d}.JPEG", image_bytes(seed=100 + index))
    write(root / "val" / "ILSVRC2012_val_00000009.JPEG", image_bytes(seed=9))
    lines = tmp_path / "val.txt"
    lines.write_text("".join(f"ILSVRC2012_val_{i:08d}.JPEG {w}\n" for i, w in enumerate(["n01", "n02", "n03", "n02"], 1)))
    csv = tmp_path / "LOC_val_solution.csv"
    csv.write_text("ImageId,PredictionString\n" + "".join(
        f"ILSVRC2012_val_{i:08d},{w} 1 2 30 40 {w} 3 4 10 20\n" for i, w in enumerate(["n01", "n02", "n03", "n02", "n01"], 1)
    ))
    for labels_file in (lines, csv):
        output = tmp_path / f"out-{labels_file.suffix}"
        report = convert_imagenet(str(root), str(output), val_labels=str(labels_file), spark=spark)
        val = report["splits"]["val"]
        assert val["converted"] == 4
        assert [item["reason"] for item in val["skipped"]] == ["not named in the val labels file"]
        assert sorted(int(row.label) for row in read_rows(output / "val")) == [0, 1, 1, 2]
    assert "names 1 files that are not in val/" in report["splits"]["val"]["notes"][0]


def test_flat_val_without_a_labels_file_is_refused(tmp_path):
    root = good_tree(tmp_path / "tree", val_per_class=0)
    write(root / "val" / "ILSVRC2012_val_00000001.JPEG", image_bytes())
    with pytest.raises(ValueError, match="give --val-labels"):
        convert_imagenet(str(root), str(tmp_path / "out"))


def test_resize_shorter_shrinks_large_images_and_keeps_the_original_size_fields(spark, tmp_path):
    root = good_tree(tmp_path / "tree", classes=("n01",), train_per_class=2, val_per_class=1)
    write(root / "train" / "n01" / "big.JPEG", image_bytes(size=(120, 80)))
    report = convert_imagenet(str(root), str(tmp_path / "out"), resize_shorter=40, spark=spark)
    assert report["resize_shorter"] == 40
    rows = {row.path: row for row in read_rows(tmp_path / "out" / "train")}
    big = rows["train/n01/big.JPEG"]
    assert big.image.shape == (40, 60, 3) and (big.height, big.width) == (80, 120)
    assert rows["train/n01/n01_0.JPEG"].image.shape == (30, 40, 3)


def test_existing_output_is_refused_and_untouched_unless_overwrite(spark, tmp_path, capsys):
    root = good_tree(tmp_path / "tree", classes=("n01", "n02"), train_per_class=2, val_per_class=1)
    output = tmp_path / "out"
    output.mkdir()
    (output / "mine.txt").write_text("keep me")
    with pytest.raises(SystemExit) as exit_:
        main([str(root), str(output)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists; pass --overwrite" in err
    assert [p.name for p in output.iterdir()] == ["mine.txt"]
    convert_imagenet(str(root), str(output), overwrite=True, spark=spark)
    assert sorted(p.name for p in output.iterdir()) == ["labels.json", "report.json", "train", "val"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda root: None, "does not exist"),
        (lambda root: (root / "images").mkdir(parents=True), "neither train/ nor val/"),
        (lambda root: (root / "train").mkdir(parents=True), "no class folders"),
        (lambda root: (root / "train" / "n01").mkdir(parents=True), "holds no files"),
    ],
)
def test_unusable_trees_are_refused_with_a_clear_message(tmp_path, make, message):
    root = tmp_path / "tree"
    make(root)
    with pytest.raises(ValueError, match=message):
        convert_imagenet(str(root), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_digits_convert_into_row_groups_for_several_workers(digits_parquet):
    output, report = digits_parquet
    assert report["splits"]["train"]["converted"] == 1437 and report["splits"]["val"]["converted"] == 360
    assert report["splits"]["train"]["row_groups"] >= 16
    names = [entry["name"] for entry in json.loads((output / "labels.json").read_text())]
    assert names[:3] == ["zero", "one", "two"]
