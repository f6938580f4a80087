"""Objectives: the beta-VAE loss (eqs 1-2), its batch-statistics form (eq 3/17) and
the hyperspherical prior loss that compresses the latent volume (eqs 4-6).

Conventions (see ``docs/objectives.md`` for the formulas and derivations):

- Latents ``mu`` and ``sigma`` are ``(batch, n)``; angles are indexed ``k = 1..n-1`` in
  formulas and sit at index ``k-1`` of per-angle tensors of length ``n-1``.
- Batch statistics are taken over dim 0. The batch standard deviation is the
  *population* one (divide by ``N``): it makes eq 16 an exact identity, and it is a
  function of the global batch only, so a DDP trainer that gathers the batch (or merges
  per-rank :class:`Moments`) gets exactly the single-process value. The authors'
  released-code penalty (:class:`AuthorsLatentLoss`) keeps their unbiased variance.
- A standard deviation needs at least two samples: batch size 1 raises ``ValueError``.

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

import math
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from spherevae._validation import (
    check_choice,
    check_finite,
    check_floating,
    check_latents,
    check_same_shape,
)
from spherevae.coordinates import cosines_backward, cosines_forward, hyperspherical_cosines

__all__ = [
    "ANGLE_TARGETS",
    "AUTHORS_COMPRESSION",
    "AUTHORS_SIGMA_ANGLE_WEIGHTS",
    "AUTHORS_SIGMA_RADIUS_FACTORS",
    "AUTHORS_TAIL_EPS",
    "PRESETS",
    "RADIUS_TARGETS",
    "AuthorsLatentLoss",
    "HypersphericalPriorLoss",
    "LatentStats",
    "LossTerms",
    "Moments",
    "authors_penalty",
    "batch_stat_kld",
    "biased_cosines",
    "chi_mean",
    "chi_std",
    "gaussian_kld",
    "latent_batch_stats",
    "merge_latent_stats",
    "merge_moments",
    "moments",
    "ones_cosines",
    "reconstruction_error",
    "sum_terms",
    "vae_loss",
]


# --------------------------------------------------------------------------------------
# Standard beta-VAE (eqs 1-2)
# --------------------------------------------------------------------------------------


class LossTerms(NamedTuple):
    """The parts of a VAE objective; ``total = reconstruction + beta * latent``."""

    total: torch.Tensor
    reconstruction: torch.Tensor
    latent: torch.Tensor


def reconstruction_error(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Squared error summed over all non-batch dims, mean over the batch (eq 1, MSE).

    Args:
        x, x_hat: ``(batch, ...)`` of the same shape.
    """
    return (x_hat - x).square().flatten(1).sum(1).mean()


