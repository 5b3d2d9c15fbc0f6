"""A worker lost after the run has finished never hangs the driver, and no process of a run outlives
it: real faults on local[2] barrier tasks, a worker that aborts itself after summary.json is written
and one that stops itself (SIGSTOP) there. The driver takes the run's summary within seconds; the
torchruns and workers are gone within 10 s (engine/lifeline.py kills a stopped one)."""

import time

import pytest
from pyspark import cloudpickle

import after_finish
from faults import left_after
from recipes import TINY
from torchonspark.sparkjobs.cluster.supervisor import Supervisor
from torchonspark.sparkjobs.engine.job import get_args_parser, job_from_args

pytestmark = pytest.mark.e2e

OUTLIVE_S = 10
GRACE_S = 3  # the driver's wait after the run is whole (10 s by default)


@pytest.fixture(scope="module", autouse=True)
def ship_by_value():
    cloudpickle.register_pickle_by_value(after_finish)  # the tasks import no test module
    yield
    cloudpickle.unregister_pickle_by_value(after_finish)


@pytest.mark.parametrize("fault", [after_finish.abort_after_finish, after_finish.stop_after_finish],
                         ids=["SIGABRT after the summary", "SIGSTOP after the summary"])
def test_a_worker_lost_after_the_run_finished_ends_the_job_with_its_summary_and_leaves_nothing(spark, digits_parquet, tmp_path, fault):
    data, _ = digits_parquet
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(TINY)
    args = get_args_parser().parse_args(["--recipe", str(recipe), "--data", str(data), "--output", str(tmp_path / "run"), "--workers", "2"])
    job = job_from_args(args, threads=1, device="cpu")
    supervisor = Supervisor(spark, job, 2, use_gpu=False, stall_timeout_s=600, worker=fault, finished_grace_s=GRACE_S)

    summary = supervisor.run()
    returned = time.time()

    assert summary["iterations"] == 2 and supervisor.restarts == []
    written = (tmp_path / "run" / "summary.json").stat().st_mtime
    assert returned - written < GRACE_S + 15, f"the driver returned {returned - written:.0f} s after summary.json"
    assert left_after(OUTLIVE_S) == []
    assert "after the run had finished" in (tmp_path / "run" / "train.log").read_text()
