"""The driver's side of a training launch, as pure functions: when GPUs are used, what is kept of a
failed worker's output, and the lines printed at the end."""

from torchonspark.sparkjobs.cluster.launch import use_gpus, worker_output_tail
from torchonspark.sparkjobs.train_resnet import train_summary_lines


def test_gpus_are_used_when_asked_or_when_spark_schedules_them_unless_told_cpu():
    scheduled = {"spark.task.resource.gpu.amount": "1"}
    assert use_gpus(scheduled, force_gpu=False, force_cpu=False)
    assert not use_gpus({}, force_gpu=False, force_cpu=False)
    assert not use_gpus({"spark.task.resource.gpu.amount": "0"}, force_gpu=False, force_cpu=False)
    assert not use_gpus(scheduled, force_gpu=False, force_cpu=True)
    assert use_gpus({}, force_gpu=True, force_cpu=False)


# The shape of what TorchDistributor raises when a barrier task's torchrun fails: Spark's wrapper,
# the worker's own output after "included below: ", then JVM frames.
WRAPPED = (
    "An error occurred while calling o123.collectAndServe.\n"
    ": org.apache.spark.SparkException: Job aborted due to stage failure: Task 0 in stage 3.0 failed 1 times, "
    "most recent failure: Lost task 0.0: org.apache.spark.api.python.PythonException: Traceback (most recent call last):\n"
    "RuntimeError: Command failed with exit code 1. The last 100 lines of output are included below: "
    + "\n".join(f"worker line {i}" for i in range(40))
    + "\nValueError: --weights /tmp/w.pt: not a torch file\n\n"
    "\tat org.apache.spark.api.python.BasePythonRunner$ReaderIterator.handlePythonException(PythonRunner.scala:572)\n"
    "\tat org.apache.spark.rdd.RDD.iterator(RDD.scala:328)\n"
)


def test_a_failed_workers_output_is_cut_out_of_sparks_wrapping():
    tail = worker_output_tail(RuntimeError(WRAPPED), lines=5).splitlines()
    assert tail == ["worker line 36", "worker line 37", "worker line 38", "worker line 39", "ValueError: --weights /tmp/w.pt: not a torch file"]


def test_an_error_without_sparks_wrapping_is_kept_as_it_is():
    assert worker_output_tail(RuntimeError("connection refused\n\n  by the gateway")) == "connection refused\n  by the gateway"


def test_the_final_lines_give_accuracy_speed_and_the_run_folders_files():
    summary = {"val_top1": 0.99722, "val_top5": 1.0, "iterations": 660, "epochs": 30.0, "world_size": 2, "device": "cpu",
               "train_images_per_sec": 1912.4, "wall_seconds": 24.2}
    first, second = train_summary_lines(summary, "hdfs://nn:8020/runs/a")
    assert first == "val top-1 0.9972, top-5 1.0000 after 660 iterations (30.0 epochs) on 2 cpu workers, 1912 images/s, 24 s"
    assert second.startswith("run folder: hdfs://nn:8020/runs/a (metrics.jsonl, summary.json, plots/loss.png, plots/accuracy.png")
    assert "images/s" not in train_summary_lines({**summary, "train_images_per_sec": None}, "run")[0]