def gaussian_kld(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) summed over the latent dims, mean over the batch.

    Args:
        mu, logvar: ``(batch, n)``.
    """
    per_dim = -0.5 * (1.0 + logvar - mu.square() - logvar.exp())
    return per_dim.sum(1).mean()


def vae_loss(
    x: torch.Tensor,
    x_hat: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    beta: float | torch.Tensor,
    *,
    validate: bool = True,
) -> LossTerms:
    """The beta-VAE objective ``MSE + beta * KLD`` (eqs 1-2).

    Both terms are *averaged* over the batch. Eq 1 writes the KLD as a sum over the batch
    and the MSE as a mean; averaging both keeps beta independent of the batch size
    (a summed KLD equals ``N_b`` times ours, i.e. the paper's beta is ours / ``N_b``).

    Args:
        x, x_hat: images ``(batch, ...)``, same shape (no broadcasting).
        mu, logvar: ``(batch, n)``, same shape, same batch size as ``x``.
        beta: the KLD gain (a float or a 0-dim tensor, e.g. from a schedule).

    Returns:
        ``LossTerms(total, reconstruction, latent)`` with ``latent`` the KLD.
    """
    check_floating(x, "x")
    check_floating(x_hat, "x_hat")
    check_same_shape(x, x_hat, "x", "x_hat")
    if x.dim() < 2:
        raise ValueError(f"x must have shape (batch, ...), got shape {tuple(x.shape)}")
    check_latents(mu, "mu", min_dim=1, ndim=2, validate=validate)
    check_latents(logvar, "logvar", min_dim=1, ndim=2, validate=validate)
    check_same_shape(mu, logvar, "mu", "logvar")
    if mu.shape[0] != x.shape[0]:
        raise ValueError(
            f"mu and x must have the same batch size, got {mu.shape[0]} and {x.shape[0]}"
        )
    if validate:
        check_finite(x, "x")
        check_finite(x_hat, "x_hat")
        _check_gain(beta, "beta")
    reconstruction = reconstruction_error(x, x_hat)
    latent = gaussian_kld(mu, logvar)
    return LossTerms(reconstruction + beta * latent, reconstruction, latent)


# --------------------------------------------------------------------------------------
# Batch statistics
# --------------------------------------------------------------------------------------


class Moments(NamedTuple):
    """Count, mean and sum of squared deviations (``m2``) of samples along dim 0.

    ``m2`` (not the variance) is stored so that per-rank moments merge exactly
    (:func:`merge_moments`). ``mean`` and ``m2`` have the samples' trailing shape.
    """

    count: int
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
    def count(self) -> int:
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
    groups = [t for t, use in ((mu, include_mu), (sigma, include_sigma)) if use]
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
    merged = []
    for field in range(4):
        items = [p[field] for p in parts]
        if all(m is None for m in items):
            merged.append(None)
        elif any(m is None for m in items):
            raise ValueError(f"parts disagree on whether {LatentStats._fields[field]} was computed")
        else:
            merged.append(merge_moments(items))
    return LatentStats(*merged)


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


def _check_gain(value: float | torch.Tensor, name: str) -> None:
    t = torch.as_tensor(value)
    if t.dim() != 0 or not bool(torch.isfinite(t)) or float(t) < 0:
        raise ValueError(f"{name} must be a finite scalar >= 0, got {value!r}")


# --------------------------------------------------------------------------------------
# Hyperspherical prior loss (eqs 4-6)
# --------------------------------------------------------------------------------------


def _k(n: int) -> torch.Tensor:
    """Angle indices ``k = 1..n-1`` in float64."""
    return torch.arange(1, n, dtype=torch.float64)


def ones_cosines(n: int) -> torch.Tensor:
    """``cos phi_k`` of the all-ones vector by our own transform (eq 10), ``(n-1,)`` float64.

    This is ``o_k = 1/sqrt(n-k+1)`` (``o_1 = 1/sqrt(n)``, ``o_{n-1} = 1/sqrt(2)``): what the
    paper means by "the direction of (1, ..., 1)" and what the authors' code trains with.
    Computed from :func:`~spherevae.coordinates.hyperspherical_cosines`, never retyped, so
    the profile cannot drift from the convention the loss itself uses.
    """
    return hyperspherical_cosines(torch.ones(n, dtype=torch.float64), validate=False)[1]


# Named per-angle profiles, functions of the latent dim n returning a (n-1,) float64 tensor.
ANGLE_TARGETS: dict[str, Callable[[int], torch.Tensor]] = {
    # a_k = 1: every mu at the north pole (full compression, Fig 15).
    "pole": lambda n: torch.ones(n - 1, dtype=torch.float64),
    # a_k = 0: the equators.
    "equator": lambda n: torch.zeros(n - 1, dtype=torch.float64),
    # o_k = 1/sqrt(n-k+1): the cosines of (1, ..., 1) by eq 10 (the default wherever the
    # paper or the authors' code means that vector).
    "all_ones": ones_cosines,
    # 1/sqrt(k+1): the profile as PRINTED in section 4.2 (o_k indexed from the other end).
    # Kept for ablations only; no preset uses it.
    "paper_printed": lambda n: 1.0 / torch.sqrt(_k(n) + 1.0),
    # std of cos phi_k for a uniform direction (the Beta moments, docs/objectives.md):
    # numerically equal to o_k, derived independently.
    "uniform_std": lambda n: 1.0 / torch.sqrt(n - _k(n) + 1.0),
}


def chi_mean(n: int) -> float:
    """Mean of the chi distribution with ``n`` degrees of freedom (``|z|``, ``z ~ N(0, I_n)``)."""
    return math.sqrt(2.0) * math.exp(math.lgamma((n + 1) / 2) - math.lgamma(n / 2))


def chi_std(n: int) -> float:
    """Standard deviation of the chi distribution with ``n`` degrees of freedom."""
    return math.sqrt(max(n - chi_mean(n) ** 2, 0.0))


RADIUS_TARGETS: dict[str, Callable[[int], float]] = {
    "sqrt_n": lambda n: math.sqrt(n),  # eq 8
    "sqrt_n_minus_half": lambda n: math.sqrt(n - 0.5),  # the authors' code, mu
    "authors_sigma": lambda n: 0.6 * math.sqrt(n - 0.5),  # the authors' code, sigma
    "chi_mean": chi_mean,
    "chi_std": chi_std,
}

# Targets shared by every preset. The paper gives none for sigma: these are the ones of the
# authors' released code (docs/objectives.md, "Where the defaults come from").
_SHARED_TARGETS: dict[str, object] = {
    "mu_radius_mean_target": "sqrt_n",
    "mu_radius_std_target": 0.0,
    "sigma_angle_mean_target": "all_ones",
    "sigma_angle_std_target": 0.0,
    "sigma_radius_mean_target": "authors_sigma",
    "sigma_radius_std_target": math.sqrt(0.5),
}

PRESETS: dict[str, dict[str, object]] = {
    "full": {
        **_SHARED_TARGETS,
        "mu_angle_mean_target": "pole",
        "mu_angle_std_target": "all_ones",
    },
    "moderate": {
        **_SHARED_TARGETS,
        "mu_angle_mean_target": "all_ones",
        "mu_angle_std_target": "all_ones",
    },
    "equator": {
        **_SHARED_TARGETS,
        "mu_angle_mean_target": "equator",
        "mu_angle_std_target": "all_ones",
    },
    "uniform": {
        **_SHARED_TARGETS,
        "mu_angle_mean_target": "equator",
        "mu_angle_std_target": "uniform_std",
    },
    "gaussian": {
        **_SHARED_TARGETS,
        "mu_angle_mean_target": "equator",
        "mu_angle_std_target": "uniform_std",
        "mu_radius_mean_target": "chi_mean",
        "mu_radius_std_target": "chi_std",
    },
}

_GROUPS = ("mu", "sigma")
_TARGET_KEYS = tuple(
    f"{g}_{part}_{stat}_target"
    for g in _GROUPS
    for part in ("angle", "radius")
    for stat in ("mean", "std")
)
_GAIN_KEYS = tuple(k.replace("_target", "_gain") for k in _TARGET_KEYS)
_SWITCHES = ("use_mu_terms", "use_sigma_terms", "use_radius_terms")
_OPTIONS = (*_TARGET_KEYS, *_GAIN_KEYS, *_SWITCHES, "gain_scale")


def _resolve_angle(value: object, name: str, n: int) -> torch.Tensor:
    """A per-angle target or gain as a ``(n-1,)`` float64 tensor, validated."""
    if isinstance(value, str):
        return ANGLE_TARGETS[check_choice(value, name, ANGLE_TARGETS)](n)
    if isinstance(value, bool) or not isinstance(value, (int, float, torch.Tensor)):
        raise TypeError(f"{name} must be a float, a tensor or a name, got {type(value).__name__}")
    t = torch.as_tensor(value, dtype=torch.float64).detach().cpu()
    if t.dim() == 0:
        t = t.expand(n - 1).clone()
    if t.shape != (n - 1,):
        raise ValueError(
            f"{name} must be a scalar or have shape ({n - 1},) (one value per angle k = 1..{n - 1}), "
            f"got shape {tuple(t.shape)}"
        )
    check_finite(t, name)
    return t


def _resolve_radius(value: object, name: str, n: int) -> torch.Tensor:
    if isinstance(value, str):
        return torch.tensor(
            RADIUS_TARGETS[check_choice(value, name, RADIUS_TARGETS)](n), dtype=torch.float64
        )
    if isinstance(value, bool) or not isinstance(value, (int, float, torch.Tensor)):
        raise TypeError(f"{name} must be a float or a name, got {type(value).__name__}")
    t = torch.as_tensor(value, dtype=torch.float64).detach().cpu()
    if t.dim() != 0:
        raise ValueError(f"{name} must be a scalar, got shape {tuple(t.shape)}")
    check_finite(t, name)
    return t


def _check_range(t: torch.Tensor, name: str, low: float, high: float = math.inf) -> None:
    if bool((t < low).any()) or bool((t > high).any()):
        raise ValueError(
            f"{name} must lie in [{low}, {high}], got values in [{float(t.min())}, {float(t.max())}]"
        )


def _std_square_error(var: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``(sqrt(var) - target)^2`` with finite gradients at ``var = 0``.

    Where the target is 0 the term is the variance itself (exact, no sqrt). Elsewhere the
    variance is clamped at the dtype's smallest normal number before the sqrt, which only
    changes batches whose variance is already below ~1e-38 (float32): no bias on normal
    batches, and the gradient ``(s - b) / s * dvar`` stays finite.
    """
    std = torch.sqrt(var.clamp_min(torch.finfo(var.dtype).tiny))
    return torch.where(target > 0, (std - target).square(), var)


# How HypersphericalPriorLoss computes eqs 4-5: "torch" (``_FusedPriorLoss``, any device
# and dtype), "triton" (spherevae.kernels: three launches, for GPUs), "auto" (Triton on
# CUDA where installed, else torch).
LOSS_BACKENDS = ("auto", "torch", "triton")


class _FusedPriorLoss(torch.autograd.Function):
    """``(x (g, B, n), targets/gains (g, n)) -> scalar`` eqs 4-5 with an analytic backward.

    Forward: ``c = [cos phi(x), |x|]`` per row, ``m = mean_B c``, ``v = mean_B (c - m)^2``,
    ``L = sum alpha (m - a)^2 + beta E(v, b)`` with ``E = (sqrt v - b)^2`` (``v`` where b = 0).
    Backward: ``dL/dc = (2 alpha (m - a) + 2 beta E'(v) (c - m)) / B`` (the mean's path
    through ``c - m`` cancels since deviations sum to 0), then the O(n) cosine backward.
    One autograd node instead of ~50: on a GPU the loss is launch-bound, not arithmetic-bound.
    """

    @staticmethod
    def forward(ctx, x, mean_target, std_target, mean_gain, std_gain):  # type: ignore[override]
        r, cos, xs, inv_s, inv_tails = cosines_forward(x)
        coords = torch.cat([cos, r.unsqueeze(-1)], -1)  # (g, B, n)
        mean = coords.mean(1, keepdim=True)
        dev = coords - mean
        var = dev.square().mean(1)
        # As in _std_square_error: the clamp only touches variances below ~1e-38 (float32).
        std = var.clamp_min(torch.finfo(var.dtype).tiny).sqrt()
        positive = std_target > 0
        std_err = torch.where(positive, (std - std_target).square(), var)
        loss = (mean_gain * (mean.squeeze(1) - mean_target).square() + std_gain * std_err).sum()
        d_var = std_gain * torch.where(positive, 1.0 - std_target / std, torch.ones_like(std))
        d_mean = 2.0 * mean_gain * (mean.squeeze(1) - mean_target)
        ctx.save_for_backward(xs, inv_s, inv_tails, cos, dev, d_mean, d_var)
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):  # type: ignore[override]
        xs, inv_s, inv_tails, cos, dev, d_mean, d_var = ctx.saved_tensors
        batch = dev.shape[1]
        g = (grad / batch) * torch.addcmul(d_mean.unsqueeze(1), dev, d_var.unsqueeze(1), value=2.0)
        grad_x = cosines_backward(g[..., -1], g[..., :-1], cos, xs, inv_s, inv_tails)
        return grad_x, None, None, None, None


