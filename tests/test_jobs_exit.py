"""Every job file run the way a cluster user runs it, `spark-submit --master local[2] sparkjobs/JOB.py`:
the JVM exits when the job ends, with the job's exit status, on success and on failure. (A job that
left its Spark session or a barrier task's timer thread running kept spark-submit alive for good; on
YARN that is an application that never finishes.)"""

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from recipes import TINY

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
SPARK_SUBMIT = Path(sys.executable).with_name("spark-submit")
EXIT_TIMEOUT_S = 240  # far more than any of these jobs needs; a job whose JVM stays alive hits it


def spark_submit(job: str, *args: str) -> subprocess.CompletedProcess:
    command = [str(SPARK_SUBMIT), "--master", "local[2]", "--conf", "spark.ui.enabled=false",  # as the README runs them:
               "--driver-java-options", f"-Dlog4j2.configurationFile={REPO / 'conf' / 'log4j2.properties'}",
               str(REPO / "sparkjobs" / job), *args]
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    try:
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"spark-submit {job} {' '.join(args)} did not exit within {EXIT_TIMEOUT_S} s")


@pytest.fixture(scope="module")
def job_outcomes(digits_parquet, tmp_path_factory):
    """Every job file once through spark-submit: (outcome per job, the folder they wrote in)."""
    data, _ = digits_parquet
    tmp_path = tmp_path_factory.mktemp("jobs")
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(TINY)
    not_weights = tmp_path / "not-weights.pt"
    not_weights.write_bytes(b"not a torch file")
    run = tmp_path / "run"
    trainings = {  # one after another: evaluate and features read what train wrote
        "train": ("train_resnet.py", "--conf", str(recipe), "--data", str(data), "--output", str(run), "--workers", "2"),
        "evaluate": ("evaluate.py", "--model", str(run / "model"), "--data", str(data), "--output", str(tmp_path / "e.json")),
        "features": ("features.py", "--model", str(run / "model"), "--data", str(data), "--output", str(tmp_path / "f")),
    }
    others = {  # beside them, so that two jobs share the two cores (as a loaded cluster node would)
        "make_digits": ("make_digits.py", str(tmp_path / "digits"), "--size", "16"),
        "convert, a usage error": ("convert_imagenet.py", str(tmp_path / "digits"), str(data)),  # the tree make_digits wrote
        "doctor": ("doctor.py", "--workers", "2"),
        "pack_env, a usage error": ("pack_env.py", str(tmp_path / "env.zip")),
        "train, a worker failing": ("train_resnet.py", "--conf", str(recipe), "--data", str(data), "--output",
                                    str(tmp_path / "failed"), "--workers", "2", "--weights", str(not_weights)),
    }
    with ThreadPoolExecutor(2) as pool:
        in_turn = [pool.submit(lambda jobs=jobs: {name: spark_submit(*argv) for name, argv in jobs.items()})
                   for jobs in (trainings, others)]
        outcomes = {name: result for turn in in_turn for name, result in turn.result().items()}
    return outcomes, tmp_path


def test_every_job_file_exits_under_spark_submit_with_its_status(job_outcomes):
    outcomes, tmp_path = job_outcomes
    statuses = {job: result.returncode for job, result in outcomes.items()}
    assert statuses == {"make_digits": 0, "train": 0, "train, a worker failing": 1, "evaluate": 0, "features": 0, "doctor": 0,
                        "convert, a usage error": 2, "pack_env, a usage error": 2}, {
        job: (result.stdout + result.stderr)[-1500:] for job, result in outcomes.items() if result.returncode != statuses[job]}
    # spark-submit's PythonRunner merges the Python driver's stderr into its own stdout
    assert "top-1" in outcomes["evaluate"].stdout and (tmp_path / "e.json").exists()
    assert "already exists" in outcomes["convert, a usage error"].stdout
    assert "a worker failed" in outcomes["train, a worker failing"].stdout


def test_the_jobs_are_quiet_and_a_run_keeps_its_log(job_outcomes):
    outcomes, tmp_path = job_outcomes
    for job, result in outcomes.items():  # Spark at WARN, and no progress bar frames in a pipe
        output = result.stdout + result.stderr
        assert " INFO " not in output and "\r" not in output, (job, output[:2000])
    train = outcomes["train"].stdout
    assert "iter 2/2" in train and "done: val top-1" in train  # the workers' lines, on stdout as under torchrun
    log = (tmp_path / "run" / "train.log").read_text()
    assert "training tiny on 2 cpu worker(s)" in log and "iter 2/2" in log and "done: val top-1" in log
