"""Cartesian <-> hyperspherical coordinates (paper eqs 9-10), O(batch*n).

Baseline version; to be replaced by the optimised, fully stable implementation.
"""

from __future__ import annotations

import torch

from spherevae._validation import check_latents

__all__ = ["hyperspherical_cosines", "project_to_sphere"]


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


def project_to_sphere(
    z: torch.Tensor, radius: float | torch.Tensor, *, validate: bool = True
) -> torch.Tensor:
    """Rescale each vector of ``z`` (``(..., n)``) to norm ``radius`` (paper eq 8).

    The zero vector has no direction; it is mapped to ``radius * e_1`` (the pole,
    consistent with the angle-0 convention) with a zero gradient, so values and
    gradients stay finite.
    """
    check_latents(z, "z", min_dim=1, validate=validate)
    norm_sq = (z * z).sum(-1, keepdim=True)
    nonzero = norm_sq > 0
    inv = torch.rsqrt(torch.where(nonzero, norm_sq, torch.ones_like(norm_sq)))
    pole = torch.zeros_like(z)
    pole[..., 0] = 1.0
    return radius * torch.where(nonzero, z * inv, pole)
