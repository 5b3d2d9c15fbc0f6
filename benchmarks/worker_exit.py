"""How often a gloo DDP worker aborts at exit on a loaded machine, with and without processexit.py.

    .venv/bin/python benchmarks/worker_exit.py [--runs 20] [--hogs 3]

Each run is a bare 2-process torchrun of a few DDP steps, a barrier and destroy_process_group (what
the training worker does last), while --hogs busy processes keep every core loaded: the gloo run-loop
threads then release their last work object after the main thread has begun Python's finalization,
and the process dies of "terminate called without an active exception" (SIGABRT). The same script
with ``end_without_finalizing()`` (as every worker calls it) is the comparison, run for run in
alternation in the same load. Prints the aborted runs of each and their ratio.
"""

from __future__ import annotations

import argparse
import multiprocessing
import subprocess
import sys
import tempfile
from pathlib import Path

WORKER = """
import sys, torch, torch.distributed as dist
if sys.argv[1] == "guarded":
    from torchonspark.sparkjobs.engine.processexit import end_without_finalizing
    end_without_finalizing()
dist.init_process_group("gloo")
net = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(64, 10))
for _ in range(3):
    net(torch.randn(8, 64)).sum().backward()
dist.barrier()
dist.destroy_process_group()
"""


def _hog() -> None:
    while True:
        pass


def aborted(script: Path, mode: str) -> bool:
    """One torchrun of the script; whether a worker died of SIGABRT (or the run failed otherwise)."""
    torchrun = Path(sys.executable).with_name("torchrun")
    result = subprocess.run([str(torchrun), "--nproc_per_node", "2", str(script), mode], capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    return result.returncode != 0 or "terminate called" in output or "SIGABRT" in output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="runs of each kind")
    parser.add_argument("--hogs", type=int, default=3, help="busy processes beside them")
    args = parser.parse_args()
    hogs = [multiprocessing.Process(target=_hog, daemon=True) for _ in range(args.hogs)]
    for hog in hogs:
        hog.start()
    counts = {"bare": 0, "guarded": 0}
    try:
        with tempfile.TemporaryDirectory() as folder:
            script = Path(folder) / "ddp_exit.py"
            script.write_text(WORKER)
            for _ in range(args.runs):
                for mode in counts:
                    counts[mode] += aborted(script, mode)
    finally:
        for hog in hogs:
            hog.terminate()
    print(f"aborted at exit under {args.hogs} busy processes: bare {counts['bare']}/{args.runs}, "
          f"with end_without_finalizing {counts['guarded']}/{args.runs}")
    print(f"ratio guarded/bare: {counts['guarded'] / max(counts['bare'], 1):.2f}")


if __name__ == "__main__":
    main()
