"""The Spark session every driver uses."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from pyspark.sql import SparkSession

DEFAULT_MASTER = "local[*]"


def launched_by_spark_submit() -> bool:
    """spark-submit starts the JVM first and hands its gateway to Python in this variable; its
    --master (or spark-defaults.conf) then decides the master. (A SparkConf made before the
    SparkContext cannot tell: it does not see the JVM's properties yet.)"""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def get_spark(app_name: str, master: str | None = None, config: Mapping[str, str] | None = None) -> SparkSession:
    """The active session, or a new one: on ``master`` if given, else what spark-submit configured,
    else ``local[*]``.

    Python workers must run this interpreter (the one with torch and this package), so it is set as
    ``PYSPARK_PYTHON`` unless the environment or spark-submit already chose one.
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    if master is not None:
        builder = builder.master(master)
    elif not launched_by_spark_submit():
        builder = builder.master(DEFAULT_MASTER)
    for key, value in (config or {}).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def task_cpus(spark: SparkSession) -> int:
    """CPUs Spark gives each task (spark.task.cpus): a task's torch and decoding threads."""
    return int(spark.conf.get("spark.task.cpus", "1"))
