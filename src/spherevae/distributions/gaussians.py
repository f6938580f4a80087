"""Gaussian latent samplers in the Euclidean latent space: the standard prior, one
Gaussian fitted to latents, and a Gaussian mixture fitted by EM (float64, torch).

Each has the sampler surface of :mod:`spherevae.distributions.samplers`: ``sample(sample_shape,
generator=None) -> (*sample_shape, n)``, ``fit`` as a classmethod where it is fitted, and
``to_state() / from_state`` (plain tensors and a JSON-able dict).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from spherevae._utils.validation import check_choice, check_latents
from spherevae.distributions.directions import (
    _SCALAR,
    SampleShape,
    as_shape,
    draw_components,
    kmeans_pp,
)

__all__ = [
    "FittedGaussian",
    "GaussianMixture",
    "StandardNormal",
]


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


class StandardNormal:
    """The standard VAE prior ``N(0, I_n)``; ``sample`` gives ``(*sample_shape, n)``."""

    def __init__(self, dim: int, *, dtype: torch.dtype = torch.float32) -> None:
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.dim = dim
        self.dtype = dtype

    def sample(
        self, sample_shape: SampleShape = _SCALAR, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        shape = as_shape(sample_shape)
        return torch.randn(*shape, self.dim, dtype=self.dtype, generator=generator)

    @property
    def mean(self) -> torch.Tensor:
        return torch.zeros(self.dim, dtype=self.dtype)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Log-density of ``value`` ``(..., n)`` under ``N(0, I_n)``."""
        return -0.5 * (value.pow(2).sum(-1) + self.dim * math.log(2 * math.pi))

    def to_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return {}, {"dim": self.dim, "dtype": _dtype_name(self.dtype)}

    @classmethod
    def from_state(cls, tensors: dict[str, torch.Tensor], hparams: dict[str, Any]) -> StandardNormal:
        del tensors
        return cls(int(hparams["dim"]), dtype=getattr(torch, hparams["dtype"]))


def _scale_factor(cov: torch.Tensor) -> torch.Tensor:
    """Lower Cholesky factor of ``cov`` (``(..., n, n)`` float64), adding jitter if singular."""
    n = cov.shape[-1]
    eye = torch.eye(n, dtype=cov.dtype, device=cov.device)
    scale = cov.diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(1e-300)[..., None, None]
    jitter = 0.0
    for _ in range(12):
        factor, info = torch.linalg.cholesky_ex(cov + jitter * scale * eye)
        if bool((info == 0).all()):
            return factor
        jitter = 1e-12 if jitter == 0.0 else jitter * 10.0
    raise ValueError("covariance is not positive semi-definite (Cholesky failed with jitter)")


