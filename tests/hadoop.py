"""The Hadoop mini cluster of tests/minicluster/ (HDFS and YARN in one JVM on this machine) as a child
process, for tests and for trying the YARN path. `make minicluster-jar` builds it; this only starts it,
waits for its ready line and stops it.

    with MiniCluster(work_dir) as cluster:
        subprocess.run(["spark-submit", "--master", "yarn", ...], env=cluster.env(), check=True)

In tests, the session fixture `hadoop_cluster` (import it into conftest.py) gives one cluster to all.
"""

import os
import re
import selectors
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

MINICLUSTER = Path(__file__).resolve().parent / "minicluster"
JVM_OPTIONS = MINICLUSTER / "jvm.options"
CLASSPATH_ARGS = MINICLUSTER / "target" / "classpath.args"  # written by `make minicluster-jar`
MAIN_CLASS = "torchonspark.minicluster.MiniCluster"
# What points a client at a cluster: a cluster's own JVM starts without them (see MiniCluster.start).
OTHER_CLUSTERS_VARIABLES = ("HADOOP_CONF_DIR", "YARN_CONF_DIR", "KRB5_CONFIG", "KRB5CCNAME", "SPARK_SUBMIT_OPTS",
                            "HADOOP_TOKEN_FILE_LOCATION")
REPO = MINICLUSTER.parents[1]


class MiniClusterError(RuntimeError):
    """The mini cluster could not be started: the message says why and ends with its stderr."""


@dataclass(frozen=True)
class Kerberos:
    """What a client of a secure mini cluster needs: the KDC's krb5.conf, the user's principal and
    keytab, and a ticket cache the cluster filled for that principal (no kinit needed)."""

    krb5_conf: Path
    principal: str
    keytab: Path
    ticket_cache: Path


