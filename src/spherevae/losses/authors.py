"""The latent penalty of the authors' released training code (authors-code-facts.md).

Not eqs 4-5: a log-barrier on batch standard deviations with the authors' unbiased
variance, their gains and their radius targets. :mod:`spherevae.losses.prior` holds the
paper's loss; ``objective: authors`` trains with this one.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from spherevae._utils.validation import check_choice, check_mu
from spherevae.losses.stats import LatentStats, Moments, _sum_terms, latent_batch_stats, sum_terms
from spherevae.losses.targets import ANGLE_TARGETS, _check_gain, _k

__all__ = [
    "AUTHORS_COMPRESSION",
    "AUTHORS_SIGMA_ANGLE_WEIGHTS",
    "AUTHORS_SIGMA_RADIUS_FACTORS",
    "AUTHORS_TAIL_EPS",
    "AuthorsLatentLoss",
    "authors_penalty",
]


# Their sigma-angle gain W_sigma per dataset family (facts file); scikit-learn's digits,
# MNIST-like, take MNIST's. The authors objective picks the entry of data.name.
AUTHORS_SIGMA_ANGLE_WEIGHTS: dict[str, float] = {
    "mnist": 50_000.0,
    "digits": 50_000.0,
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

    # Buffers, declared for the type checker (register_buffer sets them).
    gain: torch.Tensor
    mu_angle_mean_target: torch.Tensor
    ones_target: torch.Tensor

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
        check_mu(mu, self.latent_dim, validate=False)
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
