"""Latent samplers for generation: priors and fits to latents, in one registry.

Which sampler reproduces which claim of the paper (section 4.4, A.8). The paper samples
the compressed model from "a von Mises-Fisher distribution with the same mean and
covariance as the test latents"; a vMF has no covariance, so the faithful readings are
offered side by side (docs/design.md, "Samplers"):

- ``"prior"``: N(0, I_n), the standard VAE prior ("sampling from the prior", Fig 1a left).
- ``"prior_sphere"``: uniform on the sphere of radius ``sqrt(n)`` (the compressed model's
  prior support).
- ``"vmf"``: a von Mises-Fisher fitted by maximum likelihood to the latents with each row
  normalised. A vMF has only a mean *direction* and a scalar concentration, so it matches
  the direction of the latents' mean and their mean resultant length
  ``R = |mean(z_i / |z_i|)|`` (through ``A_n(kappa) = R``), *not* their covariance. This is
  the distribution the paper names for Fig 1a (right).
- ``"esag"``: the elliptically symmetric angular Gaussian (Paine et al. 2018), the vMF's
  generalisation with a covariance, fitted by maximum likelihood (:mod:`spherevae.esag`).
- ``"vmf_mixture"``: a mixture of 10 vMFs fitted by soft EM (Banerjee et al. 2005).
- ``"gaussian_sphere"``: a Gaussian with the latents' mean and full covariance, projected
  to the sphere of the model's radius (a projected normal). This is the sampler "with the
  same mean and covariance as the ones empirically calculated from the latent embedding"
  of section 4.4 (up to the projection, which the compressed model's latents also undergo).
- ``"gaussian"``: the same Gaussian without the projection.
- ``"gmm"``: a Gaussian mixture fitted by EM (our own, in torch), a stronger baseline.

Every fitted sampler is a small distribution object: a validated constructor, a ``fit``
classmethod (``Cls.fit(z, ...) -> Cls``), ``sample(sample_shape, generator=None)``,
``log_prob`` where the density has a closed form, ``mean`` where it has one, and
``to_state() -> (tensors, hparams)`` / ``from_state`` (plain tensors and a JSON-able dict,
no pickle); :func:`sampler_to_state` / :func:`sampler_from_state` do the same for any
sampler of the registry, wrappers included.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from spherevae._validation import check_choice, check_latents, check_positive
from spherevae.bessel import bessel_ratio, log_bessel_iv
from spherevae.coordinates import sphere_radius
from spherevae.directions import _SCALAR, SampleShape, as_shape, kmeans_pp
from spherevae.esag import ESAG
from spherevae.vmf import (
    VonMisesFisher,
    VonMisesFisherMixture,
    mean_resultant_length_to_concentration,
)

__all__ = [
    "ESAG",
    "SAMPLERS",
    "FittedGaussian",
    "GaussianMixture",
    "Sampler",
    "SamplerSpec",
    "SphereProjected",
    "StandardNormal",
    "VonMisesFisher",
    "VonMisesFisherMixture",
    "bessel_ratio",
    "decode_samples",
    "fit_sampler",
    "log_bessel_iv",
    "mean_resultant_length_to_concentration",
    "sampler_from_state",
    "sampler_to_state",
]


class Sampler(Protocol):
    """Anything ``fit_sampler`` returns: draws latents of shape ``(*sample_shape, n)``."""

    def sample(
        self, sample_shape: SampleShape = ..., generator: torch.Generator | None = None
    ) -> torch.Tensor: ...



# ---------------------------------------------------------------------------------------
# Priors and Gaussian fits
# ---------------------------------------------------------------------------------------


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


class SphereProjected:
    """Samples of ``base`` projected radially onto the sphere of radius ``radius``.

    ``SphereProjected(StandardNormal(n), sqrt(n))`` is uniform on that sphere; a vMF's
    unit samples are simply scaled.
    """

    def __init__(self, base: Sampler, radius: float) -> None:
        self.base = base
        self.radius = check_positive(radius, "radius")

    def sample(
        self, sample_shape: SampleShape = _SCALAR, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        x = self.base.sample(sample_shape, generator=generator)
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
        # A zero draw has no direction; it has probability 0 for these bases.
        return self.radius * x / norm.clamp_min(torch.finfo(x.dtype).tiny)


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
        comp = torch.multinomial(self.weights.to(torch.float64), num, replacement=True, generator=generator)
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


# ---------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------

SamplerBuilder = Callable[[torch.Tensor, float, int], Sampler]


@dataclass(frozen=True)
class SamplerSpec:
    """One entry of :data:`SAMPLERS`.

    ``build(z, radius, seed)`` fits the sampler to latents ``z`` ``(N, n)``; ``support`` is
    ``"sphere"`` when its draws lie on the sphere of radius ``radius`` and ``"euclidean"``
    otherwise; ``fitted`` is False for the fixed priors; ``summary`` is one line for docs
    and CLI help.
    """

    build: SamplerBuilder
    support: str
    fitted: bool
    summary: str


def _build_prior(z: torch.Tensor, radius: float, seed: int) -> Sampler:
    return StandardNormal(z.shape[1], dtype=z.dtype)


def _build_prior_sphere(z: torch.Tensor, radius: float, seed: int) -> Sampler:
    return SphereProjected(StandardNormal(z.shape[1], dtype=z.dtype), radius)


def _build_vmf(z: torch.Tensor, radius: float, seed: int) -> Sampler:
    return SphereProjected(VonMisesFisher.fit(z), radius)


def _build_esag(z: torch.Tensor, radius: float, seed: int) -> Sampler:
    return SphereProjected(ESAG.fit(z), radius)


def _build_vmf_mixture(z: torch.Tensor, radius: float, seed: int) -> Sampler:
    return SphereProjected(VonMisesFisherMixture.fit(z, min(10, z.shape[0]), seed=seed), radius)


def _build_gaussian(z: torch.Tensor, radius: float, seed: int) -> Sampler:
    return FittedGaussian.fit(z)


def _build_gaussian_sphere(z: torch.Tensor, radius: float, seed: int) -> Sampler:
    return SphereProjected(FittedGaussian.fit(z), radius)


def _build_gmm(z: torch.Tensor, radius: float, seed: int) -> Sampler:
    return GaussianMixture.fit(z, n_components=min(10, z.shape[0]), seed=seed)


SAMPLERS: dict[str, SamplerSpec] = {
    "prior": SamplerSpec(_build_prior, "euclidean", False, "N(0, I_n), the standard VAE prior"),
    "prior_sphere": SamplerSpec(_build_prior_sphere, "sphere", False, "uniform on the sphere"),
    "vmf": SamplerSpec(_build_vmf, "sphere", True, "isotropic von Mises-Fisher, maximum likelihood"),
    "esag": SamplerSpec(_build_esag, "sphere", True,
                        "elliptically symmetric angular Gaussian (Paine et al. 2018), maximum likelihood"),
    "vmf_mixture": SamplerSpec(_build_vmf_mixture, "sphere", True,
                               "mixture of 10 vMFs, soft EM (Banerjee et al. 2005)"),
    "gaussian_sphere": SamplerSpec(_build_gaussian_sphere, "sphere", True,
                                   "projected normal: full-covariance Gaussian projected to the sphere"),
    "gaussian": SamplerSpec(_build_gaussian, "euclidean", True, "full-covariance Gaussian"),
    "gmm": SamplerSpec(_build_gmm, "euclidean", True, "mixture of 10 full-covariance Gaussians, EM"),
}


def fit_sampler(name: str, z: torch.Tensor, *, radius: float | None = None, seed: int = 0) -> Sampler:
    """Fit the sampler ``name`` (a key of ``SAMPLERS``) to latents ``z`` ``(N, n)``.

    Args:
        radius: sphere radius of the samplers whose ``support`` is ``"sphere"``;
            ``None`` means the model's ``sqrt(n)``. Ignored by the others.
        seed: seeds fitting randomness (the mixtures' initialisation).

    Returns:
        An object with ``sample(num_or_shape, generator=None) -> (*shape, n)``.
    """
    check_choice(name, "name", SAMPLERS)
    check_latents(z, "z", ndim=2)
    radius = sphere_radius(z.shape[1]) if radius is None else check_positive(radius, "radius")
    return SAMPLERS[name].build(z, radius, seed)


# ---------------------------------------------------------------------------------------
# Serialisation: plain tensors + a JSON-able dict, no pickle
# ---------------------------------------------------------------------------------------

_STATE_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (StandardNormal, FittedGaussian, GaussianMixture, VonMisesFisher, VonMisesFisherMixture, ESAG)
}


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def sampler_to_state(sampler: Sampler) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(tensors, meta)`` for a sampler built by :func:`fit_sampler`.

    ``tensors`` is a flat ``dict[str, Tensor]`` (safetensors-friendly); ``meta`` is
    JSON-able: ``{"type": class name, "hparams": {...}}`` and, for a
    :class:`SphereProjected`, ``{"type": "SphereProjected", "radius": r, "base": meta}``
    with the base's tensors under ``"base."``.
    """
    if isinstance(sampler, SphereProjected):
        tensors, meta = sampler_to_state(sampler.base)
        return {f"base.{k}": v for k, v in tensors.items()}, {
            "type": "SphereProjected", "radius": sampler.radius, "base": meta}
    name = type(sampler).__name__
    if _STATE_TYPES.get(name) is not type(sampler):
        raise TypeError(f"cannot serialise a {name}: not one of {sorted(_STATE_TYPES)} or SphereProjected")
    tensors, hparams = sampler.to_state()
    return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}, {"type": name, "hparams": hparams}