class MiniCluster:
    """One mini cluster: HDFS (2 DataNodes) and YARN (2 NodeManagers, each offering nm_gpus of
    yarn.io/gpu) under work_dir: conf/ (the HADOOP_CONF_DIR of clients), data/ (HDFS blocks, container
    folders and logs, minicluster.log) and minicluster.stderr.

    secure=True Kerberizes both (MiniCluster.java's --secure: Kerberos on every RPC, wire encryption,
    delegation tokens for the apps); ``kerberos`` then says what clients need, and ``env()`` gives it
    to them."""

    def __init__(
        self,
        work_dir,
        *,
        nm_memory_mb: int = 4096,
        nm_vcores: int = 4,
        nm_gpus: int = 2,
        secure: bool = False,
        token_renew_s: int | None = None,
        token_max_lifetime_s: int | None = None,
        start_timeout_s: float = 120.0,
        stop_timeout_s: float = 60.0,
    ):
        self.work_dir = Path(work_dir).resolve()
        self.conf_dir = self.work_dir / "conf"
        self.data_dir = self.work_dir / "data"
        self.stderr_path = self.work_dir / "minicluster.stderr"
        self.flags = ["--nm-memory-mb", str(nm_memory_mb), "--nm-vcores", str(nm_vcores), "--nm-gpus", str(nm_gpus)]
        if secure:
            self.flags.append("--secure")
            if token_renew_s is not None:
                self.flags += ["--token-renew-s", str(token_renew_s)]
            if token_max_lifetime_s is not None:
                self.flags += ["--token-max-lifetime-s", str(token_max_lifetime_s)]
        self.secure = secure
        self.kerberos: Kerberos | None = None  # once a secure cluster is started
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.hdfs_url = None  # hdfs://localhost:PORT, once started
        self.rm_address = None  # localhost:PORT of the ResourceManager, once started
        self._process = None
        self._received = b""  # what the cluster wrote on stdout after the last line read
        self._commands = threading.Lock()  # one command and its answer at a time, from any thread

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info):
        self.stop()

    def env(self, base=None) -> dict:
        """An environment for clients (spark-submit, a Hadoop client): base (os.environ by default)
        with the cluster's configuration folder."""
        env = dict(os.environ if base is None else base)
        env["HADOOP_CONF_DIR"] = str(self.conf_dir)
        env["YARN_CONF_DIR"] = str(self.conf_dir)
        if self.kerberos is not None:
            env.update(kerberos_env(self.kerberos, self.kerberos.ticket_cache, env))
        return env

    def start(self) -> None:
        if self._process is not None:
            raise MiniClusterError("this mini cluster is already started")
        if not CLASSPATH_ARGS.exists():
            raise MiniClusterError(f"{CLASSPATH_ARGS} is missing: build the mini cluster first with `make minicluster-jar`")
        java = shutil.which("java")
        if java is None:
            raise MiniClusterError("java was not found on PATH: the mini cluster needs Java 17")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        command = [java, f"@{JVM_OPTIONS}", f"@{CLASSPATH_ARGS}", MAIN_CLASS,
                   "--conf-dir", str(self.conf_dir), "--base-dir", str(self.data_dir), *self.flags]
        # stderr to a file, not a pipe: nobody reads it while the cluster runs, and a full pipe would
        # block the JVM. stdin is the lifeline (the JVM stops when it closes, even if this process dies)
        # and carries the fault commands.
        # Its NodeManagers hand HADOOP_CONF_DIR on to every container (YARN's whitelist): their own
        # cluster's, never the one this process points at (the session's, when a test starts a second).
        environment = {key: value for key, value in os.environ.items() if key not in OTHER_CLUSTERS_VARIABLES}
        environment.update(HADOOP_CONF_DIR=str(self.conf_dir), YARN_CONF_DIR=str(self.conf_dir))
        with open(self.stderr_path, "wb") as stderr:
            self._process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, cwd=self.work_dir, env=environment
            )
        try:
            fields = self._wait_for_ready_line()
        except BaseException:
            self.stop()
            raise
        self.hdfs_url = fields["hdfs"]
        self.rm_address = fields["rm"]
        if self.secure:
            self.kerberos = Kerberos(Path(fields["krb5conf"]), fields["principal"], Path(fields["keytab"]), Path(fields["ccache"]))

    def kinit(self, name: str, ticket_cache: Path, lifetime_s: int) -> None:
        """Write a ticket cache for principal name (made on first use) whose ticket is valid lifetime_s
        seconds (a secure cluster's `kinit` command)."""
        self.command(f"kinit {name} {ticket_cache} {lifetime_s}")

    def _wait_for_ready_line(self) -> dict:
        """READY hdfs=URL rm=HOST:PORT -> {"hdfs": URL, "rm": HOST:PORT}."""
        line = self._read_line(self.start_timeout_s, "its ready line")
        words = line.split()
        if not words or words[0] != "READY":
            raise MiniClusterError(self._failure(f"wrote {line!r} instead of its ready line"))
        fields = dict(word.split("=", 1) for word in words[1:] if "=" in word)
        if not ({"hdfs", "rm"} | ({"krb5conf", "principal", "keytab", "ccache"} if self.secure else set())) <= fields.keys():
            raise MiniClusterError(self._failure(f"wrote an incomplete ready line {line!r}"))
        return fields

    def command(self, line: str, timeout_s: float = 120.0) -> str:
        """Send one of the cluster's commands (MiniCluster.java: restart-namenode, stop-datanode I,
        start-datanode, set-space-quota PATH BYTES, kinit NAME FILE SECONDS) and return its OK line;
        MiniClusterError otherwise."""
        with self._commands:
            if self._process is None:
                raise MiniClusterError("this mini cluster is not started")
            self._process.stdin.write(line.encode() + b"\n")
            self._process.stdin.flush()
            reply = self._read_line(timeout_s, f"its answer to {line!r}")
        if not reply.startswith("OK "):
            raise MiniClusterError(f"the mini cluster refused {line!r}: {reply}")
        return reply[3:]

    def _read_line(self, timeout_s: float, what: str) -> str:
        """The next line of the cluster's stdout; bounded in time and size."""
        deadline = time.monotonic() + timeout_s
        with selectors.DefaultSelector() as selector:
            selector.register(self._process.stdout, selectors.EVENT_READ)
            while b"\n" not in self._received:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise MiniClusterError(self._failure(f"did not write {what} within {timeout_s:.0f} s"))
                if not selector.select(timeout=min(remaining, 1.0)):
                    continue
                chunk = os.read(self._process.stdout.fileno(), 4096)
                if not chunk:  # stdout closed: the JVM is exiting
                    self._process.wait(timeout=10)
                    raise MiniClusterError(self._failure(f"exited with status {self._process.returncode} before it wrote {what}"))
                self._received += chunk
                if len(self._received) > 65536:
                    raise MiniClusterError(self._failure(f"wrote something other than {what} on stdout"))
        line, self._received = self._received.split(b"\n", 1)
        return line.decode()

    def _failure(self, what: str, lines: int = 40) -> str:
        try:
            tail = self.stderr_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            tail = ["(no stderr)"]
        return (f"the Hadoop mini cluster {what} (its full log: {self.data_dir / 'minicluster.log'}); "
                f"the end of {self.stderr_path}:\n" + "\n".join(tail))

    def stop(self) -> None:
        """Close stdin (the cluster stops YARN's containers, then itself), then SIGTERM, then SIGKILL,
        each after a bounded wait. Safe to call twice."""
        process, self._process = self._process, None
        if process is None:
            return
        try:
            process.stdin.close()
        except OSError:
            pass  # it is gone already
        try:
            process.wait(timeout=self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)
        finally:
            process.stdout.close()