class HypersphericalPriorLoss(nn.Module):
    """The KLD-like loss in hyperspherical coordinates (eqs 4-5), a scalar.

    For ``g`` in (mu, sigma), with ``c_k = cos phi_k(g)`` and ``r = |g|``::

        sum_k alpha_{g,k} (E_b[c_k] - a_{g,k})^2 + beta_{g,k} (std_b[c_k] - b_{g,k})^2
        + alpha_{g,r} (E_b[r] - a_{g,r})^2 + beta_{g,r} (std_b[r] - b_{g,r})^2

    ``std_b`` is the population std over the batch (dim 0). Eq 6 is
    ``reconstruction + beta * loss(mu, sigma)``.

    Presets (``PRESETS``; k = 1..n-1; ``o_k = 1/sqrt(n-k+1)`` are the cosines of the
    all-ones vector, :func:`ones_cosines`; the paper prints them as 1/sqrt(k+1), the same
    vector indexed from the other end, kept as the ``paper_printed`` profile)::

        preset    a_mu,k        b_mu,k          a_mu,r       b_mu,r    source
        full      1             o_k             sqrt(n)      0         Fig 15, eq 8
        moderate  o_k           o_k             sqrt(n)      0         Fig 14, A.8
        equator   0             o_k             sqrt(n)      0         A.7
        uniform   0             1/sqrt(n-k+1)   sqrt(n)      0         exact uniform moments
        gaussian  0             1/sqrt(n-k+1)   E chi(n)     std chi(n) N(0, I_n) moments

        every preset, sigma:  a_sigma,k = o_k, b_sigma,k = 0,
                              a_sigma,r = 0.6 sqrt(n - 0.5), b_sigma,r = sqrt(0.5)
                              (the authors' released code; the paper gives none)

    Gains default to ``gain_scale / sqrt(k+1)`` for every angle term (section 4.2) and to
    ``gain_scale`` for the radius terms.

    Args:
        latent_dim: ``n >= 2``.
        preset: a key of ``PRESETS``.
        backend: a key of ``LOSS_BACKENDS``: ``auto`` (default) runs the Triton kernels of
            :mod:`spherevae.kernels` on CUDA float32/half inputs where triton is installed
            and the torch implementation elsewhere; ``torch`` or ``triton`` force one.
        **overrides: any of ``{mu,sigma}_{angle,radius}_{mean,std}_{target,gain}``
            (angle values: a float, a ``(n-1,)`` tensor, or a name in ``ANGLE_TARGETS``;
            radius values: a float or a name in ``RADIUS_TARGETS``), ``gain_scale``, and the
            switches ``use_mu_terms``, ``use_sigma_terms``, ``use_radius_terms``.
    """

    def __init__(
        self, latent_dim: int, preset: str = "full", *, backend: str = "auto", **overrides: object
    ) -> None:
        super().__init__()
        if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim < 2:
            raise ValueError(f"latent_dim must be an int >= 2, got {latent_dim!r}")
        check_choice(preset, "preset", PRESETS)
        check_choice(backend, "backend", LOSS_BACKENDS)
        self.backend = backend
        for key in overrides:
            check_choice(key, "override", _OPTIONS)
        n = latent_dim
        options: dict[str, object] = {
            **PRESETS[preset],
            "gain_scale": 1.0,
            "use_mu_terms": True,
            "use_sigma_terms": True,
            "use_radius_terms": True,
            **overrides,
        }
        scale = options["gain_scale"]
        if (
            isinstance(scale, bool)
            or not isinstance(scale, (int, float))
            or not math.isfinite(scale)
            or scale < 0
        ):
            raise ValueError(f"gain_scale must be a finite number >= 0, got {scale!r}")
        for key in _SWITCHES:
            if not isinstance(options[key], bool):
                raise TypeError(f"{key} must be a bool, got {options[key]!r}")
        self.latent_dim = n
        self.preset = preset
        self.use_mu_terms = bool(options["use_mu_terms"])
        self.use_sigma_terms = bool(options["use_sigma_terms"])
        self.use_radius_terms = bool(options["use_radius_terms"])
        default_angle_gain = float(scale) / torch.sqrt(_k(n) + 1.0)
        for key in _TARGET_KEYS:
            gain_key = key.replace("_target", "_gain")
            gain = options.get(gain_key)
            if "_angle_" in key:
                target = _resolve_angle(options[key], key, n)
                gain_t = default_angle_gain if gain is None else _resolve_angle(gain, gain_key, n)
                low, high = (-1.0, 1.0) if "_mean_" in key else (0.0, 1.0)
            else:
                target = _resolve_radius(options[key], key, n)
                gain_t = (
                    torch.tensor(float(scale), dtype=torch.float64)
                    if gain is None
                    else _resolve_radius(gain, gain_key, n)
                )
                low, high = 0.0, math.inf
            _check_range(target, key, low, high)
            _check_range(gain_t, gain_key, 0.0)
            self.register_buffer(key, target.to(torch.get_default_dtype()))
            self.register_buffer(gain_key, gain_t.to(torch.get_default_dtype()))
        self._register_fused()

    def _register_fused(self) -> None:
        """Targets and gains of all enabled terms packed as ``(g, n)`` tensors (``g``
        groups among mu, sigma; columns: the n-1 angles, then the radius), so that
        :meth:`forward` is a handful of kernels instead of one sequence per term: on a
        GPU the per-kernel launch cost, not the arithmetic, is what a loss this small costs."""
        groups = [g for g, use in (("mu", self.use_mu_terms), ("sigma", self.use_sigma_terms)) if use]
        self._fused_groups = tuple(groups)
        for what in ("mean_target", "std_target", "mean_gain", "std_gain"):
            rows = []
            for g in groups:
                angle = getattr(self, f"{g}_angle_{what}").expand(self.latent_dim - 1)
                radius = getattr(self, f"{g}_radius_{what}").reshape(1)
                if not self.use_radius_terms and what.endswith("gain"):
                    radius = torch.zeros_like(radius)
                rows.append(torch.cat([angle, radius]))
            packed = torch.stack(rows) if rows else torch.zeros(0, self.latent_dim)
            self.register_buffer(f"_fused_{what}", packed, persistent=False)

    def _use_triton(self, stacked: torch.Tensor) -> bool:
        """The ``backend`` choice for this batch: ``auto`` takes the Triton kernels for
        float32 CUDA tensors when triton is installed, ``torch`` never, ``triton`` always
        (an error where it cannot run)."""
        if self.backend == "torch":
            return False
        from spherevae.kernels import MAX_TRITON_DIM, triton_available

        usable = stacked.dtype == torch.float32 and self.latent_dim <= MAX_TRITON_DIM
        if self.backend == "auto":
            return usable and stacked.is_cuda and triton_available(stacked.device)
        if not (usable and triton_available(stacked.device)):
            raise RuntimeError(
                f"backend='triton' needs triton and a CUDA device (or TRITON_INTERPRET=1 on "
                f"CPU), float32/half inputs and latent_dim <= {MAX_TRITON_DIM}; got "
                f"{stacked.dtype} on {stacked.device}, latent_dim {self.latent_dim}"
            )
        return True

    def extra_repr(self) -> str:
        return (
            f"backend={self.backend!r}, "
            f"latent_dim={self.latent_dim}, preset={self.preset!r}, use_mu_terms={self.use_mu_terms}, "
            f"use_sigma_terms={self.use_sigma_terms}, use_radius_terms={self.use_radius_terms}"
        )

    def batch_stats(
        self, mu: torch.Tensor, sigma: torch.Tensor, *, validate: bool = True
    ) -> LatentStats:
        """The statistics this loss needs (only the enabled groups are computed)."""
        return latent_batch_stats(
            mu,
            sigma,
            include_mu=self.use_mu_terms,
            include_sigma=self.use_sigma_terms,
            validate=validate,
        )

    def terms(
        self, mu: torch.Tensor, sigma: torch.Tensor, *, validate: bool = True
    ) -> dict[str, torch.Tensor]:
        """The enabled terms, each a scalar (keys ``{mu,sigma}_{angle,radius}_{mean,std}``)."""
        check_latents(mu, "mu", ndim=2, validate=False)
        if mu.shape[-1:] != (self.latent_dim,):
            raise ValueError(
                f"mu must have shape (batch, {self.latent_dim}), got {tuple(mu.shape)}"
            )
        return self.terms_from_stats(self.batch_stats(mu, sigma, validate=validate))

    def terms_from_stats(self, stats: LatentStats) -> dict[str, torch.Tensor]:
        """The terms from precomputed (e.g. merged across DDP ranks) batch statistics."""
        if any(m is not None for m in stats) and stats.count < 2:
            raise ValueError(f"the batch statistics need at least 2 samples, got {stats.count}")
        out: dict[str, torch.Tensor] = {}
        for group, cos_m, r_m, use in (
            ("mu", stats.mu_cos, stats.mu_radius, self.use_mu_terms),
            ("sigma", stats.sigma_cos, stats.sigma_radius, self.use_sigma_terms),
        ):
            if not use:
                continue
            if cos_m is None or r_m is None:
                raise ValueError(f"stats lacks the {group} moments that this loss uses")
            parts = [("angle", cos_m)] + ([("radius", r_m)] if self.use_radius_terms else [])
            for part, m in parts:
                prefix = f"{group}_{part}"
                dtype = m.mean.dtype
                a = getattr(self, f"{prefix}_mean_target").to(dtype)
                b = getattr(self, f"{prefix}_std_target").to(dtype)
                alpha = getattr(self, f"{prefix}_mean_gain").to(dtype)
                beta = getattr(self, f"{prefix}_std_gain").to(dtype)
                out[f"{prefix}_mean"] = (alpha * (m.mean - a).square()).sum()
                out[f"{prefix}_std"] = (beta * _std_square_error(m.var(), b)).sum()
        return out

    def from_stats(self, stats: LatentStats) -> torch.Tensor:
        """The loss from precomputed batch statistics (see the module doc on DDP)."""
        return _sum_terms(self.terms_from_stats(stats), stats)

    def forward(
        self, mu: torch.Tensor, sigma: torch.Tensor, *, validate: bool = True
    ) -> torch.Tensor:
        """The loss, a scalar. ``mu``, ``sigma``: ``(batch, n)``, ``batch >= 2``.

        Equal to ``sum(self.terms(mu, sigma).values())`` (tested, values and gradients),
        computed on the packed ``(g, batch, n)`` coordinates by one autograd node with an
        analytic backward (first derivatives only; differentiate ``terms`` for more).
        """
        check_latents(mu, "mu", ndim=2, validate=validate)
        if mu.shape[-1:] != (self.latent_dim,):
            raise ValueError(f"mu must have shape (batch, {self.latent_dim}), got {tuple(mu.shape)}")
        if mu.shape[0] < 2:
            raise ValueError(f"the batch statistics need at least 2 samples, got {mu.shape[0]}")
        if not self._fused_groups:
            return torch.zeros((), dtype=mu.dtype, device=mu.device)
        if self.use_sigma_terms:
            _check_sigma(sigma, validate=validate)
            check_same_shape(mu, sigma, "mu", "sigma")
        parts = [mu if g == "mu" else sigma for g in self._fused_groups]
        stacked = _compute_dtype(torch.stack(parts) if len(parts) > 1 else parts[0][None])
        dtype = stacked.dtype
        if self._use_triton(stacked):
            from spherevae.kernels import triton_prior_loss

            return triton_prior_loss(
                stacked,
                self._fused_mean_target,
                self._fused_std_target,
                self._fused_mean_gain,
                self._fused_std_gain,
            )
        loss = _FusedPriorLoss.apply(
            stacked,
            self._fused_mean_target.to(dtype),
            self._fused_std_target.to(dtype),
            self._fused_mean_gain.to(dtype),
            self._fused_std_gain.to(dtype),
        )
        return loss  # float32 for half-precision inputs (their batch variances need it)


