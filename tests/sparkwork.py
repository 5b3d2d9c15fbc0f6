"""local-cluster masters leave each application's executor folders under SPARK_HOME/work (here, in
the venv's pyspark package); tests that start one remove what they added."""

import shutil
from contextlib import contextmanager
from pathlib import Path

import pyspark

SPARK_WORK = Path(pyspark.__file__).parent / "work"


@contextmanager
def removing_new_spark_work_dirs():
    before = set(SPARK_WORK.iterdir()) if SPARK_WORK.exists() else set()
    try:
        yield
    finally:
        for created in (set(SPARK_WORK.iterdir()) if SPARK_WORK.exists() else set()) - before:
            shutil.rmtree(created, ignore_errors=True)
