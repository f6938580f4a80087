"""Cartesian <-> hyperspherical coordinates (paper eqs 9-10), O(batch*n).

Baseline version; to be replaced by the optimised, fully stable implementation.
"""

from __future__ import annotations

import torch

from spherevae._validation import check_latents

__all__ = ["hyperspherical_cosines"]


def hyperspherical_cosines(x: torch.Tensor, *, validate: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Radius and cosines of the hyperspherical angles of ``x``.

    Args:
        x: ``(..., n)``, ``n >= 2``.

    Returns:
        ``r`` of shape ``(...)`` and ``cos_phi`` of shape ``(..., n-1)`` with
        ``cos_phi[..., k-1] = x_k / ||x_{k..n}||`` (1 where that tail is all zero).
    """
    check_latents(x, "x", validate=validate)
    tail_sq = torch.flip(torch.cumsum(torch.flip(x * x, (-1,)), -1), (-1,))
    nonzero = tail_sq > 0
    tail = torch.sqrt(torch.where(nonzero, tail_sq, torch.ones_like(tail_sq)))
    cos = torch.where(nonzero, x / tail, torch.ones_like(x))
    r = torch.where(nonzero[..., 0], tail[..., 0], torch.zeros_like(tail[..., 0]))
    return r, cos[..., :-1]
