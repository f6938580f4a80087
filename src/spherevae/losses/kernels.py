"""Triton kernels for the hyperspherical prior loss (eqs 4-5): three launches per step.

On a GPU the compressed loss is not arithmetic: at batch 200 and n = 1000 it reads
~1.6 MB. Written with torch ops it is ~40 launches forward and backward (cosine scan,
moments, targets), each a few microseconds of launch for nanoseconds of work. These
kernels do the same computation in three launches:

1. ``_stats_kernel`` (grid ``(row_blocks, groups)``: row blocks on the axis without
   CUDA's 65,535 limit): per row, the scaled tail norms
   (a reverse scan), the cosines and the radius; per block of rows, the exact moments
   ``(mean, m2)`` of each column (two passes over the tile held in registers).
2. ``_finalize_kernel`` (grid ``(1,)``): merges the blocks' moments (Chan et al.'s
   pairwise update, in a fixed order, so the result is deterministic: no atomics),
   then the loss, and the per-column factors the backward needs.
3. ``_backward_kernel`` (grid ``(row_blocks, groups)``): recomputes the cosines
   (cheaper than storing them), ``dL/dc`` from the factors, and the O(n) cosine
   backward (one forward scan), exactly as :func:`spherevae.geometry.coordinates.cosines_backward`.

Conventions are those of :func:`spherevae.geometry.coordinates.cosines_forward` (rows scaled by
``s = max |x_j|`` so that no square under- or overflows; an all-zero tail has angle 0
and zero gradient) and of ``losses._FusedPriorLoss`` (population variance; the std term
is ``(sqrt v - b)^2``, or ``v`` itself where ``b = 0``). The two agree to float32
rounding on normal numbers (tested to 2e-4 relative); on a GPU Triton's ``sqrt`` and
division are the fast approximate ones, so rows made only of subnormal numbers may be
treated as zero there, unlike in the torch path.

Triton is optional: :func:`triton_available` says whether these kernels can run for a
device. On CPU they run only under Triton's interpreter (``TRITON_INTERPRET=1`` set
before triton is imported), which is how the tests check them on machines without a GPU.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from typing import Any

import torch

__all__ = [
    "MAX_TRITON_DIM",
    "triton_available",
    "triton_prior_loss",
]

# Columns are held in registers as one power-of-two block per row; beyond this the
# torch implementation (one cumsum kernel per pass) is the better choice anyway.
MAX_TRITON_DIM = 16384
_TILE = 4096  # elements of the (rows x BLOCK_N) tile one program holds


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


MIN_TRITON = (3, 2)  # tl.cumsum(reverse=True) and the interpreter used by the tests
MIN_CAPABILITY = (7, 0)  # Triton's oldest supported NVIDIA architecture (Volta)


@functools.cache
def _triton_version() -> tuple[int, ...] | None:
    if importlib.util.find_spec("triton") is None:
        return None
    from importlib.metadata import PackageNotFoundError, version

    try:
        text = version("triton")
    except PackageNotFoundError:  # e.g. pytorch-triton under another distribution name
        import triton

        text = str(getattr(triton, "__version__", "0"))
    return tuple(int(p) for p in text.split("+")[0].split(".")[:2] if p.isdigit())


def triton_available(device: torch.device | str) -> bool:
    """Whether the Triton kernels can run on ``device``: triton >= 3.2 is installed and the
    device is a CUDA GPU of compute capability >= 7.0, or the CPU under the interpreter
    (``TRITON_INTERPRET=1``). torch's CUDA wheels bring their own triton, so this is what
    keeps ``backend="auto"`` off old tritons and old GPUs (the torch path runs there)."""
    found = _triton_version()
    if found is None or found < MIN_TRITON:
        return False
    dev = torch.device(device)
    if dev.type == "cuda":
        return _cuda_capable(dev.index if dev.index is not None else torch.cuda.current_device())
    return dev.type == "cpu" and _interpreting()


@functools.cache
def _cuda_capable(index: int) -> bool:
    # Asked on every loss call ('auto'): a device's capability does not change, so once.
    return torch.cuda.is_available() and torch.cuda.get_device_capability(index) >= MIN_CAPABILITY


@functools.cache
def _kernels() -> dict[str, Any]:
    """Triton is imported only when a Triton loss first runs."""
    from spherevae.losses import _triton_kernels as k

    return {"stats": k.stats_kernel, "finalize": k.finalize_kernel, "backward": k.backward_kernel}


def _layout(x: torch.Tensor) -> tuple[int, int, int]:
    """``(BLOCK_N, ROWS, n_blocks)`` for ``x (g, B, n)``."""
    block_n = 1 << max(1, (x.shape[-1] - 1).bit_length())
    rows = max(1, min(64, _TILE // block_n))
    return block_n, rows, -(-x.shape[1] // rows)


class _TritonPriorLoss(torch.autograd.Function):
    """Same contract as ``losses._FusedPriorLoss``: ``x (g, B, n)`` float32 contiguous,
    targets and gains ``(g, n)`` float32 -> scalar loss; first derivatives in ``x``."""

    @staticmethod
    def forward(ctx, x, mean_target, std_target, mean_gain, std_gain):
        k = _kernels()
        groups, batch, n = x.shape
        block_n, rows, n_blocks = _layout(x)
        part_mean = x.new_empty(groups, n_blocks, block_n)
        part_m2 = torch.empty_like(part_mean)
        warps = 4 if rows * block_n <= 2048 else 8
        k["stats"][(n_blocks, groups)](
            x, part_mean, part_m2, batch, n, x.stride(0), x.stride(1), n_blocks,
            ROWS=rows, BLOCK_N=block_n, num_warps=warps)
        loss = x.new_empty(())
        factors = x.new_empty(3, groups, n)  # global mean, dL/dmean, dL/dvar
        k["finalize"][(1,)](
            part_mean, part_m2, mean_target, std_target, mean_gain, std_gain, loss,
            factors[0], factors[1], factors[2], batch, n, GROUPS=groups, N_BLOCKS=n_blocks,
            ROWS=rows, BLOCK_N=block_n, TINY=torch.finfo(torch.float32).tiny, num_warps=4)
        ctx.save_for_backward(x, factors)
        return loss

    @staticmethod
    def backward(ctx, grad):
        x, factors = ctx.saved_tensors
        k = _kernels()
        groups, batch, n = x.shape
        block_n, rows, n_blocks = _layout(x)
        grad_x = torch.empty_like(x)
        warps = 4 if rows * block_n <= 2048 else 8
        k["backward"][(n_blocks, groups)](
            x, grad_x, grad.reshape(1).to(torch.float32), factors[0], factors[1], factors[2],
            batch, n, x.stride(0), x.stride(1), ROWS=rows, BLOCK_N=block_n, num_warps=warps)
        return grad_x, None, None, None, None


def triton_prior_loss(x: torch.Tensor, mean_target: torch.Tensor, std_target: torch.Tensor,
                      mean_gain: torch.Tensor, std_gain: torch.Tensor) -> torch.Tensor:
    """Eqs 4-5 on the packed coordinates ``x (g, B, n)`` (see ``losses._FusedPriorLoss``),
    by the Triton kernels; float32 in, float32 scalar out. ``B >= 2``, ``2 <= n <=``
    :data:`MAX_TRITON_DIM`."""
    if x.dtype != torch.float32:
        raise TypeError(f"the Triton prior loss computes in float32, got x of dtype {x.dtype}")
    if x.dim() != 3 or x.shape[1] < 2 or not 2 <= x.shape[2] <= MAX_TRITON_DIM:
        raise ValueError(
            f"x must have shape (groups, batch >= 2, 2 <= n <= {MAX_TRITON_DIM}), got {tuple(x.shape)}")
    params = [t.to(torch.float32).contiguous() for t in (mean_target, std_target, mean_gain, std_gain)]
    return _TritonPriorLoss.apply(x.contiguous(), *params)