def sum_terms(terms: Mapping[str, torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """Sum of a terms dict (0 of ``like``'s dtype when every term is switched off)."""
    total = torch.zeros((), dtype=like.dtype, device=like.device)
    for value in terms.values():
        total = total + value
    return total


def _sum_terms(terms: Mapping[str, torch.Tensor], stats: LatentStats) -> torch.Tensor:
    like = next((m.mean for m in stats if m is not None), torch.zeros(()))
    return sum_terms(terms, like)


# --------------------------------------------------------------------------------------
# The authors' released-code penalty (authors-code-facts.md)
# --------------------------------------------------------------------------------------

AUTHORS_SIGMA_ANGLE_WEIGHTS: dict[str, float] = {
    "mnist": 50_000.0,
    "fashion-mnist": 225_000.0,
    "cifar10": 500_000.0,
    "svhn": 500_000.0,
    "celeba64": 500_000.0,
}

# Where E_b[cos phi_k(mu)] is pulled: "full" compression to the pole, "half" to the
# all-ones profile (the same profile as the std targets, ``ones_profile``).
AUTHORS_COMPRESSION = ("full", "half")
# The authors' code writes sigma's radius target as c * sqrt(d - 0.5): c = 0.6 in the version
# released beside the training script, 1.0 in the repository's later loss_functions.py.
AUTHORS_SIGMA_RADIUS_FACTORS = (0.6, 1.0)
AUTHORS_TAIL_EPS = 1e-3  # their "+0.001" inside every tail norm (option ``tail_eps``)

_AUTHORS_EPS = 1e-4  # added to the batch variance before the sqrt
_AUTHORS_GROUP_WEIGHTS = {"mu_angle": 1000.0, "mu_radius": 300.0, "sigma_radius": 500.0}


def authors_penalty(s: torch.Tensor, b: float | torch.Tensor) -> torch.Tensor:
    """``P(s, b) = (s + 1 - b)^2 - log((s + 1 - b)^2) - 1``: 0 at ``s = b``, convex near it."""
    u = (s + 1.0 - b).square()
    return u - torch.log(u) - 1.0


def _authors_std(m: Moments) -> torch.Tensor:
    return torch.sqrt(m.var(unbiased=True) + _AUTHORS_EPS)


class AuthorsLatentLoss(nn.Module):
    """The latent penalty of the authors' released training code (not eqs 4-5).

    With ``G_k = 50 sqrt(d) / sqrt(k)``, ``s(v) = sqrt(Var_b[v] + 1e-4)`` (unbiased var),
    ``P`` from :func:`authors_penalty` and ``o_k`` the cosines of the all-ones vector
    (:func:`ones_cosines`, ``1/sqrt(d-k+1)``; ``ones_profile`` selects another profile for
    ablations)::

        mu_angles    = sum_k G_k P(s(cos_k mu), o_k) + 0.05 sum_k G_k (E_b cos_k mu - a_k)^2
        mu_radius    = 50 P(s(|mu|), 0) + 50 (E_b |mu| - sqrt(d - 0.5))^2
        sigma_angles = sum_k G_k P(s(cos_k sigma), 0) + 0.05 sum_k G_k (E_b cos_k sigma - o_k)^2
        sigma_radius = 50 ((s/b)^2 - log (s/b)^2 - 1) + 50 (E_b |sigma| - c sqrt(d - 0.5))^2,
                       s = s(|sigma|), b = sqrt(0.5)
        total = 1000 mu_angles + 300 mu_radius + W_sigma sigma_angles + 500 sigma_radius

    with ``a_k = 1`` (``compression="full"``) or ``a_k = o_k`` (``"half"``).

    Args:
        latent_dim: ``d >= 2``.
        sigma_angle_weight: ``W_sigma``, a number or a dataset name in
            ``AUTHORS_SIGMA_ANGLE_WEIGHTS`` (mnist 5e4, fashion-mnist 2.25e5, else 5e5).
        compression: ``"full"`` or ``"half"``.
        sigma_radius_factor: ``c``, 0.6 (released beside the training script, default) or
            1.0 (the repository's later loss_functions.py).
        tail_eps: added under the square root of every tail norm of the cosines,
            ``cos_k = x_k / sqrt(x_k^2 + ... + x_d^2 + tail_eps)``. Their code uses
            ``AUTHORS_TAIL_EPS = 1e-3``; the default 0 is the exact transform.
        ones_profile: a name in ``ANGLE_TARGETS`` for ``o_k`` (default ``"all_ones"``;
            ``"paper_printed"`` reproduces the reversed profile, for the ablation only).
    """

    def __init__(
        self,
        latent_dim: int,
        sigma_angle_weight: float | str = "cifar10",
        compression: str = "full",
        *,
        sigma_radius_factor: float = 0.6,
        tail_eps: float = 0.0,
        ones_profile: str = "all_ones",
    ) -> None:
        super().__init__()
        if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim < 2:
            raise ValueError(f"latent_dim must be an int >= 2, got {latent_dim!r}")
        if isinstance(sigma_angle_weight, str):
            check_choice(sigma_angle_weight, "sigma_angle_weight", AUTHORS_SIGMA_ANGLE_WEIGHTS)
            weight = AUTHORS_SIGMA_ANGLE_WEIGHTS[sigma_angle_weight]
        else:
            _check_gain(sigma_angle_weight, "sigma_angle_weight")
            weight = float(sigma_angle_weight)
        check_choice(compression, "compression", AUTHORS_COMPRESSION)
        check_choice(ones_profile, "ones_profile", ANGLE_TARGETS)
        for name, value in (("sigma_radius_factor", sigma_radius_factor), ("tail_eps", tail_eps)):
            _check_gain(value, name)
        d = latent_dim
        self.latent_dim = d
        self.sigma_angle_weight = weight
        self.compression = compression
        self.sigma_radius_factor = float(sigma_radius_factor)
        self.tail_eps = float(tail_eps)
        self.ones_profile = ones_profile
        dtype = torch.get_default_dtype()
        ones = ANGLE_TARGETS[ones_profile](d)
        a_mu = torch.ones_like(ones) if compression == "full" else ones
        self.register_buffer("gain", (50.0 * math.sqrt(d) / torch.sqrt(_k(d))).to(dtype))
        self.register_buffer("mu_angle_mean_target", a_mu.to(dtype))
        self.register_buffer("ones_target", ones.to(dtype))

    def extra_repr(self) -> str:
        return (
            f"latent_dim={self.latent_dim}, sigma_angle_weight={self.sigma_angle_weight}, "
            f"compression={self.compression!r}, sigma_radius_factor={self.sigma_radius_factor}, "
            f"tail_eps={self.tail_eps}, ones_profile={self.ones_profile!r}"
        )

    def terms(
        self, mu: torch.Tensor, sigma: torch.Tensor, *, validate: bool = True
    ) -> dict[str, torch.Tensor]:
        """Weighted terms (sum = the loss), keys ``{mu,sigma}_{angle,radius}_{mean,std}``."""
        check_latents(mu, "mu", ndim=2, validate=False)
        if mu.shape[-1:] != (self.latent_dim,):
            raise ValueError(
                f"mu must have shape (batch, {self.latent_dim}), got {tuple(mu.shape)}"
            )
        stats = latent_batch_stats(mu, sigma, validate=validate, tail_eps=self.tail_eps)
        return self.terms_from_stats(stats)

    def terms_from_stats(self, stats: LatentStats) -> dict[str, torch.Tensor]:
        """The terms from precomputed (e.g. merged across DDP ranks) batch statistics.

        The statistics must have been computed with this loss's ``tail_eps``.
        """
        if stats.count < 2:
            raise ValueError(f"the batch statistics need at least 2 samples, got {stats.count}")
        if any(m is None for m in stats):
            raise ValueError(
                "AuthorsLatentLoss needs the mu and sigma moments, got a partial LatentStats"
            )
        assert stats.mu_cos is not None and stats.mu_radius is not None
        assert stats.sigma_cos is not None and stats.sigma_radius is not None
        dtype = stats.mu_cos.mean.dtype
        g = self.gain.to(dtype)
        ones = self.ones_target.to(dtype)
        a_mu = self.mu_angle_mean_target.to(dtype)
        root = math.sqrt(self.latent_dim - 0.5)
        w = _AUTHORS_GROUP_WEIGHTS
        ratio_sq = _authors_std(stats.sigma_radius).square() / 0.5
        return {
            "mu_angle_mean": w["mu_angle"] * 0.05 * (g * (stats.mu_cos.mean - a_mu).square()).sum(),
            "mu_angle_std": w["mu_angle"]
            * (g * authors_penalty(_authors_std(stats.mu_cos), ones)).sum(),
            "mu_radius_mean": w["mu_radius"] * 50.0 * (stats.mu_radius.mean - root).square(),
            "mu_radius_std": w["mu_radius"]
            * 50.0
            * authors_penalty(_authors_std(stats.mu_radius), 0.0),
            "sigma_angle_mean": self.sigma_angle_weight
            * 0.05
            * (g * (stats.sigma_cos.mean - ones).square()).sum(),
            "sigma_angle_std": self.sigma_angle_weight
            * (g * authors_penalty(_authors_std(stats.sigma_cos), 0.0)).sum(),
            "sigma_radius_mean": w["sigma_radius"]
            * 50.0
            * (stats.sigma_radius.mean - self.sigma_radius_factor * root).square(),
            "sigma_radius_std": w["sigma_radius"] * 50.0 * (ratio_sq - torch.log(ratio_sq) - 1.0),
        }

    def from_stats(self, stats: LatentStats) -> torch.Tensor:
        """The loss from precomputed batch statistics."""
        return _sum_terms(self.terms_from_stats(stats), stats)

    def forward(
        self, mu: torch.Tensor, sigma: torch.Tensor, *, validate: bool = True
    ) -> torch.Tensor:
        """The penalty, a scalar. ``mu``, ``sigma``: ``(batch, d)``, ``batch >= 2``."""
        return sum_terms(self.terms(mu, sigma, validate=validate), mu)
