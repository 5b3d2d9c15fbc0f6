"""The packed environment runs a real job through spark-submit, from the archive's own interpreter.

Slow (about 4 minutes and 25 GB of temporary disk: the archive is 3.5 GB and each of the driver and
two executors unpacks it), so `make test` leaves it out; `make test-slow` runs it.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sparkwork import removing_new_spark_work_dirs

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
