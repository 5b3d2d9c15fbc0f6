"""Shared test set-up: one Spark session for the whole run, and small image trees made on the spot.

Spark's Python workers must run this interpreter (the venv's), whatever is first on PATH; it is set
before any session starts.
"""

import os
import sys

import pytest
from hadoop import hadoop_cluster  # noqa: F401 (a session fixture: the mini cluster, started at first use)

os.environ["PYSPARK_PYTHON"] = sys.executable
os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable


def pytest_collection_modifyitems(config, items):
    """Slow tests run only when the marker expression names them (`-m slow`): `-m e2e` or a plain run
    leaves them out (a -m given on the command line would otherwise replace an addopts default). The
    Hadoop tests run last, so that the mini cluster (started at their first use, stopped at the end of
    the session) does not idle beside the rest of the suite."""
    if "slow" not in (config.option.markexpr or ""):
        slow = [item for item in items if item.get_closest_marker("slow")]
        if slow:
            config.hook.pytest_deselected(items=slow)
            items[:] = [item for item in items if not item.get_closest_marker("slow")]
    # Whole modules, as a module's fixtures would otherwise be set up twice; the sort is stable.
    on_hadoop = {item.module for item in items if item.get_closest_marker("hadoop")}
    items.sort(key=lambda item: item.module in on_hadoop)


@pytest.fixture(scope="session")
def spark():
    from torchonspark.sparkjobs.cluster.session import get_spark

    session = get_spark(
        "torchonspark-tests",
        "local[2]",
        {"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "2", "spark.ui.showConsoleProgress": "false"},
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def digits_parquet(spark, tmp_path_factory):
    """The digits set converted once for every test that reads it."""
    from torchonspark.datasets.digits import make_digits
    from torchonspark.sparkjobs.convert_imagenet import convert_imagenet

    base = tmp_path_factory.mktemp("digits")
    make_digits(str(base / "digits"))
    report = convert_imagenet(str(base / "digits"), str(base / "parquet"), spark=spark)  # names from ROOT/synset_words.txt
    return base / "parquet", report
