"""``torchonspark doctor``: is this machine and this Spark configuration ready to run the jobs?

    torchonspark doctor --data hdfs:///data/imagenet-parquet --workers 16
    spark-submit --properties-file conf/spark-yarn-gpu.conf sparkjobs/doctor.py --workers 16

One line per check, each failure with the fix; exit status 1 if any check fails. The checks are pure
functions of what they are given (environment, versions, Spark configuration) so each is tested in
the way it passes and the way it fails.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from torchonspark.datasets import fs, hadooptokens, hdfs, kerberos
from torchonspark.datasets.hdfs import first_line
from torchonspark.sparkjobs.cluster.preflight import (
    Check,
    check_dynamic_allocation,
    check_slots,
    check_yarn_room,
    registered_executor_cores,
    spark_conf,
)
from torchonspark.sparkjobs.cluster.session import spark_session
from torchonspark.sparkjobs.cluster.yarn import YarnCapacity, site_properties, yarn_capacity
from torchonspark.sparkjobs.commandline import OneLineErrorParser, job_main
from torchonspark.sparkjobs.engine.job import read_dataset_labels

# The versions tested together (constraints.txt; DESIGN.md says why each is pinned).
TESTED = {
    "pyspark": "3.5.",
    "petastorm": "0.12.1",
    "pyarrow": "14.0.",
    "numpy": "1.26.",
    "torch": "2.14.1",
    "torchvision": "0.29.1",
}
SPARK_JAVA_VERSIONS = (8, 11, 17)
CONSTRAINTS_FIX = "install the tested set: pip install -c constraints.txt -e . (make venv does)"


def check_java(env: Mapping[str, str], which: Callable[[str], str | None] = shutil.which) -> Check:
    java = str(Path(env["JAVA_HOME"]) / "bin" / "java") if env.get("JAVA_HOME") else which("java")
    if not java or not Path(java).exists():
        return Check("java", False, "no java found (JAVA_HOME unset and none on PATH)", "install OpenJDK 17 and set JAVA_HOME or PATH")
    result = subprocess.run([java, "-version"], capture_output=True, text=True)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr)
    if result.returncode != 0 or not match:
        return Check("java", False, f"{java} -version failed", "install OpenJDK 17 and set JAVA_HOME")
    major = int(match.group(2)) if match.group(1) == "1" else int(match.group(1))  # "1.8.0" is Java 8
    if major not in SPARK_JAVA_VERSIONS:
        return Check("java", False, f"Java {major} at {java}; Spark 3.5 runs on Java 8, 11 or 17", "set JAVA_HOME to a Java 17")
    return Check("java", True, f"Java {major} ({java})")


def installed_versions() -> dict[str, str]:
    versions = {}
    for name in TESTED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def check_versions(installed: Mapping[str, str], tested: Mapping[str, str] = TESTED) -> list[Check]:
    checks = []
    for name, expected in tested.items():
        version = installed.get(name)
        if version is None:
            checks.append(Check(name, False, "not installed", CONSTRAINTS_FIX))
        elif not version.startswith(expected):
            checks.append(Check(name, False, f"{version}, tested with {expected}*", CONSTRAINTS_FIX))
        else:
            checks.append(Check(name, True, version))
    return checks


def check_hdfs_client(env: Mapping[str, str]) -> Check:
    """Which HDFS client this process uses, and whether it can."""
    try:
        client = hdfs.chosen_client(env)
    except ValueError as error:
        return Check("hdfs client", False, str(error), f"unset {hdfs.CLIENT_VARIABLE}, or set it to {' or '.join(hdfs.CLIENTS)}")
    if client == hdfs.LIBHDFS:
        libhdfs = check_hdfs_environment(env)
        return Check("hdfs client", libhdfs.ok, f"libhdfs, as {hdfs.CLIENT_VARIABLE} asks: {libhdfs.detail}", libhdfs.fix)
    try:
        version = importlib.metadata.version("hdfs-native")
    except importlib.metadata.PackageNotFoundError:
        return Check("hdfs client", False, "hdfs-native is not installed", CONSTRAINTS_FIX)
    return Check("hdfs client", True, f"hdfs-native {version} (from pip: no JVM, libhdfs or CLASSPATH needed; "
                 f"{hdfs.CLIENT_VARIABLE}=libhdfs selects pyarrow's libhdfs, for HDFS encryption zones)")


def check_hadoop_conf(env: Mapping[str, str], needed: bool) -> Check:
    """The Hadoop client configuration: what YARN and hdfs:/// URLs (without a NameNode) need."""
    conf_dir = hdfs.hadoop_conf_dir(env)
    if conf_dir:
        default_fs = site_properties(conf_dir, "core-site.xml").get("fs.defaultFS", "unset")
        return Check("hadoop conf", True, f"HADOOP_CONF_DIR={conf_dir} (fs.defaultFS {default_fs})")
    if needed:
        return Check("hadoop conf", False, "HADOOP_CONF_DIR is not set",
                     "export HADOOP_CONF_DIR=/etc/hadoop/conf (the cluster's client configuration: core-site.xml, yarn-site.xml)")
    return Check("hadoop conf", True, "HADOOP_CONF_DIR unset: fine for local paths and hdfs://HOST:PORT URLs")


