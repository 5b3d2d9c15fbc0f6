"""The packed environment runs a real job through spark-submit, from the archive's own interpreter:
on local-cluster, and on YARN (the mini cluster) where the NodeManagers unpack it from HDFS.

Slow (about 15 minutes and 35 GB of temporary disk: the archive is 3.5 GB, and each executor or node
unpacks it), so `make test` leaves them out; `make test-slow` runs them.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hadoop import put_tree, spark_submit_yarn
from sparkwork import removing_new_spark_work_dirs

from torchonspark.datasets import fs
from torchonspark.datasets.digits import make_digits
from torchonspark.sparkjobs.pack_env import pack_env

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

JOB = Path(__file__).parent / "jobs" / "packed_env_job.py"
RECIPE = """model: {name: tiny, main_branch: normal, num_output_stage1: 16, blocks: [1, 1, 1, 1], fc_layers: false}
batch_size: 16
base_lr: 0.05
max_iter: 6
crop_size: 16
scale_range: [16, 20]
mirror: false
display: 3
"""


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    path = tmp_path_factory.mktemp("dist") / "env.tar.gz"
    pack_env(str(path))
    return path


def result_of(stdout: str) -> dict:
    return json.loads(next(line for line in stdout.splitlines() if line.startswith("RESULT "))[len("RESULT "):])


def test_packed_environment_converts_and_trains_on_a_local_cluster(archive, tmp_path):
    make_digits(str(tmp_path / "digits"), size=16)
    (tmp_path / "recipe.yaml").write_text(RECIPE)
    venv_python = sys.executable
    # local-cluster's executors are separate JVMs with their own Python workers and working folders,
    # as on YARN; they unpack the archive there and run ./env/bin/python.
    command = [
        str(Path(venv_python).with_name("spark-submit")),
        "--master", "local-cluster[2,1,1024]",
        "--archives", f"{archive}#env",
        "--conf", "spark.pyspark.python=./env/bin/python",
        "--conf", f"spark.pyspark.driver.python={venv_python}",
        str(JOB), str(tmp_path / "digits"), str(tmp_path / "work"), str(tmp_path / "recipe.yaml"),
    ]
    with removing_new_spark_work_dirs():
        result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYSPARK_DRIVER_PYTHON": venv_python},
                                timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = result_of(result.stdout)
    for executor in outcome["executors"]:
        assert executor["executable"] == str(Path(executor["cwd"]) / "env" / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}.real")
        assert executor["package"].startswith(str(Path(executor["cwd"]) / "env" / "lib"))
    assert len({executor["cwd"] for executor in outcome["executors"]}) == 2
    assert (outcome["converted"], outcome["iterations"], outcome["world_size"]) == (1437, 6, 2)


@pytest.mark.hadoop
def test_packed_environment_converts_and_trains_on_yarn_from_hdfs(archive, hadoop_cluster, tmp_path):
    hdfs = hadoop_cluster.hdfs_url
    put_tree(archive.parent, f"{hdfs}/apps")  # as a user puts it: the archive on HDFS, localized by YARN
    make_digits(f"{hdfs}/packed/digits", size=16)
    (tmp_path / "recipe.yaml").write_text(RECIPE)
    # Cluster mode: the driver, too, runs the packed interpreter, in YARN's application master.
    result = spark_submit_yarn(hadoop_cluster, JOB, f"{hdfs}/packed/digits", f"{hdfs}/packed/work", "recipe.yaml",
                               deploy_mode="cluster", files=(tmp_path / "recipe.yaml",),
                               conf={"spark.yarn.dist.archives": f"{hdfs}/apps/{archive.name}#env",
                                     "spark.pyspark.python": "./env/bin/python", "spark.pyspark.driver.python": "./env/bin/python"})
    assert result.returncode == 0 and "final status: SUCCEEDED" in result.stderr, (result.stdout + result.stderr)[-3000:]
    outcome = json.loads(fs.resolve(f"{hdfs}/packed/work/result.json").read_bytes())
    assert outcome["driver"].endswith("/env/bin/python3.11.real") and "/appcache/" in outcome["driver"]
    for executor in outcome["executors"]:
        assert executor["executable"].endswith("/env/bin/python3.11.real") and "/appcache/" in executor["executable"]
    assert (outcome["converted"], outcome["iterations"], outcome["world_size"]) == (1437, 6, 2)
