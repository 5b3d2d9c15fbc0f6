"""YARN from the driver's side: is the ResourceManager there before an application is submitted, and
how much can it give a job now. Spark would otherwise wait on both: its YARN client retries an absent
ResourceManager for 15 minutes, and a barrier stage whose executors YARN cannot place waits about ten.

The configuration comes from the client's ``HADOOP_CONF_DIR`` (or ``YARN_CONF_DIR``); the capacity from
the ResourceManager through YarnClient, whose classes pyspark's Hadoop jars carry (py4j), so nothing
beyond pip is needed.
"""

from __future__ import annotations

import math
import os
import socket
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import SparkSession

GPU_RESOURCE = "yarn.io/gpu"
DEFAULT_RM_PORT = 8032
CONNECT_TIMEOUT_S = 5.0


def client_conf_dir(env: Mapping[str, str] = os.environ) -> str | None:
    return env.get("HADOOP_CONF_DIR") or env.get("YARN_CONF_DIR")


def site_properties(conf_dir: str, file_name: str) -> dict[str, str]:
    """The properties of one Hadoop *-site.xml file (empty if it is missing or unreadable)."""
    try:
        root = ElementTree.parse(Path(conf_dir) / file_name).getroot()
    except (OSError, ElementTree.ParseError):
        return {}
    return {(p.findtext("name") or "").strip(): (p.findtext("value") or "").strip() for p in root.iter("property")}


def resource_manager_addresses(conf_dir: str) -> list[str]:
    """host:port of the ResourceManager (of each one, with HA) as yarn-site.xml gives them."""
    properties = site_properties(conf_dir, "yarn-site.xml")

    def address(suffix: str = "") -> str:
        if properties.get(f"yarn.resourcemanager.address{suffix}"):
            return properties[f"yarn.resourcemanager.address{suffix}"]
        return f"{properties.get(f'yarn.resourcemanager.hostname{suffix}', '0.0.0.0')}:{DEFAULT_RM_PORT}"

    if properties.get("yarn.resourcemanager.ha.enabled", "").lower() == "true":
        ids = [rm.strip() for rm in properties.get("yarn.resourcemanager.ha.rm-ids", "").split(",") if rm.strip()]
        return [address(f".{rm}") for rm in ids] or [address()]
    return [address()]


