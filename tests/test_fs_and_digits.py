"""The filesystem layer's URL handling, and the digits tree."""

import collections
import gzip
from pathlib import Path

import pytest

from torchonspark.datasets import fs
from torchonspark.datasets.digits import make_digits
from torchonspark.sparkjobs.cli import main as torchonspark


def test_plain_paths_become_absolute_local_locations(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    location = fs.resolve("data/x")
    assert location.path == str(tmp_path / "data" / "x")
    assert fs.to_url(location) == f"file://{tmp_path}/data/x"
    assert fs.resolve(f"file://{tmp_path}").join("a", "b").url == f"file://{tmp_path}/a/b"


def test_an_unsupported_scheme_is_refused_naming_the_supported_ones():
    with pytest.raises(ValueError, match=r"unsupported URL scheme 'ftp'.*hdfs://"):
        fs.resolve("ftp://host/data")


def test_text_is_written_whole_under_a_temporary_name(tmp_path):
    target = fs.resolve(str(tmp_path / "report.json"))
    target.write_text_atomically("{}\n")
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]
    assert (tmp_path / "report.json").read_text() == "{}\n"


def test_make_digits_writes_a_stratified_80_20_split(tmp_path):
    counts = make_digits(str(tmp_path / "digits"), size=16)
    assert counts == {"train": 1437, "val": 360}
    per_class = {
        split: collections.Counter(p.parent.name for p in (tmp_path / "digits" / split).rglob("*.JPEG"))
        for split in ("train", "val")
    }
    assert sum(per_class["train"].values()) == 1437 and sum(per_class["val"].values()) == 360
    for digit in range(10):
        train, val = per_class["train"][f"digit{digit}"], per_class["val"][f"digit{digit}"]
        assert abs(val / (train + val) - 0.2) < 0.01
    assert "digit3 three" in (tmp_path / "digits" / "synset_words.txt").read_text()


def test_make_digits_is_deterministic_and_refuses_an_existing_root(tmp_path):
    make_digits(str(tmp_path / "a"))
    make_digits(str(tmp_path / "b"))
    files = lambda root: sorted((p.relative_to(root), p.read_bytes()) for p in Path(root).rglob("*.JPEG"))  # noqa: E731
    assert files(tmp_path / "a") == files(tmp_path / "b")
    with pytest.raises(ValueError, match="already exists"):
        make_digits(str(tmp_path / "a"))


def test_torchonspark_usage_errors_are_one_line_with_status_2(tmp_path, capsys):
    for argv, message in (
        (["make-digits", str(tmp_path / "d"), "--size", "4"], "--size must be at least 8"),
        (["convert", str(tmp_path / "missing"), str(tmp_path / "out")], "does not exist"),
        (["convert", str(tmp_path), str(tmp_path / "out"), "--jpeg-quality", "0"], "--jpeg-quality"),
        (["fly"], "invalid choice"),
        (["train", "--conf", "x.yaml"], "required: --data, --output"),
        (["train", "--recipe", "nope", "--data", str(tmp_path), "--output", str(tmp_path / "r")],
         "unknown recipe 'nope'; packaged recipes: digits, imagenet_resnet_50"),
    ):
        with pytest.raises(SystemExit) as exit_:
            torchonspark(argv)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and err.count("\n") == 1 and message in err, err


def test_bytes_are_written_and_read_as_they_are_whatever_the_file_name(tmp_path):
    gzipped = gzip.compress(b"already compressed")
    location = fs.resolve(str(tmp_path / "env.tar.gz"))
    location.write_bytes(gzipped)
    assert (tmp_path / "env.tar.gz").read_bytes() == gzipped  # not gzipped a second time on the way out
    assert location.read_bytes() == gzipped  # nor gunzipped on the way back


def test_both_commands_print_the_installed_version(capsys):
    from importlib import metadata

    from torchonspark.netdefs.cli import main as build_resnet

    for command in (torchonspark, build_resnet):
        with pytest.raises(SystemExit) as exit_:
            command(["--version"])
        assert exit_.value.code == 0 and capsys.readouterr().out.split()[-1] == metadata.version("torchonspark")
