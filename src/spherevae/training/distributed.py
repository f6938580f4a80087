"""Data-parallel training helpers (``torchrun``).

The compressed and authors' latent losses use batch statistics (means and variances
over the batch), so under data parallelism they must see the GLOBAL batch, not each
rank's shard. :func:`all_gather_with_grad` concatenates ``(mu, sigma)`` from every
rank and carries gradients back: every rank computes the same latent loss on the
global batch; in backward the gradient of the gathered tensor is summed over ranks
and each rank keeps its own slice. After :func:`average_gradients` divides by the
world size (as DDP does), parameter gradients equal those of one process on the
concatenated batch (tests/test_distributed.py checks this with two processes).

Gradients are averaged with one flat all-reduce after backward rather than with
``DistributedDataParallel``: the trainer calls ``encode``/``decode`` rather than
``forward``, which DDP needs to prepare its reducer. The cost is no overlap of
communication with backward, acceptable for the model sizes here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = [
    "DistInfo",
    "all_gather_with_grad",
    "average_gradients",
    "barrier",
    "init_distributed",
    "is_distributed",
]


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job: global ``rank``, ``world_size``, ``local_rank``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 writes files and logs."""
        return self.rank == 0


def is_distributed() -> bool:
    """Whether a process group of more than one process is running (``torchrun``)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def init_distributed(device: str = "cpu") -> DistInfo:
    """Join the process group described by ``torchrun``'s env vars (RANK, WORLD_SIZE, ...).

    Without those variables (a plain ``python`` run) this is a single-process job and
    nothing is initialised. The backend is NCCL for CUDA devices, gloo otherwise.
    """
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    world = int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistInfo(rank=rank, world_size=world, local_rank=local)


class _AllGather(torch.autograd.Function):
    """Concatenate equal-shaped shards along dim 0; backward sums the gradient over ranks."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        world = dist.get_world_size()
        ctx.rank, ctx.batch = dist.get_rank(), x.shape[0]
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        # Every rank's loss depends on every shard: rank i's shard gets the sum of the
        # gradients all ranks computed for it.
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = ctx.rank * ctx.batch
        return grad[start : start + ctx.batch]


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """``(B, ...)`` per rank -> ``(world_size * B, ...)`` in rank order, differentiable.

    Shards must have the same shape on every rank (use ``drop_last=True``). Outside a
    process group this returns ``x`` unchanged.
    """
    if not is_distributed():
        return x
    return _AllGather.apply(x)


def average_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """All-reduce-average the ``.grad`` of ``params`` over ranks, in one flat buffer."""
    if not is_distributed():
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g))
        offset += n


def barrier() -> None:
    """Wait for every rank (no-op outside a process group)."""
    if is_distributed():
        dist.barrier()