def check_hdfs_answers(env: Mapping[str, str]) -> Check | None:
    """Does the cluster's default HDFS (fs.defaultFS) answer? None when there is none to ask."""
    conf_dir = hdfs.hadoop_conf_dir(env)
    default_fs = site_properties(conf_dir, "core-site.xml").get("fs.defaultFS", "") if conf_dir else ""
    if not default_fs.startswith(("hdfs://", "viewfs://")):
        return None
    try:
        fs.resolve(default_fs.rstrip("/") + "/").exists()
    except (ValueError, OSError, RuntimeError) as error:
        return Check("hdfs", False, f"{default_fs} does not answer: {first_line(error)}",
                     f"check that HDFS is up and fs.defaultFS in {conf_dir}/core-site.xml")
    return Check("hdfs", True, f"{default_fs} answers")


def check_kerberos(env: Mapping[str, str]) -> Check | None:
    """Whether the client configuration asks for Kerberos, and what this process would authenticate to
    HDFS with: its delegation tokens (in a YARN container) or its ticket (principal, expiry). None
    without a Hadoop configuration."""
    conf_dir = hdfs.hadoop_conf_dir(env)
    if not conf_dir:
        return None
    if not kerberos.security_enabled(hdfs.configured_properties(conf_dir)):
        return Check("kerberos", True, f"off ({conf_dir}/core-site.xml asks for simple authentication)")
    token_file = env.get(kerberos.TOKEN_FILE_VARIABLE)
    if token_file:
        try:
            tokens = hadooptokens.read_tokens(token_file)
        except (OSError, ValueError) as error:
            return Check("kerberos", False, f"the delegation tokens in {token_file} cannot be read: {error}",
                         "run the job through spark-submit on the cluster, which gives its containers their tokens")
        kinds = ", ".join(sorted(f"{token.kind} for {token.service}" for token in tokens)) or "none"
        return Check("kerberos", True, f"on; delegation tokens in {token_file}: {kinds}")
    try:
        ticket = kerberos.current_ticket()
    except kerberos.TicketExpired:
        return Check("kerberos", False, "on, and this process's ticket has expired", kerberos.KINIT_HINT)
    except kerberos.KerberosUnavailable as error:
        return Check("kerberos", False, f"on, and this process has no ticket: {error}", kerberos.KINIT_HINT)
    if ticket.seconds_left <= 0:
        return Check("kerberos", False, f"on, and the ticket of {ticket.principal} has expired", kerberos.KINIT_HINT)
    expires = time.strftime("%Y-%m-%d %H:%M", time.localtime(time.time() + ticket.seconds_left))
    return Check("kerberos", True, f"on; ticket of {ticket.principal}, valid until {expires}")


def check_hdfs_environment(env: Mapping[str, str]) -> Check:
    """What pyarrow's libhdfs needs in every process that reads hdfs:// (driver and executors)."""
    missing = [name for name in ("JAVA_HOME", "HADOOP_HOME") if not env.get(name)]
    if missing:
        return Check("hdfs client", False, f"{' and '.join(missing)} unset", "export JAVA_HOME and HADOOP_HOME (and spark.executorEnv.* for executors)")
    folders = [env[name] for name in ("ARROW_LIBHDFS_DIR",) if env.get(name)] + [str(Path(env["HADOOP_HOME"]) / "lib" / "native")]
    library = next((Path(folder) / "libhdfs.so" for folder in folders if (Path(folder) / "libhdfs.so").exists()), None)
    if library is None:
        return Check("hdfs client", False, f"libhdfs.so not found in {', '.join(folders)}", "set ARROW_LIBHDFS_DIR to the folder holding libhdfs.so")
    if "hadoop" not in env.get("CLASSPATH", "").lower():
        return Check("hdfs client", False, "CLASSPATH holds no Hadoop jars", 'export CLASSPATH="$(hadoop classpath --glob)"')
    return Check("hdfs client", True, f"libhdfs at {library}, Hadoop jars on CLASSPATH")


def data_checks(url: str, env: Mapping[str, str]) -> list[Check]:
    checks = []
    try:
        location = fs.resolve(url)
        exists = location.exists()
    except (ValueError, OSError, RuntimeError) as error:
        return checks + [Check("data", False, first_line(error), "check the URL and the HDFS lines above")]
    if not exists:
        return checks + [Check("data", False, f"{url} does not exist", "check the URL, or convert the data first (torchonspark convert)")]
    try:
        labels = read_dataset_labels(location)
    except ValueError as error:
        return checks + [Check("data", False, str(error), "point --data at the OUTPUT of torchonspark convert")]
    return checks + [Check("data", True, f"{url}: train/, val/, labels.json of {len(labels)} classes")]


