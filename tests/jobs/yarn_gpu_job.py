"""Run by test_hadoop.py with spark-submit --master yarn (client mode) and GPU scheduling on: two
barrier tasks through TorchDistributor, as the train job launches them, each recording the GPUs Spark
gave it and the one the worker would pick, and how it reaches HDFS (on a Kerberized cluster: with
its container's delegation tokens, and no ticket); then what YARN allocated to each of the app's
containers.
Training needs no GPU for this: the plumbing is YARN's and Spark's.

    spark-submit --master yarn --conf spark.executor.resource.gpu.amount=1 ... yarn_gpu_job.py OUT_URL

Prints one line: GPUS {"ranks": [...], "containers": [...]}.
"""

import json
import os
import subprocess
import sys

from pyspark.ml.torch.distributor import TorchDistributor
from pyspark.sql import SparkSession
from yarn_smoke_job import yarn_containers

from torchonspark.datasets import fs


def credentials(out_url: str) -> dict:
    """How this worker reaches HDFS: the tokens YARN gave its container, whether it also holds a
    Kerberos ticket, and what a read does in a child process without the token file."""
    from torchonspark.datasets import hadooptokens, kerberos

    token_file = os.environ.get(kerberos.TOKEN_FILE_VARIABLE)
    try:
        ticket = kerberos.current_ticket().principal
    except kerberos.KerberosUnavailable:
        ticket = None
    without_token = {key: value for key, value in os.environ.items() if key != kerberos.TOKEN_FILE_VARIABLE}
    child = subprocess.run([sys.executable, "-c", f"from torchonspark.datasets import fs; fs.resolve({out_url!r}).exists()"],
                           capture_output=True, text=True, env=without_token, timeout=60)
    return {"tokens": sorted(token.kind for token in hadooptokens.read_tokens(token_file)) if token_file else None,
            "ticket": ticket, "without_token": child.returncode, "without_token_error": child.stderr.strip().splitlines()[-1:]}


def record(out_url: str) -> None:
    from torchonspark.sparkjobs.engine.distributed import cuda_index

    visible = os.environ["CUDA_VISIBLE_DEVICES"].split(",")
    found = {"visible": visible, "index": cuda_index(int(os.environ["LOCAL_RANK"]), len(visible)),
             "container": os.environ.get("CONTAINER_ID", os.getcwd()), "credentials": credentials(out_url)}
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
