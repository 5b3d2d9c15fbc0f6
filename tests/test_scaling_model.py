"""docs/scaling.md's table is what benchmarks/scaling_model.py makes of the committed inputs, and the model
behaves as a scaling model must: efficiency never above 1, and no higher on a slower link."""

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from scaling_model import GPU_COUNTS, load_recipes, predict  # noqa: E402

INPUTS = yaml.safe_load((ROOT / "docs" / "scaling_inputs.yaml").read_text())
SLOWEST_FIRST = ["10 GbE", "25 GbE", "100 GbE", "InfiniBand NDR"]


def test_the_committed_table_is_what_the_committed_inputs_give():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scaling_model.py"), "--check"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, "docs/scaling.md is stale: run .venv/bin/python benchmarks/scaling_model.py " + result.stderr


def test_every_input_names_its_source():
    def entries(node):
        if isinstance(node, dict):
            if "source" in node:
                yield node
            else:
                for child in node.values():
                    yield from entries(child)

    found = list(entries(INPUTS))
    assert len(found) >= 15 and all(entry["source"].strip() for entry in found)


def test_efficiency_is_at_most_one_and_falls_as_links_get_slower():
    for recipe in load_recipes(INPUTS):
        for compressed in (False, True):
            for gpus in GPU_COUNTS:
                efficiencies = [predict(INPUTS, recipe, link, gpus, compressed).efficiency for link in SLOWEST_FIRST]
                assert all(0 < e <= 1 for e in efficiencies)
                assert efficiencies == sorted(efficiencies), (recipe.name, gpus, compressed, efficiencies)
            # Beyond one node the link matters: the slowest is strictly worse than the fastest.
            assert (predict(INPUTS, recipe, SLOWEST_FIRST[0], 16, compressed).efficiency
                    < predict(INPUTS, recipe, SLOWEST_FIRST[-1], 16, compressed).efficiency)
