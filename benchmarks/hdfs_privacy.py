"""What a Kerberized HDFS's privacy costs the jobs: the loader's images/s and a checkpoint's write and
read, on the plain mini cluster and on the secure one (Kerberos with privacy on every RPC, SASL data
transfer with privacy and AES-encrypted block data), one after the other in the same run.

    make minicluster-jar && .venv/bin/python benchmarks/hdfs_privacy.py [--checkpoint-mb 200] [--epochs 3] [--repeats 2]

The loader reads the digits set's train split (1,437 images in 16 row groups) through the project's
ShardedLoader, as one worker would; the checkpoint is random bytes of a ResNet-50 checkpoint's size,
written whole (temporary name, then rename) and read back, as the train job's snapshots are. Each
figure is the best of its repeats; ratios are secure / plain.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from digits_data import digits_parquet

from torchonspark.datasets import fs
from torchonspark.datasets.loader import ShardedLoader
from torchonspark.datasets.transforms import EvalTransform

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from hadoop import MiniCluster, put_tree  # noqa: E402


def loader_rate(url: str, epochs: int) -> float:
    """Images/s of the best epoch (the first one also opens the HDFS connections)."""
    loader = ShardedLoader(fs.resolve(url), 0, 1, 64, EvalTransform(32), train=False, decode_threads=2)
    best = 0.0
    for _ in range(epochs):
        started, images = time.perf_counter(), 0
        for batch in loader:
            images += len(batch[1])
        best = max(best, images / (time.perf_counter() - started))
    return best


def checkpoint_seconds(url: str, payload: bytes, repeats: int) -> tuple[float, float]:
    """Best write and read seconds of payload at url."""
    target = fs.resolve(url)
    writes, reads = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        target.write_bytes_atomically(payload)
        writes.append(time.perf_counter() - started)
        started = time.perf_counter()
        if target.read_bytes() != payload:
            raise SystemExit(f"{url} read back different bytes")
        reads.append(time.perf_counter() - started)
    return min(writes), min(reads)


def measure(secure: bool, local_data: Path, payload: bytes, epochs: int, repeats: int) -> dict[str, float]:
    saved = dict(os.environ)
    with tempfile.TemporaryDirectory() as work, MiniCluster(Path(work) / "hadoop", secure=secure) as cluster:
        try:
            os.environ.update(cluster.env())
            data = f"{cluster.hdfs_url}/data/digits-parquet"
            put_tree(local_data, data)
            rate = loader_rate(f"{data}/train", epochs)
            write, read = checkpoint_seconds(f"{cluster.hdfs_url}/runs/bench/checkpoint.pt", payload, repeats)
        finally:
            os.environ.clear()
            os.environ.update(saved)
    return {"rate": rate, "write": write, "read": read}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint-mb", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "torchonspark-bench")
    args = parser.parse_args()
    local_data = digits_parquet(args.work)
    payload = os.urandom(args.checkpoint_mb << 20)
    plain = measure(False, local_data, payload, args.epochs, args.repeats)
    secure = measure(True, local_data, payload, args.epochs, args.repeats)
    print(f"mini cluster HDFS, plain against Kerberized with privacy (RPC and data transfer), best of {args.repeats} "
          f"(loader: best of {args.epochs} epochs)")
    print(f"{'':34}{'plain':>10}{'privacy':>10}{'ratio':>8}")
    print(f"{'loader, digits train split':34}{plain['rate']:8.0f}/s{secure['rate']:8.0f}/s{secure['rate'] / plain['rate']:8.2f}")
    print(f"{f'checkpoint write, {args.checkpoint_mb} MB':34}{plain['write']:9.2f}s{secure['write']:9.2f}s"
          f"{secure['write'] / plain['write']:8.2f}")
    print(f"{f'checkpoint read, {args.checkpoint_mb} MB':34}{plain['read']:9.2f}s{secure['read']:9.2f}s"
          f"{secure['read'] / plain['read']:8.2f}")


if __name__ == "__main__":
    main()
