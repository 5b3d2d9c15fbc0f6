"""The driver's side of fresh HDFS delegation tokens, for a training run longer than they live.

Started with ``spark-submit --principal P --keytab K`` on YARN, Spark's driver logs in from the keytab
and gets new delegation tokens at about three quarters of their renewal interval, for its own JVM and
its executors' JVMs. The Python processes beside them (the training workers; a cluster-mode driver
itself) read the token file YARN wrote into their container at its start, which nobody rewrites: once
its tokens pass their maximum lifetime (7 days by default), each new HDFS connection fails. So
``TokenRelay`` reads the driver JVM's HDFS tokens every few seconds (py4j) and, when they change,
writes them over this process's own token file if it has one (a cluster-mode driver) and to a file
in the app's staging folder on HDFS (``.sparkStaging/APP``, which Spark makes readable by its owner
alone and removes when the app ends), from where each worker takes them (engine/credentials.py). Each
launch also carries the newest tokens in the job, for a relaunch after the first ones ended.

Without Kerberos, or off YARN, there is nothing to relay and nothing runs.
"""

from __future__ import annotations

import os
import sys
import threading

from py4j.protocol import Py4JError
from pyspark.sql import SparkSession

from torchonspark.datasets import fs
from torchonspark.datasets.hadooptokens import HDFS_DELEGATION_TOKEN, parse_tokens, replace_token_file
from torchonspark.datasets.hdfs import first_line
from torchonspark.datasets.kerberos import TOKEN_FILE_VARIABLE
from torchonspark.sparkjobs.engine.credentials import poll_interval_s

RELAY_FILE = "torchonspark-tokens"


def driver_tokens(spark: SparkSession) -> bytes | None:
    """The driver JVM's HDFS delegation tokens as a token storage file (Hadoop's Writable format), or
    None when it holds none (no Kerberos). Other credentials (Spark's own secret, YARN's tokens) stay."""
    jvm = spark.sparkContext._jvm
    security = jvm.org.apache.hadoop.security
    held = security.UserGroupInformation.getCurrentUser().getCredentials()
    relayed = security.Credentials()
    for token in held.getAllTokens().toArray():
        if token.getKind().toString() == HDFS_DELEGATION_TOKEN:
            relayed.addToken(token.getService(), token)
    if relayed.numberOfTokens() == 0:
        return None
    buffer = jvm.java.io.ByteArrayOutputStream()
    relayed.writeTokenStorageToStream(jvm.java.io.DataOutputStream(buffer))
    return bytes(buffer.toByteArray())


def staging_folder(spark: SparkSession) -> fs.Location | None:
    """The YARN app's staging folder (spark.yarn.stagingDir, else the user's HDFS home, then
    .sparkStaging/APP), if it is there."""
    context = spark.sparkContext
    base = context.getConf().get("spark.yarn.stagingDir", None)
    if not base:
        hadoop_conf = context._jsc.hadoopConfiguration()
        base = context._jvm.org.apache.hadoop.fs.FileSystem.get(hadoop_conf).getHomeDirectory().toString()
    folder = fs.resolve(f"{base.rstrip('/')}/.sparkStaging/{context.applicationId}")
    return folder if folder.is_dir() else None


class TokenRelay:
    """The driver's newest HDFS tokens (``current``), relayed to ``location`` while it is entered."""

    def __init__(self, spark: SparkSession) -> None:
        self._spark = spark
        on_yarn = spark.sparkContext.getConf().get("spark.master", "") == "yarn"
        self.current: bytes | None = driver_tokens(spark) if on_yarn else None
        try:
            staging = staging_folder(spark) if self.current is not None else None
        except OSError as error:  # the run can start without: its tokens then last as long as the first ones
            print(f"tokens: no staging folder to relay fresh delegation tokens through: {first_line(error)}",
                  file=sys.stderr, flush=True)
            staging = None
        self.location: fs.Location | None = staging.join(RELAY_FILE) if staging is not None else None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> TokenRelay:
        if self.location is not None:
            self._publish(self.current)
            self._thread = threading.Thread(target=self._follow, daemon=True, name="torchonspark-token-relay")
            self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.location is not None:
            try:
                self.location.fs.delete_file(self.location.path)  # Spark removes the folder too; not left if it is kept
            except OSError:
                pass

    def _follow(self) -> None:
        while not self._stop.wait(poll_interval_s(parse_tokens(self.current))):
            try:
                data = driver_tokens(self._spark)
                if data is not None and data != self.current:
                    self._publish(data)
            except Py4JError:  # the JVM is going away: the run is ending
                return
            except (OSError, ValueError) as error:  # tried again at the next look
                print(f"tokens: could not relay the driver's fresh delegation tokens to {self.location.url}: "
                      f"{first_line(error)}", file=sys.stderr, flush=True)

    def _publish(self, data: bytes) -> None:
        own = os.environ.get(TOKEN_FILE_VARIABLE)
        if own:  # a cluster-mode driver: its own HDFS connections need them too
            replace_token_file(own, data)
        self.location.write_bytes_atomically(data)
        self.current = data
