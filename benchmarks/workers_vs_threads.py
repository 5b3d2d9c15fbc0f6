"""Data parallel across processes vs threads on one machine: 2 workers x 1 thread against 1 worker x
2 threads, same recipe (per-worker batch 32), each a real torchrun job of train_worker, same run.

    .venv/bin/python benchmarks/workers_vs_threads.py [--iterations 300]

Goal (issue 4): the 2-worker job's images/s >= 0.9 of the single worker's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from digits_data import digits_parquet

CONF = Path(__file__).resolve().parents[1] / "conf" / "digits.yaml"


def images_per_second(data: Path, run: Path, workers: int, threads: int, iterations: int) -> float:
    command = [
        sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={workers}",
        "-m", "torchonspark.sparkjobs.train_worker", "--conf", str(CONF), "--data", str(data), "--output", str(run),
        "--overwrite", "--threads", str(threads), "--max-iter", str(iterations), "--display", "20",
        "--test-interval", "0", "--snapshot", "0",
    ]
    subprocess.run(command, check=True, capture_output=True)
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rates = [line["images_per_sec"] for line in lines if "images_per_sec" in line][1:]  # the first warms up
    return sum(rates) / len(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "torchonspark-bench")
    args = parser.parse_args()
    data = digits_parquet(args.work)
    single = images_per_second(data, args.work / "one-worker", 1, 2, args.iterations)
    double = images_per_second(data, args.work / "two-workers", 2, 1, args.iterations)
    print(f"digits recipe, batch 32 per worker, {args.iterations} iterations, torchrun on this machine")
    print(f"1 worker x 2 threads     {single:7.0f} images/s")
    print(f"2 workers x 1 thread     {double:7.0f} images/s (gloo all-reduce every step)")
    print(f"ratio                    {double / single:7.2f}   (goal >= 0.9)")


if __name__ == "__main__":
    main()
