"""A mixture of von Mises-Fisher distributions fitted by soft EM (Banerjee et al. 2005),
on the unit sphere; the ``vmf_mixture`` sampler.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from spherevae._utils.validation import check_finite, check_floating, check_latents, check_positive
from spherevae.distributions.bessel import bessel_ratio
from spherevae.distributions.directions import (
    _SCALAR,
    SampleShape,
    as_shape,
    draw_components,
    kmeans_pp,
)
from spherevae.distributions.vmf import VonMisesFisher, _log_vmf_normalizer
from spherevae.geometry.sphere import unit_directions

__all__ = [
    "VonMisesFisherMixture",
    "banerjee_concentration",
]


def banerjee_concentration(r: torch.Tensor, n: int, max_concentration: float) -> torch.Tensor:
    """Banerjee et al.'s (2005) approximation ``kappa = r (n - r^2) / (1 - r^2)``, capped.

    ``r`` (mean resultant lengths) is clipped to ``[0, 1 - 1e-15]``; a component whose
    points all coincide (``r = 1``) gets ``max_concentration``.
    """
    r = r.clamp(0.0, 1.0 - 1e-15)
    return (r * (n - r * r) / (1.0 - r * r)).clamp_max(max_concentration)


def _mixture_joint(x: torch.Tensor, log_weights: torch.Tensor, means: torch.Tensor,
                   kappa: torch.Tensor) -> torch.Tensor:
    """``log w_k + log C_n(kappa_k) + kappa_k mu_k . x_i`` as ``(N, K)`` (float64)."""
    return log_weights + _log_vmf_normalizer(x.shape[1], kappa) + (x @ means.T) * kappa


class VonMisesFisherMixture:
    """Mixture of ``K`` vMFs on the unit sphere ``S^{n-1}``: ``sum_k w_k vMF(mu_k, kappa_k)``.

    Args:
        weights: ``(K,)`` non-negative, summing to 1. means: ``(K, n)`` unit vectors
            (normalised here). concentrations: ``(K,)`` finite, ``>= 0``.

    Parameters are kept in float64; ``dtype`` is the dtype of samples and densities.
    """

    def __init__(self, weights: torch.Tensor, means: torch.Tensor, concentrations: torch.Tensor,
                 *, dtype: torch.dtype = torch.float32) -> None:
        check_latents(means, "means", ndim=2)
        k = means.shape[0]
        for name, t in (("weights", weights), ("concentrations", concentrations)):
            check_finite(check_floating(t, name), name)
            if t.shape != (k,):
                raise ValueError(f"{name} must have shape ({k},) to match means, got {tuple(t.shape)}")
        if bool((weights < 0).any()) or abs(float(weights.sum()) - 1.0) > 1e-6:
            raise ValueError(f"weights must be >= 0 and sum to 1, got sum {float(weights.sum())}")
        if bool((concentrations < 0).any()):
            raise ValueError("concentrations must be >= 0")
        norms = torch.linalg.vector_norm(means.to(torch.float64), dim=-1, keepdim=True)
        if bool((norms == 0).any()):
            raise ValueError("means must be non-zero (they are normalised to unit directions)")
        self.weights = weights.to(torch.float64)
        # Unit rows are kept bit for bit, so that to_state/from_state round-trips exactly.
        unit_rows = bool(((norms - 1.0).abs() <= 1e-12).all())
        self.means = means.to(torch.float64) if unit_rows else means.to(torch.float64) / norms
        self.concentrations = concentrations.to(torch.float64)
        self.dtype = dtype
        self.log_likelihood = float("nan")
        self.n_iter = 0

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def mean(self) -> torch.Tensor:
        """``E[x] = sum_k w_k A_n(kappa_k) mu_k``, shape ``(n,)``."""
        a = bessel_ratio(self.dim / 2.0 - 1.0, self.concentrations)
        return ((self.weights * a) @ self.means).to(self.dtype)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Log-density (surface measure) of unit vectors ``value`` ``(..., n)`` -> ``(...)``."""
        x = value.to(torch.float64).reshape(-1, self.dim)
        joint = _mixture_joint(x, torch.log(self.weights), self.means, self.concentrations)
        return torch.logsumexp(joint, dim=1).reshape(value.shape[:-1]).to(value.dtype)

    def sample(self, sample_shape: SampleShape = _SCALAR,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Unit vectors ``(*sample_shape, n)``: a component by weight, then its vMF."""
        shape = as_shape(sample_shape)
        num = shape.numel()
        comp = draw_components(self.weights, num, generator)
        x = VonMisesFisher(self.means[comp], self.concentrations[comp], validate_args=False).sample(
            (), generator=generator
        )
        return x.reshape(*shape, self.dim).to(self.dtype)

    @classmethod
    def fit(cls, z: torch.Tensor, n_components: int = 10, *, max_iter: int = 100, tol: float = 1e-6,
            seed: int = 0, init: torch.Tensor | None = None, max_concentration: float = 1e6,
            validate: bool = True) -> VonMisesFisherMixture:
        """Soft EM ("soft-moVMF", Banerjee et al. 2005) on the directions of ``z`` ``(N, n)``.

        Seeds: ``init`` ``(K, n)`` if given, else k-means++ on the unit rows with a
        generator seeded by ``seed``; each row starts fully assigned to its nearest seed.
        Each iteration: M-step (``w_k`` = mean responsibility, ``mu_k`` = direction of
        the responsibility-weighted sum, ``kappa_k`` by :func:`banerjee_concentration`),
        then E-step (responsibilities by log-sum-exp). Stops when the mean log-likelihood
        per row changes by less than ``tol`` (relative to ``max(1, |ll|)``) or after
        ``max_iter`` iterations. A component that loses every row keeps its direction
        and gets weight 0.
        """
        x = unit_directions(z, "z", validate=validate)
        num, n = x.shape
        if not 1 <= n_components <= num:
            raise ValueError(f"n_components must be in [1, N={num}], got {n_components}")
        check_positive(max_concentration, "max_concentration")
        if init is None:
            means = kmeans_pp(x, n_components, torch.Generator(device=x.device).manual_seed(seed))
        else:
            if tuple(init.shape) != (n_components, n):
                raise ValueError(f"init must have shape ({n_components}, {n}), got {tuple(init.shape)}")
            means = unit_directions(init, "init")
        resp = torch.nn.functional.one_hot((x @ means.T).argmax(1), n_components).to(x.dtype)
        previous, current, n_iter = -math.inf, math.nan, 0
        for n_iter in range(1, max_iter + 1):  # noqa: B007 (reported after the loop)
            weights, means, kappa = _m_step(x, resp, means, max_concentration)
            joint = _mixture_joint(x, torch.log(weights), means, kappa)
            log_norm = torch.logsumexp(joint, dim=1, keepdim=True)
            resp = torch.exp(joint - log_norm)
            current = float(log_norm.mean())
            if abs(current - previous) < tol * max(1.0, abs(current)):
                break
            previous = current
        model = cls(weights, means, kappa, dtype=z.dtype)
        model.log_likelihood, model.n_iter = current, n_iter
        return model

    def to_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """``(tensors, hyper-parameters)``: plain tensors and a JSON-able dict (no pickle)."""
        tensors = {"weights": self.weights.clone(), "means": self.means.clone(),
                   "concentrations": self.concentrations.clone()}
        return tensors, {"dtype": str(self.dtype).removeprefix("torch.")}

    @classmethod
    def from_state(cls, tensors: dict[str, torch.Tensor], hparams: dict[str, Any]) -> VonMisesFisherMixture:
        """Inverse of :meth:`to_state`."""
        return cls(tensors["weights"], tensors["means"], tensors["concentrations"],
                   dtype=getattr(torch, hparams.get("dtype", "float32")))


def _m_step(x: torch.Tensor, resp: torch.Tensor, previous_means: torch.Tensor,
            max_concentration: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """M-step of soft-moVMF: ``(weights (K,), means (K, n), kappa (K,))`` from ``resp`` ``(N, K)``."""
    counts = resp.sum(0)
    resultant = resp.T @ x  # (K, n)
    length = torch.linalg.vector_norm(resultant, dim=1)
    empty = length <= 0
    means = torch.where(empty[:, None], previous_means,
                        resultant / torch.where(empty, torch.ones_like(length), length)[:, None])
    r = length / counts.clamp_min(torch.finfo(x.dtype).tiny)
    kappa = banerjee_concentration(r, x.shape[1], max_concentration)
    return counts / x.shape[0], means, kappa