def check_gpu_scheduling(conf: Mapping[str, str], torch_gpus: int) -> list[Check]:
    checks = [Check("torch GPUs", True, f"{torch_gpus} visible to torch in this process" if torch_gpus else "none in this process (the driver needs none)")]
    task_gpus = float(conf.get("spark.task.resource.gpu.amount", "0") or 0)
    if task_gpus <= 0:
        return checks + [Check("Spark GPU scheduling", True, "off: training runs on CPUs (spark.task.resource.gpu.amount unset)")]
    local = conf.get("spark.master", "").startswith("local")
    side = "driver" if local else "executor"
    amount = float(conf.get(f"spark.{side}.resource.gpu.amount", "0") or 0)
    script = conf.get(f"spark.{side}.resource.gpu.discoveryScript") or (None if local else conf.get("spark.worker.resource.gpu.discoveryScript"))
    if amount < task_gpus:
        return checks + [Check("Spark GPU scheduling", False, f"spark.task.resource.gpu.amount {task_gpus:g} but spark.{side}.resource.gpu.amount {amount:g}",
                               f"set spark.{side}.resource.gpu.amount" + (" (conf/spark-yarn-gpu.conf does)" if side == "executor" else ""))]
    if not script:
        return checks + [Check("Spark GPU scheduling", False, f"no spark.{side}.resource.gpu.discoveryScript",
                               f"ship conf/get_gpus.sh with --files and set spark.{side}.resource.gpu.discoveryScript=./get_gpus.sh")]
    return checks + [Check("Spark GPU scheduling", True, f"{task_gpus:g} GPU per task, {amount:g} per {side}, discovered by {script}")]


def machine_checks(env: Mapping[str, str], data: str | None, master: str | None, java: Check) -> list[Check]:
    """What needs no Spark session: Java, versions, the HDFS client and configuration, the data."""
    checks = [java] + check_versions(installed_versions())  # pyspark's version is Spark's
    needs_conf = master == "yarn" or (data or "").startswith(("hdfs:///", "viewfs:///"))
    checks += [check_hdfs_client(env), check_hadoop_conf(env, needs_conf)]
    security = check_kerberos(env)
    checks += [security] if security is not None else []
    answers = check_hdfs_answers(env)
    checks += [answers] if answers is not None else []
    if data is not None:
        checks += data_checks(data, env)
    return checks


def spark_checks(conf: Mapping[str, str], workers: int | None, registered_cores: int | None, torch_gpus: int,
                 yarn: YarnCapacity | None) -> list[Check]:
    """What the Spark session's configuration (and, on YARN, the cluster) says about the jobs."""
    checks = check_gpu_scheduling(conf, torch_gpus) + [check_dynamic_allocation(conf)]
    if yarn is not None:
        checks.append(Check("YARN", True, yarn.line()))
    if workers is not None:
        use_gpu = float(conf.get("spark.task.resource.gpu.amount", "0") or 0) > 0
        checks.append(check_slots(conf, workers, use_gpu, registered_cores))
        if yarn is not None:
            checks.append(check_yarn_room(conf, workers, use_gpu, yarn))
    return checks


def spark_failure(error: BaseException) -> Check:
    """A Spark session that did not start, as one check line (the JVM's own message, not its trace)."""
    java = getattr(error, "java_exception", None)
    message = first_line(error) if java is None else str(java.getMessage() or java.toString()).strip().splitlines()[0]
    return Check("spark session", False, f"did not start: {message}", "fix the setting it names (spark-submit --conf, or conf/spark-*.conf)")


def get_args_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="doctor", description="Check Java, Spark, the tested versions, the data URL, GPUs and task slots.")
    parser.add_argument("--data", help="a data URL the jobs will read (e.g. hdfs:///data/imagenet-parquet)")
    parser.add_argument("--workers", type=int, help="barrier workers the train job will ask for")
    parser.add_argument("--master", help="Spark master when not run by spark-submit (default: local[*])")
    return parser


def run(args: argparse.Namespace) -> int:
    import torch  # only when run: importing torch takes seconds

    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be at least 1; got {args.workers}")
    java = check_java(os.environ)
    checks = machine_checks(os.environ, args.data, args.master, java)
    if java.ok:  # without a JVM there is no Spark session to ask
        try:
            with spark_session("torchonspark doctor", args.master) as spark:
                conf = spark_conf(spark)
                yarn = yarn_capacity(spark) if conf.get("spark.master") == "yarn" else None
                checks += spark_checks(conf, args.workers, registered_executor_cores(spark), torch.cuda.device_count(), yarn)
        except ValueError as error:  # our own refusal before Spark starts (no ResourceManager, no HADOOP_CONF_DIR)
            checks.append(Check("spark session", False, str(error)))
        except Exception as error:  # Spark's, from its JVM: said in one line, the session having failed
            checks.append(spark_failure(error))
    print("\n".join(check.line() for check in checks))
    failed = [check for check in checks if not check.ok]
    print(f"{len(checks) - len(failed)} of {len(checks)} checks passed")
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    return job_main(get_args_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
