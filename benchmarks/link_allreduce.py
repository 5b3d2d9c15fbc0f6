"""Gradient all-reduce over links of a set rate, measured and predicted: ResNet-50's DDP buckets, and a real
DDP training step of ResNet-50 with and without gradient compression, between ranks in network namespaces
of their own joined by veth links shaped with tc (benchmarks/netns.py). Root only; stops by itself.

    flock /tmp/torchonspark-spark.lock .venv/bin/python benchmarks/link_allreduce.py [--rates 200e6,1e9,2.5e9]
        [--ranks 2] [--repeats 3] [--batch 4] [--steps 3] [--time-limit 420] [--json FILE]

Each rate gets a fresh set of namespaces (tos-<pid>-<i>, 10.77.0.<i+1>/24), and N rank processes started
with `ip netns exec NS .venv/bin/python this-file --rank i ...`, joined by torch.distributed gloo with
MASTER_ADDR inside the namespaces. LOCAL_WORLD_SIZE is removed from their environment: newer gloo builds
take a shared-memory path when it equals the world size, which would bypass the link; the veth's byte
counters are read to show that the bytes really crossed it. The baseline, measured in the same run, is the
same set of ranks on unshaped veths: what this machine's CPUs can move (the ceiling of every shaped figure).

The communication model (nothing in it is fitted to the figures it predicts):

  gloo's all-reduce in this torch is its ring (gloo::allreduce with no algorithm set: reduce-scatter then
  all-gather, each bucket cut into >= 2N segments, two in flight). Each rank sends and receives
  2(N-1)/N * B bytes of a bucket of B bytes, on both directions of its link at once, in 2(N-1) steps:

      T(B) = t_small + 2(N-1)/N * B * w / R

  R = the shaped rate (bit/s, as bytes/8); w = (MTU + 14) / (MTU - 52) = 1.0456: the Ethernet, IP and TCP
  header bytes that tbf counts per payload byte of a full frame; t_small = the median all-reduce time of
  4 bytes on the same link, measured in the same run: the 2(N-1) latency terms and gloo's fixed cost per
  call (this kernel has no netem, so a link's latency is the veth's own, tens of microseconds).

  A DDP step overlaps each bucket's all-reduce with the rest of backward. Its prediction starts from the
  same step measured without communication (the same DDP model with a comm hook that only casts the
  bucket, as the compression hooks do, and returns it), in the same run, which gives the forward, backward
  and optimizer times and the time each bucket became ready in backward. The buckets' all-reduces then run
  one after another (DDP's reducer launches them in order; gloo runs them in that order):

      end_0 = ready_0 + T(b_0 * s);  end_i = max(ready_i, end_{i-1}) + T(b_i * s)
      step  = forward + max(backward, end_last) + optimizer + T_broadcast(buffers)

  s = 1 (fp32 gradients) or 1/2 (a bf16 or fp16 compression hook); the buffers (BatchNorm statistics) are
  broadcast by DDP at each forward (broadcast_buffers, its default): T_broadcast = t_small + B * w / R.
  What it leaves out: the CPU the kernel's TCP stack and gloo's reductions take from backward (two ranks
  share this machine's 2 cores), which grows with the rate; the unshaped baseline shows where that ceiling
  is.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from netns import WIRE_BYTES_PER_PAYLOAD_BYTE, ShapedLinks, can_make_namespaces  # noqa: E402

MODEL = "resnet_50"
BUCKET_CAP_MB = None  # DDP's own layout, as wrap_ddp leaves it: a 1 MB first bucket, then 25 MB ones
DDP_CAP_MB = 25.0
PORT = 29_500
SMALL_REPEATS = 30
DTYPES = ("float32", "bfloat16", "float16")
COMPRESSIONS = ("none", "bf16", "fp16")


# ---------------------------------------------------------------- the rank (runs inside a namespace)

def bulk_exchange(rank: int, own: str, peer: str, nbytes: int, port: int, deadline: float) -> float:
    """Ranks 0 and 1 send each other ``nbytes`` over plain TCP at the same time (as a ring all-reduce of
    two uses both directions); returns the payload bit/s this rank received."""
    received: dict[str, float] = {}

    def receive(server: socket.socket) -> None:
        server.settimeout(max(1.0, deadline - time.monotonic()))
        connection, _ = server.accept()
        with connection:
            buffer = bytearray(1 << 20)
            first = got = connection.recv_into(buffer)  # the clock starts at the first byte
            started = time.perf_counter()
            while got < nbytes and time.monotonic() < deadline:
                chunk = connection.recv_into(buffer)
                if chunk == 0:
                    break
                got += chunk
            received["bits_per_s"] = 8 * (got - first) / (time.perf_counter() - started)

    with socket.create_server((own, port + 1 + rank)) as server:
        receiver = threading.Thread(target=receive, args=(server,), daemon=True)
        receiver.start()
        for _ in range(400):  # the peer's server may not be listening yet: 400 tries, 20 s at most
            try:
                sender = socket.create_connection((peer, port + 2 - rank), timeout=10)
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError(f"rank {rank} could not reach {peer} for the bulk transfer")
        with sender:
            data = bytes(1 << 20)
            for _ in range(math.ceil(nbytes / len(data))):
                sender.sendall(data)
        receiver.join(timeout=max(1.0, deadline - time.monotonic()))
    if "bits_per_s" not in received:
        raise RuntimeError(f"rank {rank}'s bulk transfer did not finish")
    return received["bits_per_s"]


def tx_bytes() -> int:
    # ip netns exec mounts this namespace's own /sys: the counter of the rank's eth0.
    return int(Path("/sys/class/net/eth0/statistics/tx_bytes").read_text())


def timed_allreduce(tensor, repeats: int) -> float:
    """Median seconds of an all-reduce of ``tensor``, each started together (a barrier first)."""
    import torch.distributed as dist

    times = []
    for _ in range(repeats):
        dist.barrier()
        started = time.perf_counter()
        dist.all_reduce(tensor)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def ddp_bucket_bytes(net, cap_mb: float) -> list[int]:
    """The bytes of each gradient bucket DDP uses after its first step (it rebuilds them then, in the
    order gradients become ready: about the reverse of the parameters'), with its first bucket of 1 MB."""
    import torch.distributed as dist

    params = [p for p in net.parameters() if p.requires_grad][::-1]
    buckets, _ = dist._compute_bucket_assignment_by_size(
        params, [dist._DEFAULT_FIRST_BUCKET_BYTES, int(cap_mb * 1024 * 1024)], [False] * len(params))
    return [sum(params[i].numel() * params[i].element_size() for i in bucket) for bucket in buckets]


def step_phases(model, optimizer, images, labels, steps: int, warmup: int, ready: list[float] | None = None) -> dict:
    """Median seconds of forward, backward, optimizer and the whole step; with ``ready`` (filled by a comm
    hook with perf_counter times) also each bucket's ready time from the start of backward."""
    import torch.nn.functional as F

    rows = []
    for step in range(warmup + steps):
        if ready is not None:
            ready.clear()
        started = time.perf_counter()
        loss = F.cross_entropy(model(images), labels)
        backward = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        stepped = time.perf_counter()
        optimizer.step()
        ended = time.perf_counter()
        if step >= warmup:
            rows.append({"forward": backward - started, "backward": stepped - backward, "optimizer": ended - stepped,
                         "step": ended - started, "ready": [t - backward for t in ready] if ready is not None else []})
    middle = sorted(rows, key=lambda row: row["step"])[len(rows) // 2]
    return {key: middle[key] for key in ("forward", "backward", "optimizer", "step", "ready")}


def local_hook(compression: str, ready: list[float]):
    """A comm hook that communicates nothing: it notes when the bucket is ready and does the compression
    hook's casts, so the step it times is the real one less the all-reduce."""
    import torch

    dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[compression]

    def hook(state, bucket):
        ready.append(time.perf_counter())
        buffer = bucket.buffer()
        if dtype is not None:
            buffer.copy_(buffer.to(dtype))
        future = torch.futures.Future()
        future.set_result(buffer)
        return future

    return hook


def logged_buckets(model) -> list[int]:
    """The bucket bytes DDP rebuilt after its first step, from its own logging data."""
    logged = str(model._get_ddp_logging_data().get("rebuilt_bucket_sizes", ""))
    return [int(b) for b in logged.split(",") if b.strip()]


def train_phase(args: argparse.Namespace, rank: int) -> dict:
    """ResNet-50 under DDP: each compression measured without communication (a local hook) and then for
    real (the worker's wrap_ddp), alternately."""
    import torch
    from torch.nn.parallel import DistributedDataParallel

    from torchonspark.netdefs import load_model
    from torchonspark.sparkjobs.engine.distributed import DdpOptions, wrap_ddp

    torch.manual_seed(rank)
    images = torch.randn(args.batch, 3, args.crop, args.crop)
    labels = torch.randint(0, 1000, (args.batch,))
    results: dict = {}
    for compression in COMPRESSIONS:
        torch.manual_seed(0)
        net = load_model(MODEL).build()
        ready: list[float] = []
        # Same seed on every rank, so the parameters already agree: no initial broadcast (init_sync).
        local = DistributedDataParallel(net, broadcast_buffers=False, bucket_cap_mb=BUCKET_CAP_MB, init_sync=False)
        local.register_comm_hook(None, local_hook(compression, ready))
        optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        without = step_phases(local, optimizer, images, labels, args.steps, warmup=2, ready=ready)
        without["bucket_bytes"] = logged_buckets(local)  # the buckets whose ready times were taken
        del local
        torch.manual_seed(0)
        net = load_model(MODEL).build()
        model = wrap_ddp(net, torch.device("cpu"), DdpOptions(compression=compression, bucket_cap_mb=BUCKET_CAP_MB))
        optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        sent = tx_bytes()
        real = step_phases(model, optimizer, images, labels, args.steps, warmup=2)
        results[compression] = {
            "without_comm": without, "real": real, "broadcast_buffers": bool(model.broadcast_buffers),
            "tx_bytes_per_step": (tx_bytes() - sent) / (args.steps + 2),
            "ddp_bucket_bytes": logged_buckets(model),
        }
        del model
    return results


def rank_main(args: argparse.Namespace) -> None:
    import torch
    import torch.distributed as dist

    from torchonspark.netdefs import load_model

    deadline = time.monotonic() + args.seconds
    torch.set_num_threads(1)  # one compute thread per rank: the ranks share this machine's cores
    own = f"10.77.0.{args.rank + 1}"
    out: dict = {"rank": args.rank}
    if args.rank < 2:
        peer = f"10.77.0.{2 - args.rank}"
        out["bulk_bits_per_s"] = bulk_exchange(args.rank, own, peer, args.bulk_bytes, args.port, deadline)
    os.environ.pop("LOCAL_WORLD_SIZE", None)  # see the module docstring: no shared-memory shortcut
    # gloo's own address is the one this host's name resolves to: 127.0.0.1 here, each namespace's own
    # loopback, which no other rank can reach. Name the interface instead.
    os.environ["GLOO_SOCKET_IFNAME"] = "eth0"
    os.environ.update(MASTER_ADDR="10.77.0.1", MASTER_PORT=str(args.port), RANK=str(args.rank), WORLD_SIZE=str(args.world))
    dist.init_process_group("gloo", timeout=timedelta(seconds=max(30, deadline - time.monotonic())))
    try:
        net = load_model(MODEL).build()
        out["parameters"] = sum(p.numel() for p in net.parameters())
        out["buffer_bytes"] = sum(b.numel() * b.element_size() for b in net.buffers())
        out["bucket_bytes"] = ddp_bucket_bytes(net, DDP_CAP_MB)
        del net
        small = torch.zeros(1)
        timed_allreduce(small, 5)
        out["small_s"] = timed_allreduce(small, SMALL_REPEATS)
        out["allreduce"] = []
        for dtype in DTYPES:
            for fp32_bytes in out["bucket_bytes"]:
                tensor = torch.ones(fp32_bytes // 4, dtype=getattr(torch, dtype))
                sent = tx_bytes()
                seconds = timed_allreduce(tensor, args.repeats)
                out["allreduce"].append({"dtype": dtype, "bytes": tensor.numel() * tensor.element_size(), "seconds": seconds,
                                         "tx_bytes_per_call": (tx_bytes() - sent) / args.repeats,
                                         "correct": bool(tensor[0].item() == args.world ** args.repeats)})
        if args.batch > 0:
            out["train"] = train_phase(args, args.rank)
    finally:
        dist.destroy_process_group()
    if args.rank == 0:
        print(json.dumps(out), flush=True)


# ---------------------------------------------------------------- the driver

def run_ranks(args: argparse.Namespace, rate_bits: float | None, seconds: float) -> dict:
    """One set of namespaces at ``rate_bits``, the ranks run in them; rank 0's results. Everything is torn
    down on return, on an error, and on a signal."""
    bulk = int(min(400e6, (rate_bits or 2e9) / 8 * 1.5))  # about 1.5 s of the shaped rate
    with ShapedLinks(args.ranks, rate_bits) as links, tempfile.TemporaryDirectory() as logs:
        processes = []
        try:
            for rank, namespace in enumerate(links.namespaces):
                command = [sys.executable, str(Path(__file__).resolve()), "--rank", str(rank), "--world", str(args.ranks),
                           "--port", str(PORT), "--seconds", str(int(seconds) - 5), "--bulk-bytes", str(bulk),
                           "--repeats", str(args.repeats), "--batch", str(args.batch), "--crop", str(args.crop),
                           "--steps", str(args.steps)]
                log = open(Path(logs) / f"rank{rank}.log", "w")
                processes.append(subprocess.Popen(["ip", "netns", "exec", namespace, *command], stdout=log, stderr=log,
                                                  text=True))
            stop = time.monotonic() + seconds
            while time.monotonic() < stop and any(process.poll() is None for process in processes):
                if any(process.poll() not in (None, 0) for process in processes):
                    break  # one rank failed: the others would wait for it until their timeout
                time.sleep(0.2)
            # A rank that exited with an error first: the others may only be waiting for it.
            failed = sorted((rank for rank, process in enumerate(processes) if process.poll() != 0),
                            key=lambda rank: processes[rank].poll() is None)
            if failed:
                rank = failed[0]
                why = "ran past --time-limit" if processes[rank].poll() is None else f"failed (exit {processes[rank].returncode})"
                tail = (Path(logs) / f"rank{rank}.log").read_text()[-2000:]
                raise SystemExit(f"link_allreduce: rank {rank} at {rate_name(rate_bits)} {why}:\n{tail}")
            lines = (Path(logs) / "rank0.log").read_text().splitlines()
            return json.loads(next(line for line in reversed(lines) if line.startswith("{")))
        finally:
            for process in processes:  # only our own children, by their Popen objects
                if process.poll() is None:
                    process.kill()
                    process.wait(timeout=30)


def predict_allreduce(nbytes: float, ranks: int, rate_bits: float, small_s: float) -> float:
    return small_s + 2 * (ranks - 1) / ranks * nbytes * WIRE_BYTES_PER_PAYLOAD_BYTE * 8 / rate_bits


def predict_step(without: dict, scale: float, buffer_bytes: int, broadcast: bool,
                 ranks: int, rate_bits: float, small_s: float) -> tuple[float, float]:
    """(predicted step seconds, seconds of all-reduce in it) from the step measured without communication."""
    bucket_bytes = without["bucket_bytes"]
    end = 0.0
    for ready, nbytes in zip(without["ready"], bucket_bytes):
        end = max(ready, end) + predict_allreduce(nbytes * scale, ranks, rate_bits, small_s)
    broadcast_s = small_s + buffer_bytes * WIRE_BYTES_PER_PAYLOAD_BYTE * 8 / rate_bits if broadcast else 0.0
    comm = sum(predict_allreduce(b * scale, ranks, rate_bits, small_s) for b in bucket_bytes)
    return without["forward"] + max(without["backward"], end) + without["optimizer"] + broadcast_s, comm


def rate_name(rate_bits: float | None) -> str:
    if rate_bits is None:
        return "unshaped"
    return f"{rate_bits / 1e9:g} Gbit/s" if rate_bits >= 1e9 else f"{rate_bits / 1e6:g} Mbit/s"


def report(args: argparse.Namespace, results: dict) -> None:
    base = results[None]
    buckets = base["bucket_bytes"]
    print(f"ResNet-50 ({MODEL}: {base['parameters']:,} parameters, {4 * base['parameters'] / 1e6:.1f} MB fp32); DDP buckets "
          f"(DDP's own layout: first bucket 1 MB, then {DDP_CAP_MB:g} MB), MB fp32: {' '.join(f'{b / 1e6:.2f}' for b in buckets)}")
    print(f"{args.ranks} ranks in network namespaces, gloo over veth shaped by tbf on both ends; 1 compute thread per rank; "
          f"w = {WIRE_BYTES_PER_PAYLOAD_BYTE:.4f} wire bytes per payload byte")
    print()
    print(f"{'link':<12} {'bulk TCP, each way':>20} {'/ payload rate':>15} {'4-byte all-reduce':>18}")
    for rate, result in results.items():
        expected = f"{result['bulk_bits_per_s'] / (rate / WIRE_BYTES_PER_PAYLOAD_BYTE):15.3f}" if rate else f"{'':>15}"
        print(f"{rate_name(rate):<12} {result['bulk_bits_per_s'] / 1e6:15.0f} Mbit/s {expected} {1e3 * result['small_s']:15.2f} ms")
    print()
    print(f"all-reduce of each bucket, median of {args.repeats}")
    print(f"{'link':<12} {'dtype':<9} {'MB':>6} {'measured ms':>12} {'model ms':>9} {'ratio':>6} {'unshaped ms':>12} "
          f"{'wire/payload':>13}")
    ratios: dict[float, list[float]] = {}
    baseline = {(row["dtype"], row["bytes"]): row["seconds"] for row in base["allreduce"]}
    for rate, result in results.items():
        for row in result["allreduce"]:
            if not row["correct"]:
                raise SystemExit(f"wrong all-reduce result at {rate_name(rate)}, {row['dtype']}")
            unshaped = baseline[(row["dtype"], row["bytes"])]
            sent = row["tx_bytes_per_call"] / (2 * (args.ranks - 1) / args.ranks * row["bytes"])
            if rate is None:
                print(f"{rate_name(rate):<12} {row['dtype']:<9} {row['bytes'] / 1e6:6.2f} {1e3 * row['seconds']:12.1f} "
                      f"{'':>9} {'':>6} {1e3 * unshaped:12.1f} {sent:13.3f}")
                continue
            model = predict_allreduce(row["bytes"], args.ranks, rate, result["small_s"])
            ratios.setdefault(rate, []).append(row["seconds"] / model)
            print(f"{rate_name(rate):<12} {row['dtype']:<9} {row['bytes'] / 1e6:6.2f} {1e3 * row['seconds']:12.1f} "
                  f"{1e3 * model:9.1f} {row['seconds'] / model:6.2f} {1e3 * unshaped:12.1f} {sent:13.3f}")
    step_ratios: dict[float, dict[str, tuple[float, float]]] = {}
    if args.batch > 0:
        print()
        print(f"DDP training step of ResNet-50 (wrap_ddp), batch {args.batch} per rank, {args.crop} px, SGD; median of {args.steps}")
        print(f"{'link':<12} {'compression':<11} {'measured s':>10} {'model s':>8} {'ratio':>6} {'no-comm step s':>15} "
              f"{'all-reduce s (model)':>21} {'MB sent/step':>13}")
        for rate, result in results.items():
            for compression, row in result["train"].items():
                scale = 1.0 if compression == "none" else 0.5
                measured = row["real"]["step"]
                sent = row["tx_bytes_per_step"] / 1e6
                if rate is None:
                    print(f"{rate_name(rate):<12} {compression:<11} {measured:10.2f} {'':>8} {'':>6} "
                          f"{row['without_comm']['step']:15.2f} {'':>21} {sent:13.1f}")
                    continue
                model, comm = predict_step(row["without_comm"], scale, base["buffer_bytes"],
                                           row["broadcast_buffers"], args.ranks, rate, result["small_s"])
                step_ratios.setdefault(rate, {})[compression] = (measured, model)
                print(f"{rate_name(rate):<12} {compression:<11} {measured:10.2f} {model:8.2f} {measured / model:6.2f} "
                      f"{row['without_comm']['step']:15.2f} {comm:21.2f} {sent:13.1f}")
        rebuilt = results[None]["train"]["none"]["ddp_bucket_bytes"]
        timed = results[None]["train"]["none"]["without_comm"]["bucket_bytes"]
        print(f"wrap_ddp's buckets after its first step (DDP's logging data), MB fp32: {' '.join(f'{b / 1e6:.2f}' for b in rebuilt)}"
              f"{'' if rebuilt == buckets else ' (not the layout above)'}"
              f"{'' if rebuilt == timed else '; the no-communication run had other buckets: ' + str(timed)}")
    print()
    for rate, values in ratios.items():
        print(f"ratio, measured / model, bucket all-reduces at {rate_name(rate):<12} min {min(values):.2f}  max {max(values):.2f}  "
              f"geometric mean {math.exp(statistics.fmean(math.log(v) for v in values)):.2f}   (goal 0.80-1.20)")
    for rate, rows in step_ratios.items():
        cells = "  ".join(f"{c} {m / p:.2f}" for c, (m, p) in rows.items())
        print(f"ratio, measured / model, training step at {rate_name(rate):<12} {cells}   (goal 0.80-1.20)")
    for rate, rows in step_ratios.items():
        if "none" in rows and "bf16" in rows:
            (none, none_model), (bf16, bf16_model) = rows["none"], rows["bf16"]
            print(f"ratio, step with bf16 compression / without, at {rate_name(rate):<12} measured {bf16 / none:.2f}  "
                  f"model {bf16_model / none_model:.2f}")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2, help="ranks, each in its own namespace (more than 2: a bridge)")
    parser.add_argument("--rates", default="200e6,1e9,2.5e9", help="shaped rates in bit/s, comma-separated")
    parser.add_argument("--repeats", type=int, default=3, help="all-reduces of each bucket per dtype and rate")
    parser.add_argument("--batch", type=int, default=4, help="images per rank in the training step; 0: no training step")
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per compression, after 2 warm-up steps")
    parser.add_argument("--time-limit", type=float, default=420, help="seconds for the whole benchmark")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    # The rank's own flags (the driver starts this file inside a namespace with them).
    parser.add_argument("--rank", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--world", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=PORT, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=300, help=argparse.SUPPRESS)
    parser.add_argument("--bulk-bytes", type=int, default=0, help=argparse.SUPPRESS)
    return parser


def main() -> None:
    args = get_args_parser().parse_args()
    if args.rank is not None:
        rank_main(args)
        return
    try:
        rates = [float(rate) for rate in args.rates.split(",")]
    except ValueError:
        sys.exit(f"--rates must be numbers in bit/s, comma-separated; got {args.rates!r}")
        return
    if not 2 <= args.ranks <= 16 or any(not 1e6 <= rate <= 100e9 for rate in rates) or args.repeats < 1 or args.steps < 1:
        print("--ranks must be 2-16, each rate 1e6-100e9 bit/s, --repeats and --steps >= 1", file=sys.stderr)
        sys.exit(2)
    why_not = can_make_namespaces()
    if why_not:
        print(f"link_allreduce: {why_not}", file=sys.stderr)
        sys.exit(2)
    deadline = time.monotonic() + args.time_limit
    results: dict = {}
    for rate in [None, *rates]:
        left = deadline - time.monotonic()
        if left < 20:
            print(f"link_allreduce: --time-limit reached before {rate_name(rate)}; reporting what was measured", file=sys.stderr)
            break
        results[rate] = run_ranks(args, rate, left)  # the ranks stop at the deadline, whatever they are doing
    if args.json:
        args.json.write_text(json.dumps({str(k): v for k, v in results.items()}, indent=1))
    report(args, results)


if __name__ == "__main__":
    main()
