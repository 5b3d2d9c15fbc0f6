"""Run by spark-submit in test_packed_env.py: which Python the executors run, then the digits
conversion and a short training, all on executors that use the packed environment.

    spark-submit ... packed_env_job.py DIGITS_ROOT WORK_DIR RECIPE
"""

import json
import sys

from torchonspark.datasets import fs
from torchonspark.sparkjobs.cluster.launch import launch
from torchonspark.sparkjobs.cluster.session import spark_session, task_cpus
from torchonspark.sparkjobs.convert_imagenet import convert_imagenet
from torchonspark.sparkjobs.engine.job import get_args_parser, job_from_args


def interpreter(_):
    import os
    import sys

    import torchonspark.netdefs

    return {"executable": sys.executable, "cwd": os.getcwd(), "package": torchonspark.netdefs.__file__}


def main(digits: str, work: str, recipe: str) -> None:
    with spark_session("packed-env-check") as spark:
        run_on(spark, digits, work, recipe)


def run_on(spark, digits: str, work: str, recipe: str) -> None:
    executors = spark.sparkContext.parallelize(range(2), 2).map(interpreter).collect()
    report = convert_imagenet(digits, f"{work}/parquet", spark=spark)
    args = get_args_parser().parse_args(["--conf", recipe, "--data", f"{work}/parquet", "--output", f"{work}/run"])
    summary = launch(job_from_args(args, threads=task_cpus(spark), device="cpu"), workers=2, use_gpu=False)
    result = json.dumps({"driver": sys.executable, "executors": executors, "converted": report["splits"]["train"]["converted"],
                         "iterations": summary["iterations"], "world_size": summary["world_size"]})
    print("RESULT " + result)
    fs.resolve(work).join("result.json").write_bytes(result.encode())  # for a cluster-mode driver, whose stdout stays in YARN


if __name__ == "__main__":
    main(*sys.argv[1:4])