def kerberos_env(kerberos: Kerberos, ticket_cache: Path, base: dict) -> dict:
    """The variables that point native clients (hdfs-native's GSSAPI) and Java ones (spark-submit's
    JVM, which ignores KRB5_CONFIG) at the mini cluster's KDC and at a ticket cache."""
    others = re.sub(r"-Djava\.security\.krb5\.conf=\S+", "", base.get("SPARK_SUBMIT_OPTS", "")).strip()  # another cluster's
    return {
        "KRB5_CONFIG": str(kerberos.krb5_conf),
        "KRB5CCNAME": str(ticket_cache),  # a path is a FILE: cache to both MIT and Java
        "SPARK_SUBMIT_OPTS": f"{others} -Djava.security.krb5.conf={kerberos.krb5_conf}".strip(),
    }


@pytest.fixture(scope="session")
def hadoop_cluster(tmp_path_factory):
    """HDFS and YARN for the whole session (started at first use, about 10 s), stopped at its end.
    Kerberized, as the clusters that hold such data are: every Hadoop test runs with Kerberos, wire
    encryption and delegation tokens. While it runs, this process's environment points at it (its
    configuration, its KDC and the user's ticket cache), as a user's shell on a gateway host would."""
    with MiniCluster(tmp_path_factory.mktemp("hadoop"), secure=True) as cluster:
        saved = dict(os.environ)
        os.environ.update(cluster.env())
        try:
            yield cluster
        finally:
            os.environ.clear()
            os.environ.update(saved)


SPARK_JARS = Path(__import__("pyspark").__file__).parent / "jars"
YARN_APP_TIMEOUT_S = 400  # far above any app here (about 20-60 s each); a hanging app fails its test


def yarn_properties(python: str) -> dict:
    """Spark properties for apps on the mini cluster: small containers for 2 cores, Spark's jars taken
    from this machine (local:, as the NodeManagers are here) instead of uploaded per app, the venv's
    Python everywhere, and no retries that would hide a failure."""
    return {
        "spark.yarn.jars": f"local:{SPARK_JARS}/*",
        "spark.pyspark.python": python,
        "spark.pyspark.driver.python": python,
        "spark.executor.instances": "2",
        "spark.executor.cores": "1",
        "spark.executor.memory": "512m",
        "spark.driver.memory": "512m",
        "spark.yarn.am.memory": "512m",
        "spark.ui.enabled": "false",
        "spark.dynamicAllocation.enabled": "false",
        "spark.yarn.maxAppAttempts": "1",
        "spark.task.maxFailures": "1",
        # no Hive here: without this, every submit to the Kerberized cluster loads Hive's configuration
        # (about 1 s) only to learn that no metastore token is needed
        "spark.security.credentials.hive.enabled": "false",
        # as conf/spark-yarn-*.conf: Spark's RPC authenticated and encrypted
        "spark.authenticate": "true",
        "spark.network.crypto.enabled": "true",
        # Spark's log at WARN, as the README runs the jobs (the client still reports the app's status)
        "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile={REPO / 'conf' / 'log4j2.properties'}",
    }