class FittedGaussian:
    """Gaussian with the sample mean and full covariance of latents ``z``.

    Attributes: ``mean`` ``(n,)``, ``covariance`` ``(n, n)`` (unbiased), ``scale_tril``
    (its Cholesky factor, float64).
    """

    def __init__(self, mean: torch.Tensor, covariance: torch.Tensor) -> None:
        check_latents(mean, "mean", min_dim=1, ndim=1)
        n = mean.shape[0]
        if tuple(covariance.shape) != (n, n):
            raise ValueError(f"covariance must have shape ({n}, {n}) to match mean, got {tuple(covariance.shape)}")
        self.mean = mean
        self.covariance = covariance
        self.scale_tril = _scale_factor(covariance.to(torch.float64))

    @classmethod
    def fit(cls, z: torch.Tensor, *, validate: bool = True) -> FittedGaussian:
        """Fit to ``z`` of shape ``(N, n)``, ``N >= 2``; outputs have ``z``'s dtype."""
        check_latents(z, "z", min_dim=1, ndim=2, validate=validate)
        if z.shape[0] < 2:
            raise ValueError(f"z must hold at least 2 rows to fit a covariance, got {z.shape[0]}")
        z64 = z.detach().to(torch.float64)
        mean = z64.mean(0)
        centred = z64 - mean
        cov = centred.T @ centred / (z.shape[0] - 1)
        return cls(mean.to(z.dtype), cov.to(z.dtype))

    def sample(
        self, sample_shape: SampleShape = _SCALAR, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        shape = as_shape(sample_shape)
        n = self.mean.shape[-1]
        eps = torch.randn(shape.numel(), n, dtype=torch.float64, generator=generator)
        x = self.mean.to(torch.float64) + eps @ self.scale_tril.T
        return x.reshape(*shape, n).to(self.mean.dtype)

    def to_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return {"mean": self.mean.clone(), "covariance": self.covariance.clone()}, {}

    @classmethod
    def from_state(cls, tensors: dict[str, torch.Tensor], hparams: dict[str, Any]) -> FittedGaussian:
        del hparams
        return cls(tensors["mean"], tensors["covariance"])


# ---------------------------------------------------------------------------------------
# Gaussian mixture (EM in torch)
# ---------------------------------------------------------------------------------------


def _component_log_density(
    z: torch.Tensor, means: torch.Tensor, covs: torch.Tensor, diagonal: bool
) -> torch.Tensor:
    """``log N(z_i | mean_k, cov_k)`` as ``(N, K)``; ``covs`` is ``(K, n)`` if ``diagonal``."""
    n = z.shape[1]
    if diagonal:
        diff = z.unsqueeze(1) - means.unsqueeze(0)  # (N, K, n)
        maha = (diff * diff / covs).sum(-1)
        logdet = torch.log(covs).sum(-1)
    else:
        chol = torch.linalg.cholesky(covs)  # (K, n, n)
        # One component at a time keeps memory at O(N n), not O(N K n).
        maha = torch.stack(
            [
                torch.linalg.solve_triangular(chol[k], (z - means[k]).T, upper=False).pow(2).sum(0)
                for k in range(means.shape[0])
            ],
            dim=1,
        )
        logdet = 2.0 * torch.log(chol.diagonal(dim1=-2, dim2=-1)).sum(-1)
    return -0.5 * (n * math.log(2 * math.pi) + logdet + maha)


class GaussianMixture:
    """Gaussian mixture fitted by EM (float64, torch), seeded by k-means++.

    Own EM rather than scikit-learn's so it takes a ``torch.Generator``/seed, runs on
    any torch device and keeps sampling free of the optional sklearn dependency; the
    tests check it against sklearn's ``GaussianMixture``.

    Attributes: ``weights`` ``(K,)``, ``means`` ``(K, n)``, ``covariances`` ``(K, n, n)``
    (full) or ``(K, n)`` (diagonal), ``log_likelihood`` (mean per sample, last EM step),
    ``n_iter``.
    """

    COVARIANCE_TYPES = ("full", "diag")

    def __init__(
        self, weights: torch.Tensor, means: torch.Tensor, covariances: torch.Tensor, covariance_type: str
    ) -> None:
        check_choice(covariance_type, "covariance_type", self.COVARIANCE_TYPES)
        self.weights, self.means, self.covariances = weights, means, covariances
        self.covariance_type = covariance_type
        self.log_likelihood = float("nan")
        self.n_iter = 0

    @property
    def _diagonal(self) -> bool:
        return self.covariance_type == "diag"

    @classmethod
    def fit(
        cls,
        z: torch.Tensor,
        n_components: int = 10,
        *,
        covariance_type: str = "full",
        max_iter: int = 100,
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        seed: int = 0,
        validate: bool = True,
    ) -> GaussianMixture:
        """EM on ``z`` ``(N, n)`` until the mean log-likelihood gains less than ``tol``
        (sklearn's defaults: ``tol = 1e-3``, ``max_iter = 100``, ``reg_covar = 1e-6``).

        ``reg_covar`` is added to every variance (as in sklearn) so that components
        collapsing onto few points stay invertible.
        """
        check_latents(z, "z", min_dim=1, ndim=2, validate=validate)
        check_choice(covariance_type, "covariance_type", cls.COVARIANCE_TYPES)
        if not 1 <= n_components <= z.shape[0]:
            raise ValueError(f"n_components must be in [1, N={z.shape[0]}], got {n_components}")
        diagonal = covariance_type == "diag"
        x = z.detach().to(torch.float64)
        num, n = x.shape
        generator = torch.Generator(device=x.device).manual_seed(seed)
        means = kmeans_pp(x, n_components, generator)
        # Hard assignment to the nearest seed starts the M-step.
        resp = torch.nn.functional.one_hot(torch.cdist(x, means).argmin(1), n_components).to(x.dtype)
        previous = -math.inf
        eye = torch.eye(n, dtype=x.dtype, device=x.device)
        n_iter = 0
        for n_iter in range(1, max_iter + 1):  # noqa: B007 (reported after the loop)
            counts = resp.sum(0) + 10 * torch.finfo(x.dtype).eps
            weights = counts / num
            means = resp.T @ x / counts[:, None]
            if diagonal:
                covs = (resp.T @ (x * x)) / counts[:, None] - means * means
                covs = covs.clamp_min(0.0) + reg_covar
            else:
                covs = torch.stack(
                    [
                        ((x - means[k]) * resp[:, k : k + 1]).T @ (x - means[k]) / counts[k]
                        for k in range(n_components)
                    ]
                )
                covs = covs + reg_covar * eye
            joint = _component_log_density(x, means, covs, diagonal) + torch.log(weights)
            log_norm = torch.logsumexp(joint, dim=1, keepdim=True)
            resp = torch.exp(joint - log_norm)
            current = float(log_norm.mean())
            if abs(current - previous) < tol:
                break
            previous = current
        model = cls(weights.to(z.dtype), means.to(z.dtype), covs.to(z.dtype), covariance_type)
        model.log_likelihood, model.n_iter = current, n_iter
        return model

    @property
    def mean(self) -> torch.Tensor:
        """``sum_k w_k mean_k``, shape ``(n,)``."""
        return self.weights @ self.means

    def to_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors = {"weights": self.weights.clone(), "means": self.means.clone(),
                   "covariances": self.covariances.clone()}
        return tensors, {"covariance_type": self.covariance_type}

    @classmethod
    def from_state(cls, tensors: dict[str, torch.Tensor], hparams: dict[str, Any]) -> GaussianMixture:
        return cls(tensors["weights"], tensors["means"], tensors["covariances"], hparams["covariance_type"])

    def score(self, z: torch.Tensor) -> float:
        """Mean log-likelihood of rows of ``z`` ``(N, n)`` under the mixture."""
        x = z.detach().to(torch.float64)
        joint = _component_log_density(
            x, self.means.to(torch.float64), self.covariances.to(torch.float64), self._diagonal
        ) + torch.log(self.weights.to(torch.float64))
        return float(torch.logsumexp(joint, dim=1).mean())

    def sample(
        self, sample_shape: SampleShape = _SCALAR, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        shape = as_shape(sample_shape)
        num, n = shape.numel(), self.means.shape[1]
        comp = draw_components(self.weights.to(torch.float64), num, generator)
        eps = torch.randn(num, n, dtype=torch.float64, generator=generator)
        means = self.means.to(torch.float64)[comp]
        covs = self.covariances.to(torch.float64)
        if self._diagonal:
            x = means + eps * torch.sqrt(covs)[comp]
        else:
            chol = _scale_factor(covs)
            x = means.clone()
            # Per component, so no (num, n, n) gather of Cholesky factors is formed.
            for k in range(chol.shape[0]):
                rows = comp == k
                x[rows] += eps[rows] @ chol[k].T
        return x.reshape(*shape, n).to(self.means.dtype)
