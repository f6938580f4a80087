"""Batch statistics of latents: moments that merge exactly across DDP ranks, and the
moments of the hyperspherical coordinates of ``mu`` and ``sigma`` that the prior losses
(:mod:`spherevae.losses.prior`, :mod:`spherevae.losses.authors`) are made of, and the KLD written
with batch statistics (eq 3/17, :func:`batch_stat_kld`).

The batch standard deviation is the *population* one (divide by ``N``): it is a function
of the global batch only, so a DDP trainer that gathers the batch (or merges per-rank
:class:`Moments`) gets exactly the single-process value.

DDP. The statistics must be those of the GLOBAL batch. Two ways, both exact:

1. gather ``mu`` and ``sigma`` with a differentiable all-gather
   (``torch.distributed.nn.functional.all_gather``), concatenate, call ``loss(mu, sigma)``;
2. cheaper (communicates ``O(n)`` per rank instead of ``O(batch*n)``): on each rank
   ``stats = latent_batch_stats(mu, sigma)``, all-gather every tensor of ``stats`` with
   the differentiable all-gather, rebuild one :class:`LatentStats` per rank, then
   ``loss.from_stats(merge_latent_stats(per_rank))``.

In both cases every rank computes the same global loss; the differentiable all-gather
sums the ranks' gradients in its backward and DDP averages them, which gives the
single-process gradient (no extra scaling).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch

from spherevae._utils.validation import check_finite, check_latents, check_same_shape
from spherevae.geometry.coordinates import hyperspherical_cosines

__all__ = [
    "LatentStats",
    "Moments",
    "batch_stat_kld",
    "biased_cosines",
    "latent_batch_stats",
    "merge_latent_stats",
    "merge_moments",
    "moments",
    "sum_terms",
]


class Moments(NamedTuple):
    """Count, mean and sum of squared deviations (``m2``) of samples along dim 0.

    ``m2`` (not the variance) is stored so that per-rank moments merge exactly
    (:func:`merge_moments`). ``mean`` and ``m2`` have the samples' trailing shape.
    """

    # The field shadows tuple.count (a method), which NamedTuple allows at runtime but the
    # type system cannot express.
    count: int  # type: ignore[assignment]
    mean: torch.Tensor
    m2: torch.Tensor

    def var(self, *, unbiased: bool = False) -> torch.Tensor:
        """Population variance ``m2 / N`` (or the unbiased ``m2 / (N - 1)``)."""
        return self.m2 / (self.count - 1 if unbiased else self.count)


def moments(x: torch.Tensor) -> Moments:
    """Moments of ``x`` over dim 0; two-pass (mean, then deviations) for accuracy."""
    mean = x.mean(0)
    return Moments(x.shape[0], mean, (x - mean).square().sum(0))


def merge_moments(parts: Sequence[Moments]) -> Moments:
    """Moments of the concatenation of the parts' samples (exact, differentiable).

    ``m2 = sum_i m2_i + sum_i N_i (mean_i - mean)^2`` (parallel-axis theorem), which is
    stable because it never subtracts two large sums of squares.
    """
    if len(parts) == 0:
        raise ValueError("parts must hold at least one Moments, got an empty sequence")
    counts = [p.count for p in parts]
    total = sum(counts)
    weights = torch.tensor(counts, dtype=parts[0].mean.dtype, device=parts[0].mean.device)
    means = torch.stack([p.mean for p in parts])
    w = weights.reshape((-1,) + (1,) * (means.dim() - 1))
    mean = (w * means).sum(0) / total
    m2 = torch.stack([p.m2 for p in parts]).sum(0) + (w * (means - mean).square()).sum(0)
    return Moments(total, mean, m2)


class LatentStats(NamedTuple):
    """Batch moments of the hyperspherical coordinates of ``mu`` and ``sigma``.

    ``*_cos``: moments of ``cos phi_k`` (trailing shape ``(n-1,)``); ``*_radius``: of
    ``r`` (0-dim). A group is ``None`` when it was not requested.
    """

    mu_cos: Moments | None
    mu_radius: Moments | None
    sigma_cos: Moments | None
    sigma_radius: Moments | None

    @property
    def count(self) -> int:  # type: ignore[override]  # shadows tuple.count, as Moments.count
        """Number of samples (0 when no group was computed)."""
        return next((m.count for m in self if m is not None), 0)


def _compute_dtype(x: torch.Tensor) -> torch.Tensor:
    # Batch variances of cosines in half precision lose most of their digits.
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def biased_cosines(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(r, cos)`` with ``cos_k = x_k / sqrt(x_k^2 + ... + x_n^2 + eps)``, plain autograd.

    The authors' code computes its cosines this way (``eps = 1e-3``): a bias toward 0 for
    small tails, so only their objective offers it. ``r = ||x||`` is exact.
    """
    tails_sq = x.square().flip(-1).cumsum(-1).flip(-1)
    cos = x[..., :-1] * torch.rsqrt(tails_sq[..., :-1] + eps)
    return torch.linalg.vector_norm(x, dim=-1), cos


