"""GPU plumbing without a GPU, as Spark's own tests do it: a fake discovery script reports two GPU
addresses; each barrier task must be given its own, and the worker must pick it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sparkwork import removing_new_spark_work_dirs

from torchonspark.sparkjobs.engine.distributed import cuda_index, select_device

JOB = Path(__file__).parent / "jobs" / "fake_gpu_job.py"


def test_the_worker_picks_its_local_rank_among_the_visible_gpus():
    assert cuda_index(0, 1) == 0  # a Spark task: one process, one GPU of its own
    assert [cuda_index(rank, 4) for rank in range(4)] == [0, 1, 2, 3]  # torchrun on a 4-GPU machine
    with pytest.raises(ValueError, match="no GPU"):
        cuda_index(0, 0)
    with pytest.raises(ValueError, match="local rank 1 has no GPU of its own"):
        cuda_index(1, 1)  # two processes sharing one GPU would make NCCL abort
    assert select_device("cpu", 3).type == "cpu"
    with pytest.raises(ValueError, match="device must be"):
        select_device("tpu", 0)


@pytest.mark.e2e
def test_each_barrier_task_is_given_its_own_gpu(tmp_path):
    script = tmp_path / "fake_gpus.sh"
    script.write_text('#!/bin/sh\necho \'{"name": "gpu", "addresses": ["0", "1"]}\'\n')
    script.chmod(0o755)
    with removing_new_spark_work_dirs():
        result = subprocess.run([sys.executable, str(JOB), str(script), str(tmp_path)], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"cluster-rank{rank}.json").read_text()) for rank in (0, 1)]
    assert all(len(rank["visible"]) == 1 and rank["index"] == 0 for rank in ranks), ranks
    assert sorted(rank["gpu"] for rank in ranks) == ["0", "1"], ranks
