"""The driver's side of a training launch, as pure functions: when GPUs are used, what is kept of a
failed worker's output, and the lines printed at the end."""

from torchonspark.sparkjobs.cluster.launch import failure_cause, use_gpus
from torchonspark.sparkjobs.train_resnet import train_summary_lines


def test_gpus_are_used_when_asked_or_when_spark_schedules_them_unless_told_cpu():
    scheduled = {"spark.task.resource.gpu.amount": "1"}
    assert use_gpus(scheduled, force_gpu=False, force_cpu=False)
    assert not use_gpus({}, force_gpu=False, force_cpu=False)
    assert not use_gpus({"spark.task.resource.gpu.amount": "0"}, force_gpu=False, force_cpu=False)
    assert not use_gpus(scheduled, force_gpu=False, force_cpu=True)
    assert use_gpus({}, force_gpu=True, force_cpu=False)


# What the driver sees of a barrier attempt: the workers' output that TorchDistributor streams to it,
# torchrun's failure summary of each rank's process, then the exception, which says nothing itself.
def torchrun_summary(rank: int, exitcode: int, traceback: str) -> str:
    return (f"torch.distributed.elastic.multiprocessing.errors.ChildFailedError:\n====\n/tmp/x/train.py FAILED\n----\n"
            f"Failures:\n  <NO_OTHER_FAILURES>\n----\nRoot Cause (first observed failure):\n[0]:\n  time      : 2026-11-29_07:43:28\n"
            f"  host      : localhost\n  rank      : {rank} (local_rank: 0)\n  exitcode  : {exitcode} (pid: 11504)\n"
            f"  error_file: <N/A>\n  traceback : {traceback}\n====")


GENERIC = "RuntimeError: TorchDistributor failed during training.View stdout logs for detailed error message."


def test_the_cause_names_the_rank_killed_first_not_the_ranks_that_lost_their_peer():
    output = "\n".join([
        "iter 25/60  epoch 0  loss 1.2",
        "[rank0]: RuntimeError: [../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer [127.0.0.1]:1234",
        torchrun_summary(0, 1, "To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html"),
        torchrun_summary(1, -9, "Signal 9 (SIGKILL) received by PID 11504"),
        GENERIC,
    ])
    assert failure_cause(output) == "rank 1 was killed by SIGKILL"


def test_the_cause_of_an_error_is_the_rank_and_its_last_error_line():
    output = "\n".join(["[rank1]: Traceback (most recent call last):", "[rank1]: OSError: [Errno 28] No space left on device",
                        torchrun_summary(1, 1, "To enable traceback see: ..."), GENERIC])
    assert failure_cause(output) == "rank 1 exited with status 1: [rank1]: OSError: [Errno 28] No space left on device"


def test_a_lost_executor_is_named_with_sparks_reason():
    output = ("Job aborted due to stage failure: Task 1 in stage 3.0 failed 1 times, most recent failure: Lost task 1.0 in stage 3.0 "
              "(TID 9) (192.0.2.2 executor 1): ExecutorLostFailure (executor 1 exited caused by one of the running tasks) "
              "Reason: Command exited with code 137.\n")
    assert failure_cause(output) == "executor 1 was lost (Command exited with code 137)"
    assert failure_cause(GENERIC) == "a worker failed"


def test_the_kept_output_writes_through_and_keeps_the_last_complete_lines():
    import io
    from collections import deque

    from torchonspark.sparkjobs.engine.keptlines import KeptLines

    through = io.StringIO()
    kept = KeptLines(through, deque(maxlen=2))
    kept.write("one\ntw")
    kept.write("o\nthree\nfour")
    assert through.getvalue() == "one\ntwo\nthree\nfour" and list(kept.lines) == ["two", "three"]


def test_the_final_lines_give_accuracy_speed_and_the_run_folders_files():
    summary = {"val_top1": 0.99722, "val_top5": 1.0, "iterations": 660, "epochs": 30.0, "world_size": 2, "device": "cpu",
               "train_images_per_sec": 1912.4, "wall_seconds": 24.2}
    first, second = train_summary_lines(summary, "hdfs://nn:8020/runs/a")
    assert first == "val top-1 0.9972, top-5 1.0000 after 660 iterations (30.0 epochs) on 2 cpu workers, 1912 images/s, 24 s"
    assert second.startswith("run folder: hdfs://nn:8020/runs/a (train.log, metrics.jsonl, summary.json, plots/training.png, checkpoints/")
    assert "images/s" not in train_summary_lines({**summary, "train_images_per_sec": None}, "run")[0]