def _check_sigma(sigma: torch.Tensor, *, min_dim: int = 2, validate: bool = True) -> None:
    """``sigma (batch, n)``: a standard deviation, so (when validating) finite and > 0."""
    check_latents(sigma, "sigma", min_dim=min_dim, ndim=2, validate=validate)
    if validate and bool((sigma <= 0).any()):
        raise ValueError(
            f"sigma must be > 0 (standard deviations), but {int((sigma <= 0).sum())} of its "
            f"{sigma.numel()} values are <= 0 (min {float(sigma.min())})"
        )


def latent_batch_stats(
    mu: torch.Tensor,
    sigma: torch.Tensor | None,
    *,
    include_mu: bool = True,
    include_sigma: bool = True,
    validate: bool = True,
    tail_eps: float = 0.0,
) -> LatentStats:
    """Moments over the batch of ``cos phi_k`` and ``r`` of ``mu`` and of ``sigma``.

    The cosines of ``mu`` and ``sigma`` are computed in one call on the stacked
    ``(2, batch, n)`` tensor: ``O(batch * n)``, one kernel sequence.

    Args:
        mu, sigma: ``(batch, n)``, same shape, ``n >= 2`` (``sigma`` may be ``None`` when
            ``include_sigma`` is false). A batch of 1 is allowed here (a DDP rank may hold
            one sample); the losses check that the merged batch has at least 2.
        tail_eps: 0 for the exact cosines; else :func:`biased_cosines` (the authors' code).
    """
    check_latents(mu, "mu", ndim=2, validate=validate)
    include_sigma = include_sigma and sigma is not None
    if include_sigma:
        assert sigma is not None
        _check_sigma(sigma, validate=validate)
        check_same_shape(mu, sigma, "mu", "sigma")
    groups = [t for t, use in ((mu, include_mu), (sigma, include_sigma)) if use and t is not None]
    if not groups:
        return LatentStats(None, None, None, None)
    stacked = _compute_dtype(torch.stack(groups) if len(groups) > 1 else groups[0][None])
    if tail_eps > 0:
        r, cos = biased_cosines(stacked, tail_eps)
    else:
        r, cos = hyperspherical_cosines(stacked, validate=False)  # (g, B), (g, B, n-1)
    out: list[Moments | None] = []
    i = 0
    for use in (include_mu, include_sigma):
        if use:
            out += [moments(cos[i]), moments(r[i])]
            i += 1
        else:
            out += [None, None]
    return LatentStats(*out)


def merge_latent_stats(parts: Sequence[LatentStats]) -> LatentStats:
    """Statistics of the union of the parts' batches (e.g. one part per DDP rank)."""
    if len(parts) == 0:
        raise ValueError("parts must hold at least one LatentStats, got an empty sequence")
    merged: list[Moments | None] = []
    for field in range(4):
        items = [p[field] for p in parts]
        if all(m is None for m in items):
            merged.append(None)
        elif any(m is None for m in items):
            raise ValueError(f"parts disagree on whether {LatentStats._fields[field]} was computed")
        else:
            merged.append(merge_moments([m for m in items if m is not None]))
    return LatentStats(*merged)


def sum_terms(terms: Mapping[str, torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """Sum of a terms dict (0 of ``like``'s dtype when every term is switched off)."""
    total = torch.zeros((), dtype=like.dtype, device=like.device)
    for value in terms.values():
        total = total + value
    return total


def _sum_terms(terms: Mapping[str, torch.Tensor], stats: LatentStats) -> torch.Tensor:
    like = next((m.mean for m in stats if m is not None), torch.zeros(()))
    return sum_terms(terms, like)


def batch_stat_kld(
    mu: torch.Tensor,
    sigma: torch.Tensor,
    prior_mu: float | torch.Tensor = 0.0,
    prior_sigma: float | torch.Tensor = 1.0,
    *,
    validate: bool = True,
) -> torch.Tensor:
    """The KLD rewritten with batch statistics (eq 3 / eq 17), a scalar.

    ``sum_k (E_b[sigma_k] - sigma_p)^2 + std_b[sigma_k]^2 + (E_b[mu_k] - mu_p)^2 +
    std_b[mu_k]^2`` with the population std, so that it equals exactly the batch mean of
    ``sum_k (sigma_k - sigma_p)^2 + (mu_k - mu_p)^2`` (eq 15 with unit constants, by eq 16).
    A batch of one is allowed here (its variance is 0 and the identity still holds).

    Args:
        mu, sigma: ``(batch, n)``, same shape.
        prior_mu, prior_sigma: scalars or ``(n,)`` tensors.
    """
    check_latents(mu, "mu", min_dim=1, ndim=2, validate=validate)
    _check_sigma(sigma, min_dim=1, validate=validate)
    check_same_shape(mu, sigma, "mu", "sigma")
    n = mu.shape[1]
    p_mu = _per_dim(prior_mu, "prior_mu", n, mu)
    p_sigma = _per_dim(prior_sigma, "prior_sigma", n, mu)
    m_mu, m_sigma = moments(mu), moments(sigma)
    return (
        (m_sigma.mean - p_sigma).square() + m_sigma.var() + (m_mu.mean - p_mu).square() + m_mu.var()
    ).sum()


def _per_dim(value: float | torch.Tensor, name: str, n: int, like: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if t.dim() > 1 or (t.dim() == 1 and t.shape[0] != n):
        raise ValueError(
            f"{name} must be a scalar or a tensor of shape ({n},), got {tuple(t.shape)}"
        )
    check_finite(t, name)
    return t
