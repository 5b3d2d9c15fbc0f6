"""Run by test_hadoop.py with spark-submit --master yarn (client mode) and GPU scheduling on: two
barrier tasks through TorchDistributor, as the train job launches them, each recording the GPUs Spark
gave it and the one the worker would pick; then what YARN allocated to each of the app's containers.
Training needs no GPU for this: the plumbing is YARN's and Spark's.

    spark-submit --master yarn --conf spark.executor.resource.gpu.amount=1 ... yarn_gpu_job.py OUT_URL

Prints one line: GPUS {"ranks": [...], "containers": [...]}.
"""

import json
import os
import sys

from pyspark.ml.torch.distributor import TorchDistributor
from pyspark.sql import SparkSession
from yarn_smoke_job import yarn_containers

from torchonspark.datasets import fs


def record(out_url: str) -> None:
    from torchonspark.sparkjobs.engine.distributed import cuda_index

    visible = os.environ["CUDA_VISIBLE_DEVICES"].split(",")
    found = {"visible": visible, "index": cuda_index(int(os.environ["LOCAL_RANK"]), len(visible)),
             "container": os.environ.get("CONTAINER_ID", os.getcwd())}
    fs.resolve(out_url).join(f"rank{os.environ['RANK']}.json").write_bytes(json.dumps(found).encode())


def main(out_url: str) -> None:
    spark = SparkSession.builder.appName("yarn-gpu-check").getOrCreate()
    try:
        TorchDistributor(num_processes=2, local_mode=False, use_gpu=True).run(record, out_url)
        ranks = [json.loads(fs.resolve(out_url).join(f"rank{rank}.json").read_bytes()) for rank in (0, 1)]
        print("GPUS " + json.dumps({"ranks": ranks, "containers": yarn_containers(spark)}), flush=True)
    finally:
        spark.stop()


if __name__ == "__main__":
    main(sys.argv[1])
