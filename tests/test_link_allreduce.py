"""Two ranks in network namespaces of their own, joined by a veth pair shaped to 100 Mbit/s: a gloo all-reduce
takes about the time the shaped rate says, and nothing of the namespaces is left afterwards."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from link_allreduce import predict_allreduce  # noqa: E402
from netns import PREFIX, ShapedLinks, can_make_namespaces, our_namespaces  # noqa: E402

RATE_BITS = 100e6
ELEMENTS = 500_000  # 2 MB of fp32: 0.17 s at 100 Mbit/s, long against the link's latency and the burst
RANK = """
import os, statistics, sys, time
from datetime import timedelta
import torch, torch.distributed as dist
rank = int(sys.argv[1])
os.environ.pop("LOCAL_WORLD_SIZE", None)
os.environ.update(MASTER_ADDR="10.77.0.1", MASTER_PORT="29400", RANK=str(rank), WORLD_SIZE="2", GLOO_SOCKET_IFNAME="eth0")
dist.init_process_group("gloo", timeout=timedelta(seconds=30))
small, big = torch.zeros(1), torch.ones(%d)
dist.all_reduce(small); dist.all_reduce(big)
times = {"small": [], "big": []}
for _ in range(3):
    for name, tensor in (("small", small), ("big", big)):
        dist.barrier(); started = time.perf_counter(); dist.all_reduce(tensor)
        times[name].append(time.perf_counter() - started)
if rank == 0:
    print(statistics.median(times["small"]), statistics.median(times["big"]), big[0].item())
dist.destroy_process_group()
""" % ELEMENTS

why_not = can_make_namespaces()
pytestmark = pytest.mark.skipif(why_not is not None, reason=f"network namespaces: {why_not}")


def test_an_allreduce_over_a_shaped_link_takes_the_time_its_rate_says_and_leaves_nothing_behind():
    with ShapedLinks(ranks=2, rate_bits=RATE_BITS) as links:
        ranks = [subprocess.Popen(["ip", "netns", "exec", namespace, sys.executable, "-c", RANK, str(rank)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for rank, namespace in enumerate(links.namespaces)]
        try:
            outputs = [rank.communicate(timeout=60) for rank in ranks]
        finally:
            for rank in ranks:
                if rank.poll() is None:
                    rank.kill()
                    rank.wait()
        assert [rank.returncode for rank in ranks] == [0, 0], outputs[0][1][-2000:] + outputs[1][1][-2000:]
    small_s, big_s, value = (float(field) for field in outputs[0][0].split())
    assert value == 2 ** 4  # two ranks, four all-reduces of ones in place
    predicted = predict_allreduce(4 * ELEMENTS, 2, RATE_BITS, small_s)
    assert 0.5 < big_s / predicted < 2.0, f"measured {big_s:.3f} s, predicted {predicted:.3f} s"
    assert our_namespaces(PREFIX) == []
    listed = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert f"tos-{os.getpid()}" not in listed and "link-netns tos-" not in listed
