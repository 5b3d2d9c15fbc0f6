"""Shared test set-up.

Spark's Python workers must run this interpreter (the venv's), whatever is first on PATH; set it
before any test starts a Spark session.
"""

import os
import sys

os.environ["PYSPARK_PYTHON"] = sys.executable
os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
