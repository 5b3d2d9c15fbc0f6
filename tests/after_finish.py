"""Training workers with a fault after the run has finished (shipped to the barrier tasks by value):
rank 1 aborts itself, or stops itself for good, once train_worker has returned, that is after rank 0
wrote summary.json and the model and both ranks left the process group."""

import os
import signal

from torchonspark.sparkjobs.engine.worker import train_worker


def abort_after_finish(job):
    summary = train_worker(job)
    if os.environ["RANK"] == "1":
        os.abort()  # SIGABRT, as the gloo threads did at exit
    return summary


def stop_after_finish(job):
    summary = train_worker(job)
    if os.environ["RANK"] == "1":
        os.kill(os.getpid(), signal.SIGSTOP)  # hung: not even its own threads run
    return summary
