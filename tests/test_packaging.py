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


def imported_after(code: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running ``code``."""
    result = subprocess.run([sys.executable, "-c", code + "; import sys; print(' '.join(sys.modules))"],
                            capture_output=True, text=True, check=True)
    return set(result.stdout.split())


def test_the_training_worker_and_the_engine_load_neither_pyspark_nor_petastorm():
    engine = sorted(path.stem for path in (REPO / "sparkjobs" / "engine").glob("*.py") if path.stem != "__init__")
    code = "import torchonspark.sparkjobs.train_worker; " + "; ".join(f"import torchonspark.sparkjobs.engine.{m}" for m in engine)
    loaded = imported_after(code)
    assert "torchonspark.sparkjobs.engine.worker" in loaded
    assert {m.split(".")[0] for m in loaded} & {"pyspark", "petastorm", "py4j"} == set()


def sparkjobs_imports(path: Path) -> set[str]:
    """The torchonspark.sparkjobs modules a source file imports (at any depth of the file)."""
    import ast

    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("torchonspark.sparkjobs"):
            names |= {node.module} if node.module.count(".") > 1 else {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names if alias.name.startswith("torchonspark.sparkjobs")}
    return names


def test_sparkjobs_dependencies_flow_from_the_jobs_to_the_cluster_glue_to_the_engine():
    engine = [*(REPO / "sparkjobs" / "engine").glob("*.py")]
    cluster = [*(REPO / "sparkjobs" / "cluster").glob("*.py")]
    for path in engine:
        outside = {m for m in sparkjobs_imports(path) if not m.startswith("torchonspark.sparkjobs.engine")}
        assert outside <= {"torchonspark.sparkjobs.commandline"}, f"{path.name} imports {outside}"
    for path in cluster:
        outside = {m for m in sparkjobs_imports(path) if not m.startswith(("torchonspark.sparkjobs.engine", "torchonspark.sparkjobs.cluster"))}
        assert outside == set(), f"cluster/{path.name} imports {outside}"
    assert len(engine) >= 8 and len(cluster) >= 4
