"""The package's shape: namespace import names, and dependencies that flow one way."""

import importlib.util
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_subpackages_import_under_the_torchonspark_namespace():
    for name in ("torchonspark.netdefs", "torchonspark.datasets", "torchonspark.sparkjobs", "torchonspark.conf"):
        assert importlib.util.find_spec(name) is not None, name


def test_nothing_installs_a_top_level_datasets_module(tmp_path):
    # From another folder, so the repository's own datasets/ is not on sys.path as the cwd.
    code = "import importlib.util; spec = importlib.util.find_spec('datasets'); print(spec.origin if spec else '')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert not result.stdout.strip().startswith(str(REPO))


def test_netdefs_imports_neither_spark_nor_data_libraries():
    code = (
        "import sys, torchonspark.netdefs, torchonspark.netdefs.cli; "
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules} & {'pyspark', 'petastorm', 'pyarrow', 'pandas', 'cv2'})), "
        "' '.join(m for m in sys.modules if m.startswith(('torchonspark.sparkjobs', 'torchonspark.datasets'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == []
