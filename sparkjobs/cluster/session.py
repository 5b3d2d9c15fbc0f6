"""The Spark session every driver uses, and its end: a job stops what it started, so that the JVM of
``spark-submit JOB.py`` exits (on YARN, an application that never finishes holds its containers)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from importlib import resources

from pyspark import SparkConf, SparkContext
from pyspark.sql import SparkSession

from torchonspark.sparkjobs.cluster.yarn import check_resource_manager

DEFAULT_MASTER = "local[*]"
PROGRESS_BAR = "spark.ui.showConsoleProgress"


def launched_by_spark_submit() -> bool:
    """spark-submit starts the JVM first and hands its gateway to Python in this variable; its
    --master (or spark-defaults.conf) then decides the master. (A SparkConf made before the
    SparkContext cannot tell: it does not see the JVM's properties yet.)"""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def planned_master(master: str | None) -> tuple[str, str]:
    """The master and deploy mode a new session will have: ``master`` if given, else what spark-submit
    configured (read from its JVM, which is already running; no context is started), else local[*]."""
    if master is not None:
        return master, "client"
    conf = spark_submit_conf()
    if conf is None:
        return DEFAULT_MASTER, "client"
    return conf.get("spark.master", DEFAULT_MASTER), conf.get("spark.submit.deployMode", "client")


def spark_submit_conf() -> SparkConf | None:
    """What spark-submit configured, read from its JVM (already running; no context is started), or
    None when spark-submit did not start this process."""
    if not launched_by_spark_submit():
        return None
    SparkContext._ensure_initialized()  # noqa: SLF001 (connects to spark-submit's JVM)
    return SparkConf()


def get_spark(app_name: str, master: str | None = None, config: Mapping[str, str] | None = None) -> SparkSession:
    """The active session, or a new one: on ``master`` if given, else what spark-submit configured,
    else ``local[*]``.

    Python workers must run this interpreter (the one with torch and this package), so it is set as
    ``PYSPARK_PYTHON`` unless the environment or spark-submit already chose one. A YARN client-mode
    driver first checks that a ResourceManager answers (ValueError if not): Spark would retry for 15
    minutes.
    """
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    if planned_master(master) == ("yarn", "client"):
        check_resource_manager()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    if not launched_by_spark_submit() and not _user_log_configuration():
        # The JVM starts with this session: its options are read now or never.
        builder = builder.config("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile={quiet_log_configuration()}")
    if master is not None:
        builder = builder.master(master)
    elif not launched_by_spark_submit():
        builder = builder.master(DEFAULT_MASTER)
    submitted = spark_submit_conf()
    if submitted is None or not submitted.contains(PROGRESS_BAR):
        # Spark draws its stage progress bar with carriage returns: a console shows it, a log file
        # or a pipe would keep every frame.
        builder = builder.config(PROGRESS_BAR, str(sys.stderr.isatty()).lower())
    for key, value in (config or {}).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def quiet_log_configuration() -> str:
    """conf/log4j2.properties, wherever the package is installed: Spark at WARN."""
    return str(resources.files("torchonspark.conf") / "log4j2.properties")


def _user_log_configuration() -> bool:
    """Whether the user chose Spark's logging already (a log4j2.properties in SPARK_CONF_DIR, or their
    own driver options), which then wins over ours."""
    conf_dir = os.environ.get("SPARK_CONF_DIR")
    return bool(conf_dir and os.path.exists(os.path.join(conf_dir, "log4j2.properties"))) or bool(
        os.environ.get("SPARK_SUBMIT_OPTS") or os.environ.get("PYSPARK_SUBMIT_ARGS"))


@contextmanager
def spark_session(app_name: str, master: str | None = None) -> Iterator[SparkSession]:
    """The session a job runs in, stopped when the job ends, whether it succeeded or failed, if the
    job started it. A session that was already active (the caller's, a test suite's) is left running."""
    started_here = SparkSession.getActiveSession() is None
    spark = get_spark(app_name, master)
    try:
        yield spark
    finally:
        if started_here:
            stop_spark(spark)


def stop_spark(spark: SparkSession) -> None:
    """Stop the session and what it leaves behind that would keep the JVM alive. A barrier task's
    ``barrier()``/``allGather()`` starts a timer thread that is not a daemon and that nothing ever
    cancels (Spark 3.5's BarrierTaskContext); on local masters that task ran in the driver's JVM, so
    spark-submit would wait for it forever after the job returned."""
    jvm = spark.sparkContext._jvm  # noqa: SLF001 (the gateway outlives the context)
    spark.stop()
    if jvm is not None:
        barrier_context = getattr(jvm.org.apache.spark, "BarrierTaskContext$").__getattr__("MODULE$")
        getattr(barrier_context, "org$apache$spark$BarrierTaskContext$$timer")().cancel()


def task_cpus(spark: SparkSession) -> int:
    """CPUs Spark gives each task (spark.task.cpus): a task's torch and decoding threads."""
    return int(spark.conf.get("spark.task.cpus", "1"))
