"""Network namespaces joined by shaped veth links, for measuring collectives over a link of a set rate
on one machine (benchmarks/link_allreduce.py, tests/test_link_allreduce.py). Needs root.

    with ShapedLinks(ranks=2, rate_bits=1e9) as links:
        links.namespaces[0], links.address(0)   # "tos-<pid>-0", "10.77.0.1"

Every namespace is named after this process (``tos-<pid>-<i>``, and ``tos-<pid>-br`` for the bridge of
more than two ranks), and every link is made inside them, never in the root namespace: deleting the
namespaces removes everything, and nothing of another run is ever touched. Teardown runs on leaving the
``with`` block, at interpreter exit, and on SIGTERM / SIGINT / SIGHUP.

Shaping: a token bucket (``tc qdisc ... root tbf``) on the egress of both ends of every veth, so each
direction of a rank's link runs at the rate. This kernel has no netem (CONFIG_NET_SCH_NETEM is off), so
no delay can be added: a link's latency is the veth's own, measured by the caller.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
from types import FrameType

SUBNET = "10.77.0"
PREFIX = f"tos-{os.getpid()}-"
MTU = 1500
# Bytes a shaped link carries per TCP payload byte: a full frame is MTU + 14 (Ethernet header, which tbf
# counts) and carries MTU - 52 bytes of payload (IPv4 20, TCP 20, timestamps option 12).
WIRE_BYTES_PER_PAYLOAD_BYTE = (MTU + 14) / (MTU - 52)


class NetnsError(RuntimeError):
    pass


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def _tc(namespace: str, *args: str) -> None:
    result = subprocess.run(["ip", "netns", "exec", namespace, "tc", *args], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise NetnsError(f"tc {' '.join(args)} in {namespace}: {result.stderr.strip()}")


def our_namespaces(prefix: str = "tos-") -> list[str]:
    """Namespaces whose names start with ``prefix`` (``ip netns list`` prints "name (id: n)")."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30).stdout
    return [line.split()[0] for line in listed.splitlines() if line.startswith(prefix)]


def can_make_namespaces() -> str | None:
    """None when this process may create network namespaces, else why not (one line)."""
    if os.geteuid() != 0:
        return "needs root (ip netns add)"
    probe = f"{PREFIX}probe"
    try:
        _ip("netns", "add", probe)
    except (NetnsError, FileNotFoundError) as error:
        return f"ip netns add is not permitted here: {error}"
    _ip("netns", "del", probe)
    return None


def tbf_burst_bytes(rate_bits: float) -> int:
    # At least four 64 KiB GSO packets (tbf must never split one), and 2 ms at the rate: the bucket is
    # then small against the transfers measured (tens of milliseconds and more at every rate used).
    return max(256 * 1024, int(rate_bits / 8 * 0.002))


class ShapedLinks:
    """``ranks`` namespaces, each with one interface ``eth0`` at ``10.77.0.<rank + 1>/24``. Two ranks are
    joined by one veth pair; more by a veth each to a bridge in a namespace of its own (a switch). With
    ``rate_bits`` None the links are not shaped (the veth's own speed: this machine's CPU)."""

    def __init__(self, ranks: int, rate_bits: float | None, prefix: str = PREFIX) -> None:
        if ranks < 2 or ranks > 200:
            raise ValueError(f"ranks must be between 2 and 200; got {ranks}")
        self.ranks = ranks
        self.rate_bits = rate_bits
        self.namespaces = [f"{prefix}{rank}" for rank in range(ranks)]
        self.bridge = f"{prefix}br" if ranks > 2 else None
        self._made: list[str] = []
        self._previous_handlers: dict[int, object] = {}

    def address(self, rank: int) -> str:
        return f"{SUBNET}.{rank + 1}"

    def __enter__(self) -> ShapedLinks:
        atexit.register(self.close)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            self._previous_handlers[signum] = signal.signal(signum, self._on_signal)
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # SystemExit unwinds through the caller's finally blocks and this object's __exit__.
        raise SystemExit(f"stopped by signal {signal.Signals(signum).name}")

    def _add_namespace(self, name: str) -> None:
        _ip("netns", "add", name)
        self._made.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def _build(self) -> None:
        for name in self.namespaces:
            self._add_namespace(name)
        if self.bridge is None:
            # One veth pair made straight between the two namespaces: it never exists in the root namespace.
            _ip("link", "add", "eth0", "netns", self.namespaces[0], "mtu", str(MTU), "type", "veth",
                "peer", "name", "eth0", "netns", self.namespaces[1], "mtu", str(MTU))
            shaped = [(name, "eth0") for name in self.namespaces]
        else:
            self._add_namespace(self.bridge)
            _ip("-n", self.bridge, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.bridge, "link", "set", "br0", "up")
            shaped = []
            for rank, name in enumerate(self.namespaces):
                port = f"p{rank}"
                _ip("link", "add", "eth0", "netns", name, "mtu", str(MTU), "type", "veth",
                    "peer", "name", port, "netns", self.bridge, "mtu", str(MTU))
                _ip("-n", self.bridge, "link", "set", port, "master", "br0")
                _ip("-n", self.bridge, "link", "set", port, "up")
                shaped += [(name, "eth0"), (self.bridge, port)]  # the rank's uplink and the switch port's downlink
        for rank, name in enumerate(self.namespaces):
            _ip("-n", name, "addr", "add", f"{self.address(rank)}/24", "dev", "eth0")
            _ip("-n", name, "link", "set", "eth0", "up")
        if self.rate_bits is not None:
            for namespace, device in shaped:
                self.shape(namespace, device, self.rate_bits)

    @staticmethod
    def shape(namespace: str, device: str, rate_bits: float) -> None:
        # tbf, not netem's own rate (netem is not built into this kernel); tbf's "latency" is only its queue
        # limit (how long a packet may wait for tokens), not an added delay.
        _tc(namespace, "qdisc", "replace", "dev", device, "root", "tbf", "rate", f"{int(rate_bits)}bit",
            "burst", str(tbf_burst_bytes(rate_bits)), "latency", "100ms")

    def close(self) -> None:
        """Delete every namespace this object made (their veths and bridge go with them). Idempotent."""
        while self._made:
            name = self._made.pop()
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self._previous_handlers.clear()
        try:
            atexit.unregister(self.close)
        except Exception:  # interpreter shutting down
            pass


def exec_in(namespace: str, command: list[str]) -> list[str]:
    """The command line that runs ``command`` inside ``namespace`` (ip execs it: the pid is the command's)."""
    return ["ip", "netns", "exec", namespace, *command]


if __name__ == "__main__":
    sys.exit("a helper module: see benchmarks/link_allreduce.py")