def spark_submit_yarn(cluster: MiniCluster, app: Path, *args: str, deploy_mode: str = "client", conf: dict | None = None,
                      files: tuple = (), python: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """spark-submit --master yarn of one app, bounded in time, with env's variables set over the
    cluster's environment. spark-submit merges the Python driver's stderr into its stdout; in cluster
    mode the driver's output stays in the AM container's log."""
    import sys

    python = python or sys.executable
    properties = {**yarn_properties(python), **(conf or {})}
    command = [str(Path(python).with_name("spark-submit")), "--master", "yarn", "--deploy-mode", deploy_mode]
    for key, value in properties.items():
        command += ["--conf", f"{key}={value}"]
    if files:
        command += ["--files", ",".join(map(str, files))]
    command += [str(app), *args]
    environment = {**cluster.env(), **(env or {}), "PYSPARK_PYTHON": python}
    try:
        return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=YARN_APP_TIMEOUT_S)
    except subprocess.TimeoutExpired as expired:
        raise AssertionError(f"spark-submit {app.name} {' '.join(args)} did not end within {YARN_APP_TIMEOUT_S} s") from expired


def put_tree(local: Path, url: str, threads: int = 8) -> int:
    """Copy a local folder's files to a URL (HDFS), in parallel; the number of files."""
    from concurrent.futures import ThreadPoolExecutor

    from torchonspark.datasets import fs

    target = fs.resolve(url)
    files = [path for path in sorted(local.rglob("*")) if path.is_file()]
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda path: target.join(str(path.relative_to(local))).write_bytes(path.read_bytes()), files))
    return len(files)


def yarn_applications(cluster: MiniCluster, python: str | None = None) -> list:
    """(id, state) of every application the ResourceManager knows, asked through Hadoop's YarnClient
    in a fresh JVM (the mini cluster's REST API does not answer)."""
    import sys

    code = (
        "from pyspark.java_gateway import launch_gateway; g = launch_gateway(); jvm = g.jvm\n"
        "c = jvm.org.apache.hadoop.yarn.client.api.YarnClient.createYarnClient()\n"
        "c.init(jvm.org.apache.hadoop.yarn.conf.YarnConfiguration()); c.start()\n"
        "print('\\n'.join(f'{a.getApplicationId().toString()} {a.getYarnApplicationState().toString()}' for a in c.getApplications()))\n"
        "c.stop(); g.shutdown()\n"
    )
    result = subprocess.run([python or sys.executable, "-c", code], capture_output=True, text=True, env=cluster.env(), timeout=120)
    if result.returncode != 0:
        raise AssertionError(f"asking YARN for its applications failed: {result.stderr[-2000:]}")
    return [tuple(line.split()) for line in result.stdout.splitlines() if line.startswith("application_")]


def write_spark_properties(path: Path, python: str) -> None:
    """A spark-submit --properties-file for the mini cluster (what `make minicluster` writes to
    build/spark-minicluster.conf, from the same properties the tests use)."""
    lines = ["# spark-submit --properties-file for the mini cluster of `make minicluster` (written by tests/hadoop.py)",
             "spark.master yarn"]
    lines += [f"{key} {value}" for key, value in yarn_properties(python).items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 3 or sys.argv[1] != "--spark-properties":
        sys.exit("usage: python tests/hadoop.py --spark-properties FILE")
    write_spark_properties(Path(sys.argv[2]), str(Path(sys.executable).absolute()))
