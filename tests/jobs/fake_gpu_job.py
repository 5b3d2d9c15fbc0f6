"""Run by test_gpu_plumbing.py in its own process (it needs a SparkContext of its own): GPU
scheduling with a fake discovery script, through TorchDistributor's barrier tasks, on a cluster
master whose executors own the GPUs, as on YARN (here local-cluster: separate executor JVMs). Each
task records the GPUs it was given and the one the worker would pick. (On a local[N] master a task
that asks for a GPU was never scheduled here, so that path is not claimed.)

    python fake_gpu_job.py DISCOVERY_SCRIPT OUT_DIR
"""

import json
import os
import sys

from pyspark.ml.torch.distributor import TorchDistributor
from pyspark.sql import SparkSession


def record(out_dir: str, mode: str) -> None:
    from torchonspark.sparkjobs.engine.distributed import cuda_index

    visible = os.environ["CUDA_VISIBLE_DEVICES"].split(",")
    index = cuda_index(int(os.environ["LOCAL_RANK"]), len(visible))
    with open(os.path.join(out_dir, f"{mode}-rank{os.environ['RANK']}.json"), "w") as stream:
        json.dump({"visible": visible, "index": index, "gpu": visible[index]}, stream)


def run(mode: str, master: str, resource_side: str, script: str, out_dir: str) -> None:
    spark = (
        SparkSession.builder.master(master)
        .config("spark.ui.enabled", "false")
        .config(f"spark.{resource_side}.resource.gpu.amount", "2")
        .config(f"spark.{resource_side}.resource.gpu.discoveryScript", script)
        .config("spark.executor.resource.gpu.amount", "2")
        .config("spark.executor.cores", "2")
        .config("spark.task.resource.gpu.amount", "1")
        .getOrCreate()
    )
    try:
        TorchDistributor(num_processes=2, local_mode=False, use_gpu=True).run(record, out_dir, mode)
    finally:
        spark.stop()


if __name__ == "__main__":
    script, out_dir = sys.argv[1:3]
    run("cluster", "local-cluster[1,2,1024]", "worker", script, out_dir)