def _answers(address: str, timeout_s: float) -> str | None:
    """None if a TCP connection to host:port opens, else why not."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "localhost", int(port)), timeout=timeout_s):
            return None
    except (OSError, ValueError) as error:
        return getattr(error, "strerror", None) or str(error) or type(error).__name__


def check_resource_manager(env: Mapping[str, str] = os.environ, timeout_s: float = CONNECT_TIMEOUT_S) -> str:
    """The address of a ResourceManager that answers; a one-line ValueError saying what to fix if
    there is no client configuration or no ResourceManager answers."""
    conf_dir = client_conf_dir(env)
    if not conf_dir:
        raise ValueError("--master yarn needs the cluster's client configuration: export HADOOP_CONF_DIR=/etc/hadoop/conf "
                         "(the folder holding yarn-site.xml and core-site.xml)")
    if not (Path(conf_dir) / "yarn-site.xml").is_file():
        raise ValueError(f"HADOOP_CONF_DIR={conf_dir} holds no yarn-site.xml; point it at the cluster's client configuration")
    problems = []
    for address in resource_manager_addresses(conf_dir):
        problem = _answers(address, timeout_s)
        if problem is None:
            return address
        problems.append(f"{address} ({problem})")
    raise ValueError(f"no YARN ResourceManager answers at {', '.join(problems)}: check that YARN is up and "
                     f"yarn.resourcemanager.address in {conf_dir}/yarn-site.xml")


@dataclass(frozen=True)
class NodeRoom:
    """What one running NodeManager has free now."""

    memory_mb: int
    vcores: int
    gpus: int


@dataclass(frozen=True)
class YarnCapacity:
    nodes: list[NodeRoom]
    job_executors: int = 0  # executor containers YARN has already given this application

    @property
    def free(self) -> NodeRoom:
        return NodeRoom(sum(n.memory_mb for n in self.nodes), sum(n.vcores for n in self.nodes), sum(n.gpus for n in self.nodes))

    def line(self) -> str:
        free = self.free
        return f"{len(self.nodes)} running NodeManagers with {free.memory_mb} MB, {free.vcores} vcores and {free.gpus} GPUs free"

    def containers_that_fit(self, memory_mb: int, vcores: int, gpus: int) -> int:
        """How many containers of this size YARN could place now, node by node."""
        total = 0
        for node in self.nodes:
            limits = [node.memory_mb // max(memory_mb, 1), node.vcores // max(vcores, 1)]
            if gpus > 0:
                limits.append(node.gpus // gpus)
            total += max(0, min(limits))
        return total


def yarn_capacity(spark: SparkSession) -> YarnCapacity | None:
    """The free resources of every running NodeManager, and the executor containers this application
    holds, asked of the ResourceManager; None where this driver has no credentials to ask with (a
    cluster-mode driver on a Kerberized YARN holds HDFS tokens, not a ticket or an RM token)."""
    jvm, gateway = spark.sparkContext._jvm, spark.sparkContext._gateway  # noqa: SLF001 (py4j is the only way in)
    if not _may_ask_resource_manager(jvm):
        return None
    records = jvm.org.apache.hadoop.yarn.api.records
    client = jvm.org.apache.hadoop.yarn.client.api.YarnClient.createYarnClient()
    client.init(jvm.org.apache.hadoop.yarn.conf.YarnConfiguration(spark.sparkContext._jsc.hadoopConfiguration()))  # noqa: SLF001
    client.start()
    try:
        states = gateway.new_array(records.NodeState, 1)
        states[0] = records.NodeState.RUNNING
        nodes = []
        for report in client.getNodeReports(states):
            capability, used = report.getCapability(), report.getUsed()
            nodes.append(NodeRoom(capability.getMemorySize() - used.getMemorySize(), capability.getVirtualCores() - used.getVirtualCores(),
                                  _gpus(capability) - _gpus(used)))
        app = records.ApplicationId.fromString(spark.sparkContext.applicationId)
        attempt = list(client.getApplicationAttempts(app))[-1]
        master = attempt.getAMContainerId()
        executors = [c for c in client.getContainers(attempt.getApplicationAttemptId())
                     if not c.getContainerId().equals(master) and c.getContainerState() != records.ContainerState.COMPLETE]
        return YarnCapacity(nodes, job_executors=len(executors))
    finally:
        client.stop()


def _may_ask_resource_manager(jvm: object) -> bool:
    users = jvm.org.apache.hadoop.security.UserGroupInformation
    if not users.isSecurityEnabled():
        return True
    user = users.getCurrentUser()
    return bool(user.hasKerberosCredentials()) or any(
        str(token.getKind()) == "RM_DELEGATION_TOKEN" for token in user.getCredentials().getAllTokens().toArray())


def _gpus(resource: object) -> int:
    try:
        return int(resource.getResourceValue(GPU_RESOURCE))
    except Exception:  # py4j's error for ResourceNotFoundException: this cluster declares no GPUs
        return 0


def executor_container(conf: Mapping[str, str]) -> NodeRoom:
    """The container Spark asks YARN for per executor: heap plus overhead (Spark's rule: 10%, at
    least 384 MB), plus PySpark's memory when set; spark.executor.cores; GPUs."""
    heap = _megabytes(conf.get("spark.executor.memory", "1g"))
    overhead = _megabytes(conf["spark.executor.memoryOverhead"]) if "spark.executor.memoryOverhead" in conf else max(384, math.ceil(heap * 0.10))
    pyspark = _megabytes(conf["spark.executor.pyspark.memory"]) if "spark.executor.pyspark.memory" in conf else 0
    gpus = float(conf.get("spark.executor.resource.gpu.amount", "0") or 0)
    return NodeRoom(heap + overhead + pyspark, int(conf.get("spark.executor.cores", "1")), math.ceil(gpus))


def _megabytes(size: str) -> int:
    """Spark's memory sizes ('512m', '4g', '2048' = MB) in MB."""
    size = size.strip().lower().rstrip("b")
    units = {"k": 1 / 1024, "m": 1, "g": 1024, "t": 1024 * 1024}
    if size and size[-1] in units:
        return math.ceil(float(size[:-1]) * units[size[-1]])
    return int(size)
