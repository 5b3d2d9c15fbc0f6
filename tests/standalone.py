"""A Spark standalone cluster on this machine whose master and workers are JVMs of their own (unlike
local-cluster, whose workers live in the driver's JVM): a test can lose a whole worker, as a node is
lost, so that the cluster cannot give its slot back, and add one later, as a node comes back.

    with StandaloneCluster(folder, workers=2) as cluster:   # spark://127.0.0.1:PORT, 1 core a worker
        ... cluster.lose_worker(pid) ... cluster.add_worker() ...
"""

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

SPARK_CLASS = Path(sys.executable).with_name("spark-class")
START_TIMEOUT_S = 60


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class StandaloneCluster:
    def __init__(self, folder: Path, workers: int, cores: int = 1, memory: str = "1g") -> None:
        self.folder, self.cores, self.memory = folder, cores, memory
        self.port = _free_port()
        self.url = f"spark://127.0.0.1:{self.port}"
        self.processes: list[subprocess.Popen] = []
        self._initial = workers

    def __enter__(self) -> "StandaloneCluster":
        try:
            self._start("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(self.port),
                        "--webui-port", "0")
            for _ in range(self._initial):
                self.add_worker()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def env(self) -> dict:
        """What a driver of this cluster runs with: the venv's Python on the executors too."""
        return {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}

    def add_worker(self) -> subprocess.Popen:
        """A new worker (a node joining), returned once the master has registered it."""
        index = len(self.processes)
        work = self.folder / f"worker-{index}"
        work.mkdir(parents=True)
        return self._start(f"worker-{index}", "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores",
                           str(self.cores), "--memory", self.memory, "--webui-port", "0", "--work-dir", str(work), self.url,
                           ready=r"Successfully registered with master")

    def worker_of(self, process: psutil.Process) -> psutil.Process | None:
        """The worker JVM a process runs under (an executor's parent), or None."""
        pids = {worker.pid for worker in self.processes[1:]}
        return next((parent for parent in process.parents() if parent.pid in pids), None)

    def _start(self, name: str, main: str, *args: str, ready: str = r"Starting Spark master|I have been elected leader") -> subprocess.Popen:
        log = self.folder / f"{name}.log"
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(log, "wb") as out:
            process = subprocess.Popen([str(SPARK_CLASS), main, *args], stdout=out, stderr=subprocess.STDOUT,
                                       env={**self.env(), "SPARK_LOG_DIR": str(self.folder), "SPARK_WORKER_DIR": str(self.folder)},
                                       start_new_session=True)
        self.processes.append(process)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not re.search(ready, log.read_text(errors="replace")):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the standalone {name} did not start: {log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.2)
        return process

    def stop(self) -> None:
        """Every JVM of the cluster, and what they started (executors and their workers), killed."""
        for process in reversed(self.processes):
            try:
                for child in psutil.Process(process.pid).children(recursive=True):
                    child.kill()
            except psutil.Error:
                pass
            process.kill()
            process.wait(timeout=30)