def sampler_from_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Sampler:
    """Inverse of :func:`sampler_to_state` (constructors validate the tensors)."""
    kind = meta.get("type")
    if kind == "SphereProjected":
        base = {k.removeprefix("base."): v for k, v in tensors.items() if k.startswith("base.")}
        return SphereProjected(sampler_from_state(base, meta["base"]), float(meta["radius"]))
    check_choice(str(kind), "sampler state type", [*_STATE_TYPES, "SphereProjected"])
    return _STATE_TYPES[kind].from_state(tensors, meta.get("hparams", {}))

def decode_samples(model: nn.Module, z: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Decode latents ``z`` ``(N, n)`` with ``model.decode`` in batches, without gradients.

    The model is put in eval mode for the call (batch-norm and dropout layers must not
    use batch statistics of random latents) and restored afterwards. ``z`` is moved to
    the model's device; the images come back on it, concatenated along dim 0.
    """
    if not callable(getattr(model, "decode", None)):
        raise TypeError(f"model must have a decode(z) method, got {type(model).__name__}")
    check_latents(z, "z", min_dim=1, ndim=2)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    param = next(model.parameters(), None)
    device = param.device if param is not None else z.device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            parts = [model.decode(chunk.to(device)) for chunk in z.split(batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(parts, 0)
