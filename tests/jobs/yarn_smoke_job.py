"""Run by spark-submit --master yarn against the Hadoop mini cluster (tests/hadoop.py), in client or
cluster mode: writes a small DataFrame as Parquet to HDFS and reads it back. With --gpus N it also runs a
barrier stage of N tasks that each report the GPU addresses Spark gave them, and asks YARN what it
allocated to each of the app's containers (one yarn.io/gpu per executor, none to the AM).

    spark-submit --master yarn --deploy-mode client|cluster ... yarn_smoke_job.py OUT_URL [--gpus N]

Anything unexpected raises, so the app fails: spark-submit's exit status says so in both modes. The
findings are printed as one JSON line starting with SMOKE (the driver's stdout: the terminal in client
mode, the AM container's stdout log in cluster mode).
"""

import argparse
import json

from pyspark import BarrierTaskContext
from pyspark.sql import SparkSession

ROWS = 1000


def write_and_read_back(spark, out_url: str) -> dict:
    frame = spark.range(ROWS).selectExpr("id", "id * id AS square", "CAST(id % 7 AS STRING) AS bucket")
    frame.write.parquet(out_url)  # refuses an existing output: each run names a new one
    back = spark.read.parquet(out_url)
    found = {"rows": back.count(), "sum_of_squares": back.groupBy().sum("square").first()[0]}
    expected = {"rows": ROWS, "sum_of_squares": sum(i * i for i in range(ROWS))}
    if found != expected:
        raise RuntimeError(f"read back {found} from {out_url}, wrote {expected}")
    return found


def gpus_seen_by_barrier_tasks(spark, tasks: int) -> list:
    def report(_):
        context = BarrierTaskContext.get()
        context.barrier()  # all tasks run at once, or none does
        yield {"partition": context.partitionId(), "gpus": list(context.resources()["gpu"].addresses)}

    seen = spark.sparkContext.parallelize(range(tasks), tasks).barrier().mapPartitions(report).collect()
    if len(seen) != tasks or any(len(task["gpus"]) != 1 for task in seen):
        raise RuntimeError(f"barrier tasks saw GPUs {seen}, expected one each for {tasks} tasks")
    return seen


def yarn_containers(spark) -> list:
    """What YARN allocated to each live container of this app (YarnClient through py4j: the mini
    cluster's ResourceManager has no working REST API)."""
    jvm = spark._jvm
    client = jvm.org.apache.hadoop.yarn.client.api.YarnClient.createYarnClient()
    client.init(jvm.org.apache.hadoop.yarn.conf.YarnConfiguration(spark._jsc.hadoopConfiguration()))
    client.start()
    try:
        app_id = jvm.org.apache.hadoop.yarn.api.records.ApplicationId.fromString(spark.sparkContext.applicationId)
        attempt = list(client.getApplicationAttempts(app_id))[-1]
        containers = []
        for container in client.getContainers(attempt.getApplicationAttemptId()):
            resource = container.getAllocatedResource()
            containers.append({
                "id": container.getContainerId().toString(),
                "memory_mb": resource.getMemorySize(),
                "vcores": resource.getVirtualCores(),
                "gpus": resource.getResourceValue("yarn.io/gpu"),
            })
        return sorted(containers, key=lambda container: container["id"])
    finally:
        client.stop()


def check_gpu_containers(containers: list, executors: int) -> None:
    # The AM is the app's first container (its id ends in _000001); every other one is an executor.
    am, executor_containers = containers[0], containers[1:]
    if am["gpus"] != 0 or len(executor_containers) != executors or any(c["gpus"] != 1 for c in executor_containers):
        raise RuntimeError(f"YARN allocated {containers}, expected no GPU for the AM and one for each of {executors} executors")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_url", help="a new folder for the Parquet output, e.g. hdfs:///smoke/client-1")
    parser.add_argument("--gpus", type=int, default=0, help="run a barrier stage of this many one-GPU tasks")
    args = parser.parse_args(argv)

    spark = SparkSession.builder.appName("yarn-smoke").getOrCreate()
    try:
        findings = {"app_id": spark.sparkContext.applicationId, "master": spark.sparkContext.master,
                    "deploy_mode": spark.conf.get("spark.submit.deployMode"),
                    "parquet": write_and_read_back(spark, args.out_url)}
        if args.gpus:
            findings["barrier_gpus"] = gpus_seen_by_barrier_tasks(spark, args.gpus)
            findings["containers"] = yarn_containers(spark)  # while the executors still hold theirs
            check_gpu_containers(findings["containers"], args.gpus)
        print("SMOKE " + json.dumps(findings), flush=True)
    finally:
        spark.stop()


if __name__ == "__main__":
    main()
