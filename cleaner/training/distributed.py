"""One fold on several processes: torchrun's environment and DistributedDataParallel.

``torchrun --nproc-per-node N -m cleaner oof PIPELINE --fold K`` starts N
copies of the command with ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` set;
:func:`context` reads them and joins the process group (NCCL on GPUs, gloo on
the CPU). The N processes then act as one:

- ``train.batch_size`` stays the global batch: each process takes
  ``batch_size / N`` rows of it, so a pipeline tuned on one GPU keeps its
  learning rate on several.
- The shuffle is the single process's ``(seed, epoch)`` order, dealt out
  round-robin as ``DistributedSampler`` does: the N shards of optimizer step
  ``i`` are exactly the rows of step ``i`` in one process. On GPUs batch norm
  is synchronised (SyncBatchNorm), so only float summation order differs; on
  the CPU, which SyncBatchNorm does not support, each shard normalises with
  its own batch statistics.
- Predictions: each process predicts every N-th row and the rows are gathered
  back in dataset order on every process, after rank 0's batch-norm buffers
  are broadcast so that all N predict with the same model.
- Only rank 0 writes files and shows progress.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as torch_dist
from torch import nn
from torch.utils.data import DistributedSampler

from cleaner.core.errors import InputError
from cleaner.training.data import EpochSampler


@dataclass(frozen=True)
class Dist:
    """This process's place among the processes training one fold."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes files and shows progress."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.active:
            torch_dist.barrier()


SINGLE = Dist()


def from_env() -> Dist:
    """The torchrun variables, or a single process when they are not set."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    return Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def context() -> Dist:
    """This process's :class:`Dist`, joining the process group on first use under torchrun."""
    d = from_env()
    if d.active and not torch_dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(d.local_rank)
            torch_dist.init_process_group("nccl")
        else:
            torch_dist.init_process_group("gloo")
    return d


def shutdown() -> None:
    """Leave the process group (at the end of a torchrun command)."""
    if torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def local_batch_size(batch_size: int, d: Dist) -> int:
    """Each process's share of the global ``train.batch_size``."""
    if batch_size % d.world:
        raise InputError(
            f"train.batch_size = {batch_size} is the global batch; under torchrun it must "
            f"divide evenly by the {d.world} processes"
        )
    return batch_size // d.world


class ShardedEpochSampler(DistributedSampler):
    """:class:`EpochSampler`'s order for ``(seed, epoch)``, dealt round-robin to the ranks.

    Padded like ``DistributedSampler`` (the first rows repeat) so every rank
    runs the same number of steps, which DistributedDataParallel requires.
    """

    def __init__(self, n: int, *, seed: int, d: Dist):
        # DistributedSampler only takes len() of the dataset.
        rows: Any = range(n)
        super().__init__(rows, num_replicas=d.world, rank=d.rank, shuffle=True, seed=seed)
        self._order = EpochSampler(n, seed=seed)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        self._order.set_epoch(self.epoch)
        order = list(self._order)
        order += order[: self.total_size - len(order)]
        return iter(order[self.rank : self.total_size : self.num_replicas])


def shard(n: int, d: Dist) -> np.ndarray:
    """The dataset positions this process predicts: every ``world``-th from ``rank``."""
    return np.arange(d.rank, n, d.world)


def gather_rows(n: int, positions: np.ndarray, *parts: np.ndarray) -> list[np.ndarray]:
    """Every process's rows of each array in ``parts``, put back at ``positions`` (all ranks)."""
    gathered: list[tuple[np.ndarray, ...] | None] = [None] * torch_dist.get_world_size()
    torch_dist.all_gather_object(gathered, (positions, *parts))
    out = []
    for j, first in enumerate(parts):
        full = np.empty((n, *first.shape[1:]), dtype=first.dtype)
        for item in gathered:
            assert item is not None
            full[item[0]] = item[j + 1]
        out.append(full)
    return out


def sync_buffers(model: nn.Module) -> None:
    """Rank 0's buffers (batch-norm running statistics) on every process.

    DistributedDataParallel all-reduces gradients, so parameters agree, but
    each process updates its running statistics from its own shard.
    """
    for buf in model.buffers():
        torch_dist.broadcast(buf, src=0)
