"""What YARN costs a job, against local[2]: the Hadoop mini cluster's start, and the same train job run
by spark-submit on --master local[2] and on --master yarn (client mode, 2 executors), same data on the
mini cluster's HDFS, same run.

    make minicluster-jar && .venv/bin/python benchmarks/yarn_overhead.py [--iterations 40] [--repeats 2]

The train job is the digits recipe cut to a few iterations, so that the fixed cost dominates: a
YARN application's submission, its application master and two executor containers starting.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from digits_data import digits_parquet

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from hadoop import MiniCluster, put_tree, spark_submit_yarn  # noqa: E402

CONF = REPO / "conf" / "digits.yaml"
TRAIN = REPO / "sparkjobs" / "train_resnet.py"


def train_args(data: str, output: str, iterations: int) -> list[str]:
    return ["--conf", str(CONF), "--data", data, "--output", output, "--workers", "2", "--max-iter", str(iterations),
            "--test-interval", "0", "--snapshot", "0"]


def local_run(cluster: MiniCluster, data: str, output: str, iterations: int) -> float:
    command = [str(Path(sys.executable).with_name("spark-submit")), "--master", "local[2]", "--conf", "spark.ui.enabled=false",
               str(TRAIN), *train_args(data, output, iterations)]
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, env={**cluster.env(), "PYSPARK_PYTHON": sys.executable})
    seconds = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"local[2] run failed:\n{result.stdout[-3000:]}")
    return seconds


def yarn_run(cluster: MiniCluster, data: str, output: str, iterations: int) -> float:
    started = time.monotonic()
    result = spark_submit_yarn(cluster, TRAIN, *train_args(data, output, iterations))
    seconds = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"YARN run failed:\n{result.stdout[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "torchonspark-bench")
    args = parser.parse_args()
    local_data = digits_parquet(args.work)
    with tempfile.TemporaryDirectory() as work:
        started = time.monotonic()
        cluster = MiniCluster(Path(work) / "hadoop")
        cluster.start()
        start_seconds = time.monotonic() - started
        try:
            os.environ["HADOOP_CONF_DIR"] = str(cluster.conf_dir)
            data = f"{cluster.hdfs_url}/data/digits-parquet"
            put_tree(local_data, data)
            local, yarn = [], []
            for repeat in range(args.repeats):  # interleaved, so that drift hits both alike
                local.append(local_run(cluster, data, f"{cluster.hdfs_url}/runs/local-{repeat}", args.iterations))
                yarn.append(yarn_run(cluster, data, f"{cluster.hdfs_url}/runs/yarn-{repeat}", args.iterations))
        finally:
            cluster.stop()
    print(f"digits recipe, {args.iterations} iterations on 2 workers, data and run folder on the mini cluster's HDFS, "
          f"best of {args.repeats}")
    print(f"mini cluster start (JVM to ready line)        {start_seconds:6.1f} s")
    print(f"spark-submit --master local[2]                {min(local):6.1f} s")
    print(f"spark-submit --master yarn (client mode)      {min(yarn):6.1f} s")
    print(f"YARN overhead per job                         {min(yarn) - min(local):6.1f} s")
    print(f"ratio yarn / local[2]                         {min(yarn) / min(local):6.2f}")


if __name__ == "__main__":
    main()
