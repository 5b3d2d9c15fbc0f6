"""Finding the processes a fault is sent to: the torch.distributed workers that TorchDistributor's
torchrun started (tests and benchmarks/recovery.py)."""

import psutil


def training_processes(rank: int) -> list:
    """This machine's torchrun worker processes of ``rank`` (their environment names the rank)."""
    found = []
    for process in psutil.process_iter():
        try:
            environment = process.environ()
        except (psutil.Error, OSError):
            continue
        if environment.get("TORCHELASTIC_RUN_ID") is not None and environment.get("RANK") == str(rank):
            found.append(process)
    return found
