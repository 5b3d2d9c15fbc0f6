"""Gradient compression through DDP's communication hooks, on the real path: two workers under plain
torchrun (gloo) inside a network namespace of the test's own, whose loopback carries nothing but
their traffic, so its byte counter is what the gradients cost on the wire.

The digits recipe, shortened to 8 epochs, trained uncompressed and with bf16 gradients (and
gradient_as_bucket_view and static_graph on) reaches the same accuracy with half the bytes per
step; a short fp16 run halves them too. No Spark: the worker is the same under TorchDistributor.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from netns import ShapedLinks, can_make_namespaces, exec_in  # noqa: E402

pytestmark = pytest.mark.e2e

TIMEOUT_S = 240


def loopback_bytes(namespace: str) -> int:
    """Bytes the namespace's loopback has carried (its receive counter: on lo every byte sent is received)."""
    table = subprocess.run(exec_in(namespace, ["cat", "/proc/net/dev"]), capture_output=True, text=True, check=True).stdout
    line = next(line for line in table.splitlines() if line.strip().startswith("lo:"))
    return int(line.split(":", 1)[1].split()[0])


def train_in(namespace: str, recipe: Path, data: Path, run: Path, *flags: str) -> tuple[int, dict]:
    """Train under torchrun in ``namespace``; the bytes its loopback carried, and the run's summary."""
    before = loopback_bytes(namespace)
    torchrun = Path(sys.executable).with_name("torchrun")
    command = exec_in(namespace, [str(torchrun), "--nproc_per_node", "2", "-m", "torchonspark.sparkjobs.train_worker",
                                  "--recipe", str(recipe), "--data", str(data), "--output", str(run), "--no-tensorboard", *flags])
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return loopback_bytes(namespace) - before, json.loads((run / "summary.json").read_text())


def test_bf16_gradients_reach_the_same_digits_accuracy_with_half_the_bytes_per_step(digits_parquet, tmp_path):
    data, _ = digits_parquet
    digits = Path(__file__).resolve().parents[1] / "conf" / "digits.yaml"
    recipe = tmp_path / "digits_bf16.yaml"
    recipe.write_text(digits.read_text() + "gradient_compression: bf16\ngradient_as_bucket_view: true\nstatic_graph: true\n")
    shorter = ("--epochs", "8", "--test-interval", "0", "--snapshot", "0")
    why_not = can_make_namespaces()
    if why_not is not None:
        pytest.skip(f"network namespaces: {why_not}")
    with ShapedLinks(ranks=2, rate_bits=None) as links:  # torn down whatever happens; its veth is not used
        namespace = links.namespaces[0]  # both workers on this namespace's loopback, which carries nothing else
        plain, plain_summary = train_in(namespace, digits, data, tmp_path / "none", *shorter)
        compressed, summary = train_in(namespace, recipe, data, tmp_path / "bf16", *shorter)
        fp16, fp16_summary = train_in(namespace, digits, data, tmp_path / "fp16", "--max-iter", "20", "--test-interval", "0",
                                      "--snapshot", "0", "--gradient-compression", "fp16")
    assert summary["val_top1"] >= 0.97 and abs(summary["val_top1"] - plain_summary["val_top1"]) <= 0.015, (summary, plain_summary)
    assert summary["iterations"] == plain_summary["iterations"] == 176
    assert 0.45 < compressed / plain < 0.56, (compressed, plain)
    per_step = plain / plain_summary["iterations"]
    assert 0.45 < (fp16 / fp16_summary["iterations"]) / per_step < 0.6, (fp16, plain)
    job = json.loads((tmp_path / "bf16" / "job.json").read_text())
    assert job["recipe"]["gradient_compression"] == "bf16" and job["recipe"]["static_graph"] is True
