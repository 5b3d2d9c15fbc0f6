"""`torchonspark predict` on an exported model folder alone: evaluate's input and logits, the three output
formats, bad inputs listed and survived, folders, URLs, and the model README's own Python lines. No Spark:
the model is exported untrained (predicting needs weights, not good ones)."""

import csv
import functools
import http.server
import io
import json
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from torchonspark.datasets import fs
from torchonspark.datasets.digits import CLASS_NAMES, digit_wnid, make_digits
from torchonspark.netdefs import NetDef
from torchonspark.sparkjobs import predict
from torchonspark.sparkjobs.engine.export import export_model, load_inference_program
from torchonspark.sparkjobs.engine.predicting import find_sources, image_input, load_classifier, logits_of
from torchonspark.sparkjobs.engine.predicting import predict as predict_sources
from torchonspark.sparkjobs.engine.scoring import shard_batches

VENV_BIN = Path(sys.executable).parent
TINY = NetDef("tiny", "normal", 16, (1, 1, 1, 1), fc_layers=False, num_classes=10, input_size=32)  # test_train's SMALL
LINE = re.compile(r"^(?P<input>.+?): (?P<guesses>.+)$")
GUESS = re.compile(r"(?P<name>\w+) \((?P<probability>[01]\.\d{3})\)")


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict") / "digits"
    make_digits(str(root))
    return root


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    torch.manual_seed(0)
    labels = [{"index": i, "wnid": digit_wnid(i), "name": name} for i, name in enumerate(CLASS_NAMES)]
    folder = tmp_path_factory.mktemp("export") / "model"
    export_model(TINY.build().eval(), TINY, labels, fs.resolve(str(folder)))
    return folder


