"""Virtual workers: a run's V workers computed by P processes (1 <= P <= V), with the mathematics of V.

A run is defined by its V workers (the recipe's ``--workers``): the global batch V x batch_size, the
schedule, the data each worker reads and its random draws. When a cluster gives fewer slots, P
processes share the V workers (VirtualFlow's "virtual node processing"): each process takes a fixed,
contiguous set of virtual ranks and, per step, runs forward and backward once per virtual rank on
exactly the batch that worker would have read, summing gradients locally (DDP ``no_sync``), then
all-reduces once, dividing by V rather than P (distributed.mean_over_workers_hook): the mean over the
V workers' gradients, as V processes would have it.

Two details keep it the same run, not just the same batch:
- BatchNorm's running statistics: with V processes, DDP gives every rank rank 0's buffers at each
  step and only rank 0's update survives (it is broadcast at the next step, validated, checkpointed
  and exported). So a process runs its lowest virtual rank last, from the buffers the step started
  with: process 0's buffers then end each step as virtual worker 0's would.
- Random state: each virtual worker has its own torch RNG state (dropout), seeded and checkpointed per
  virtual rank, so that a checkpoint does not depend on P.

With P = V each process has one virtual rank and none of this runs: the step is DDP's plain step.
With P < V every process takes the virtual step, one that computes a single virtual rank too.
Imports no Spark.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


def virtual_ranks(rank: int, processes: int, virtual: int) -> list[int]:
    """The virtual ranks process ``rank`` of ``processes`` computes: contiguous, the first
    ``virtual % processes`` processes one more than the others."""
    if not 1 <= processes <= virtual:
        raise ValueError(f"{processes} processes cannot share {virtual} virtual workers: give between 1 and {virtual} "
                         "processes, or fewer virtual workers")
    if not 0 <= rank < processes:
        raise ValueError(f"rank must be in [0, {processes}); got {rank}")
    share, extra = divmod(virtual, processes)
    start = rank * share + min(rank, extra)
    return list(range(start, start + share + (rank < extra)))


class VirtualShare:
    """This process's share of the virtual workers: which ranks, in which order a step runs them, and
    their random states."""

    def __init__(self, rank: int, processes: int, virtual: int, device: torch.device) -> None:
        self.ranks = virtual_ranks(rank, processes, virtual)
        self.virtual, self.device = virtual, device
        # The step's order: the lowest virtual rank last, so that its BatchNorm update is the one kept.
        self.order = list(range(len(self.ranks)))[::-1]
        self._rng: list[torch.Tensor] = []
        self._cuda_rng: list[torch.Tensor] = []

    def seed(self, seed: int) -> None:
        """Give each virtual worker its own random state (its dropout masks), from ``seed`` + its rank;
        a process with one worker leaves torch's own RNG so seeded."""
        self._rng, self._cuda_rng = [], []
        for v in self.ranks:
            torch.manual_seed(seed + v)
            self._rng.append(torch.get_rng_state())
            if self.device.type == "cuda":
                self._cuda_rng.append(torch.cuda.get_rng_state(self.device))

    @property
    def shared(self) -> bool:
        """Whether this process computes more than one virtual worker."""
        return len(self.ranks) > 1

    @contextmanager
    def random_state_of(self, index: int) -> Iterator[None]:
        """torch's RNG as virtual worker ``self.ranks[index]`` left it, for its forward and backward."""
        if not self.shared:  # the process's own RNG is the worker's
            yield
            return
        torch.set_rng_state(self._rng[index])
        if self.device.type == "cuda":
            torch.cuda.set_rng_state(self._cuda_rng[index], self.device)
        try:
            yield
        finally:
            self._rng[index] = torch.get_rng_state()
            if self.device.type == "cuda":
                self._cuda_rng[index] = torch.cuda.get_rng_state(self.device)

    def random_states(self) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        """(CPU, CUDA or None) RNG states of this process's virtual workers, in rank order."""
        if not self.shared:
            cuda = [torch.cuda.get_rng_state(self.device)] if self.device.type == "cuda" else None
            return [torch.get_rng_state()], cuda
        return list(self._rng), list(self._cuda_rng) if self.device.type == "cuda" else None

    def set_random_states(self, cpu: list[torch.Tensor], cuda: list[torch.Tensor] | None) -> None:
        """Take every virtual worker's states (a checkpoint's, indexed by virtual rank)."""
        if len(cpu) != self.virtual:
            raise ValueError(f"the checkpoint holds random states of {len(cpu)} workers, not {self.virtual}")
        if not self.shared:
            torch.set_rng_state(cpu[self.ranks[0]])
            if self.device.type == "cuda" and cuda:
                torch.cuda.set_rng_state(cuda[self.ranks[0]], self.device)
            return
        self._rng = [cpu[v] for v in self.ranks]
        if self.device.type == "cuda" and cuda:
            self._cuda_rng = [cuda[v] for v in self.ranks]


class BufferKeeper:
    """BatchNorm's running statistics as a step found them, put back before the step's last virtual
    forward (see the module's docstring)."""

    def __init__(self, net: nn.Module) -> None:
        self.buffers = [buffer for buffer in net.buffers()]
        self._saved: list[torch.Tensor] = []

    def save(self) -> None:
        self._saved = [buffer.clone() for buffer in self.buffers]

    def restore(self) -> None:
        with torch.no_grad():
            for buffer, saved in zip(self.buffers, self._saved):
                buffer.copy_(saved)