def encoded(pixels_rgb, extension=".jpg"):
    ok, data = cv2.imencode(extension, cv2.cvtColor(pixels_rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return data.tobytes()


@pytest.fixture(scope="module")
def photos(digits, tmp_path_factory):
    """A digit drawn on a 300x400 canvas (the centre square's side is 262.5 there: rounding and INTER_AREA)
    and one on a 20x30 canvas (smaller than the crop: INTER_LINEAR)."""
    seven = cv2.cvtColor(cv2.imread(str(next((digits / "val" / "digit7").iterdir()))), cv2.COLOR_BGR2RGB)
    folder = tmp_path_factory.mktemp("photos")
    large = np.full((300, 400, 3), 255, np.uint8)
    large[50:250, 100:300] = cv2.resize(seven, (200, 200), interpolation=cv2.INTER_CUBIC)
    small = np.full((20, 30, 3), 255, np.uint8)
    small[2:18, 7:23] = cv2.resize(seven, (16, 16), interpolation=cv2.INTER_AREA)
    (folder / "large.jpg").write_bytes(encoded(large))
    (folder / "small.png").write_bytes(encoded(small, ".png"))
    return [folder / "large.jpg", folder / "small.png"]


def some_digits(digits, count=6):
    return sorted((digits / "val").rglob("*.JPEG"))[::37][:count]


def as_split(files, folder):
    """The files as a converted split holds them (image bytes, label, path): what evaluate's loader reads."""
    folder.mkdir()
    table = pa.table({"image": [f.read_bytes() for f in files], "label": [0] * len(files), "path": [str(f) for f in files]})
    pq.write_table(table, folder / "part-0.parquet")
    return fs.resolve(str(folder))


def test_predict_gives_an_image_the_input_and_the_logits_evaluate_gives_it(digits, photos, model, tmp_path):
    files = [*some_digits(digits), *photos]
    net, batches = shard_batches(fs.resolve(str(model)), as_split(files, tmp_path / "val"), 0, 1, len(files),
                                 torch.get_num_threads())
    images, _, paths = next(batches)
    with torch.no_grad():
        evaluated = net(images)
    classifier = load_classifier(fs.resolve(str(model)))
    inputs = [image_input(f.read_bytes(), classifier.transform) for f in files]
    assert paths == [str(f) for f in files]
    assert torch.equal(torch.stack(inputs), images)
    assert torch.equal(logits_of(classifier.net, inputs), evaluated)
    with torch.no_grad():  # the exported program agrees with the module predict and evaluate run
        assert torch.equal(load_inference_program(fs.resolve(str(model)))(images), evaluated)
    predictions = list(predict_sources(classifier, find_sources([str(f) for f in files]), 10, len(files)))
    expected = evaluated.softmax(dim=1).topk(10, dim=1)
    assert [[g.index for g in p.guesses] for p in predictions] == expected.indices.tolist()
    assert [[g.probability for g in p.guesses] for p in predictions] == expected.values.tolist()


def test_each_image_gets_one_line_of_its_top_five_names_and_probabilities(digits, model, capsys):
    files = some_digits(digits)
    assert predict.main(["--model", str(model), *map(str, files)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [LINE.match(line)["input"] for line in lines] == [str(f) for f in files]
    for line in lines:
        guesses = GUESS.findall(LINE.match(line)["guesses"])
        probabilities = [float(p) for _, p in guesses]
        assert len(guesses) == 5 and {name for name, _ in guesses} <= set(CLASS_NAMES)
        assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1.003


def test_json_lines_give_every_class_when_top_k_exceeds_them_and_sum_to_one(digits, model, capsys):
    files = some_digits(digits, 3)
    assert predict.main(["--model", str(model), "--json", "--top-k", "50", *map(str, files)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["input"] for row in rows] == [str(f) for f in files]
    for row in rows:
        probabilities = [guess["probability"] for guess in row["top"]]
        assert sorted(guess["index"] for guess in row["top"]) == list(range(10))
        assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) == pytest.approx(1, abs=1e-5)
        assert all(guess["name"] == CLASS_NAMES[guess["index"]] and guess["wnid"] == digit_wnid(guess["index"])
                   for guess in row["top"])


def test_csv_has_a_header_and_a_row_per_image(digits, model, capsys):
    files = some_digits(digits, 3)
    assert predict.main(["--model", str(model), "--csv", "--top-k", "3", *map(str, files)]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert list(rows[0]) == ["input", "index_1", "name_1", "probability_1", "index_2", "name_2", "probability_2",
                             "index_3", "name_3", "probability_3", "error"]
    assert [row["input"] for row in rows] == [str(f) for f in files]
    for row in rows:
        probabilities = [float(row[f"probability_{r}"]) for r in (1, 2, 3)]
        assert probabilities == sorted(probabilities, reverse=True) and row["error"] == ""
        assert row["name_1"] == CLASS_NAMES[int(row["index_1"])]


def test_bad_and_missing_files_are_listed_with_a_reason_and_the_good_ones_still_predicted(digits, model, tmp_path, capsys):
    good = [str(f) for f in some_digits(digits, 2)]
    (tmp_path / "notes.jpg").write_text("not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    bad = [str(tmp_path / "notes.jpg"), str(tmp_path / "empty.png"), str(tmp_path / "missing.jpg")]
    assert predict.main(["--model", str(model), good[0], *bad, good[1]]) == 1
    out, err = capsys.readouterr()
    assert [LINE.match(line)["input"] for line in out.splitlines()] == good
    assert err.splitlines() == [f"predict: {bad[0]}: not an image (OpenCV cannot decode it)",
                                f"predict: {bad[1]}: empty file", f"predict: {bad[2]}: no such file or folder"]
    assert predict.main(["--model", str(model), "--json", good[0], bad[2]]) == 1
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert "top" in rows[0] and rows[1] == {"input": bad[2], "error": "no such file or folder"}


def test_the_command_line_reports_a_bad_file_in_its_csv_row_and_exits_1(digits, model, tmp_path):
    (tmp_path / "notes.jpg").write_text("not an image")
    good = str(some_digits(digits, 1)[0])
    result = subprocess.run([str(VENV_BIN / "torchonspark"), "predict", "--model", str(model), "--csv", good,
                             str(tmp_path / "notes.jpg")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(row["input"], row["error"]) for row in rows] == [
        (good, ""), (str(tmp_path / "notes.jpg"), "not an image (OpenCV cannot decode it)")]
    assert float(rows[0]["probability_1"]) > 0 and result.stderr == ""


def test_a_folder_is_searched_recursively_for_images_in_path_order(digits, model, tmp_path, capsys):
    val = tmp_path / "val"
    for digit in (3, 5):
        shutil.copytree(digits / "val" / digit_wnid(digit), val / "digits" / digit_wnid(digit))
    (tmp_path / "empty").mkdir()
    (val / "digits" / "digit3" / "README.txt").write_text("not an image, and not named like one")
    (val / "digits" / "digit3" / "._0001.JPEG").write_bytes(b"macOS metadata")
    assert predict.main(["--model", str(model), "--json", "--top-k", "1", f"{val}/"]) == 0
    inputs = [json.loads(line)["input"] for line in capsys.readouterr().out.splitlines()]
    assert inputs == sorted(str(f) for f in val.rglob("[!.]*.JPEG")) and len(inputs) == len([*digits.glob("val/digit[35]/*")])
    assert predict.main(["--model", str(model), str(tmp_path / "empty")]) == 1
    assert capsys.readouterr().err.startswith(f"predict: {tmp_path / 'empty'}: a folder with no image files")


@pytest.mark.parametrize("argv, message", [
    ([], "the following arguments are required: IMAGE"),
    (["--top-k", "0", "x.jpg"], "--top-k and --batch-size must be at least 1"),
    (["--json", "--csv", "x.jpg"], "not allowed with argument"),
])
def test_usage_errors_are_one_line_and_exit_2(model, argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        predict.main(["--model", str(model), *argv])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and message in err and len(err.splitlines()) == 1


def test_a_folder_that_is_not_a_model_is_a_usage_error(digits, capsys):
    with pytest.raises(SystemExit) as stop:
        predict.main(["--model", str(digits), "x.jpg"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and len(err.splitlines()) == 1
    assert f"--model {digits} is not an exported model folder" in err and "Traceback" not in err


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # the requests would otherwise land in the captured stderr
        pass


@pytest.fixture
def served(digits, monkeypatch):
    """``digits`` over HTTP on the loopback interface, for the length of one test."""
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(digits)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def test_an_image_at_an_http_url_is_predicted_as_the_same_file_is(digits, model, served, capsys):
    file = some_digits(digits, 1)[0]
    url = f"{served}/{file.relative_to(digits).as_posix()}"
    assert predict.main(["--model", str(model), "--json", str(file), url, f"{served}/val/nothing.jpg"]) == 1
    by_file, by_url, missing = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert by_url == {"input": url, "top": by_file["top"]}
    assert missing == {"input": f"{served}/val/nothing.jpg", "error": "HTTP 404 File not found"}


# The README's lines run as they are, once per image, in a fresh interpreter holding only the files they name.
RUN_README = """
import shutil, sys, torch
snippet = open("snippet.py").read()
for image in sys.argv[1:]:
    shutil.copy(image, "image.jpg")
    scope = {}
    exec(snippet, scope)
    torch.save(scope["logits"].detach(), image + ".pt")
"""


def test_the_model_readme_runs_model_pt2_on_an_image_with_predicts_logits(model, photos, tmp_path):
    readme = (model / "README.md").read_text()
    snippet = re.search(r"```python\n(.*?)```", readme, re.DOTALL)[1]
    for name in ("model.pt2", "preprocessing.json", "labels.json"):
        shutil.copy(model / name, tmp_path / name)
    (tmp_path / "snippet.py").write_text(snippet)
    images = [str(shutil.copy(photo, tmp_path / photo.name)) for photo in photos]
    result = subprocess.run([sys.executable, "-c", RUN_README, *map(str, images)], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    classifier = load_classifier(fs.resolve(str(model)))
    for image, printed in zip(images, result.stdout.splitlines()):
        ours = logits_of(classifier.net, [image_input(Path(image).read_bytes(), classifier.transform)])
        assert torch.equal(torch.load(image + ".pt", weights_only=True), ours)
        assert printed.split()[0] == CLASS_NAMES[int(ours.argmax())]


def test_the_predict_job_loads_no_spark():
    code = ("import sys, torchonspark.sparkjobs.predict; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'pyspark', 'petastorm', 'py4j'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "[]", result.stderr[-2000:]
