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
  generalisation with a covariance, fitted by maximum likelihood (:mod:`spherevae.distributions.esag`).
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

The distributions live in :mod:`spherevae.distributions.gaussians`, :mod:`spherevae.distributions.vmf` and
:mod:`spherevae.distributions.esag` (re-exported here); this module holds the registry, the sphere
projection wrapper, serialisation and :func:`decode_samples`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from spherevae._utils.validation import check_choice, check_latents, check_positive
from spherevae.distributions.directions import _SCALAR, SampleShape
from spherevae.distributions.esag import ESAG
from spherevae.distributions.gaussians import FittedGaussian, GaussianMixture, StandardNormal
from spherevae.distributions.vmf import VonMisesFisher
from spherevae.distributions.vmf_mixture import VonMisesFisherMixture
from spherevae.geometry.coordinates import sphere_radius

__all__ = [
    "SAMPLERS",
    "Sampler",
    "SamplerSpec",
    "SphereProjected",
    "StatefulSampler",
    "fit_sampler",
    "load_sampler",
    "sampler_from_state",
    "sampler_made_from",
    "sampler_to_state",
    "save_sampler",
]


class Sampler(Protocol):
    """Anything ``fit_sampler`` returns: draws latents of shape ``(*sample_shape, n)``."""

    def sample(
        self, sample_shape: SampleShape = ..., generator: torch.Generator | None = None
    ) -> torch.Tensor: ...


class StatefulSampler(Sampler, Protocol):
    """A sampler class of :data:`_STATE_TYPES`: saved as plain tensors + JSON hparams."""

    def to_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]: ...

    @classmethod
    def from_state(cls, tensors: dict[str, torch.Tensor], hparams: dict[str, Any]) -> StatefulSampler: ...


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
    and CLI help; ``state_types``: the classes (with ``to_state``/``from_state``) that the
    built sampler is made of, which :func:`sampler_from_state` may rebuild from a file
    (none: the sampler is evaluated but not saved).
    """

    build: SamplerBuilder
    support: str
    fitted: bool
    summary: str
    state_types: tuple[type[StatefulSampler], ...] = ()


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
    "prior": SamplerSpec(_build_prior, "euclidean", False, "N(0, I_n), the standard VAE prior",
                         (StandardNormal,)),
    "prior_sphere": SamplerSpec(_build_prior_sphere, "sphere", False, "uniform on the sphere",
                                (StandardNormal,)),
    "vmf": SamplerSpec(_build_vmf, "sphere", True, "isotropic von Mises-Fisher, maximum likelihood",
                       (VonMisesFisher,)),
    "esag": SamplerSpec(_build_esag, "sphere", True,
                        "elliptically symmetric angular Gaussian (Paine et al. 2018), maximum likelihood",
                        (ESAG,)),
    "vmf_mixture": SamplerSpec(_build_vmf_mixture, "sphere", True,
                               "mixture of 10 vMFs, soft EM (Banerjee et al. 2005)",
                               (VonMisesFisherMixture,)),
    "gaussian_sphere": SamplerSpec(_build_gaussian_sphere, "sphere", True,
                                   "projected normal: full-covariance Gaussian projected to the sphere",
                                   (FittedGaussian,)),
    "gaussian": SamplerSpec(_build_gaussian, "euclidean", True, "full-covariance Gaussian",
                            (FittedGaussian,)),
    "gmm": SamplerSpec(_build_gmm, "euclidean", True, "mixture of 10 full-covariance Gaussians, EM",
                       (GaussianMixture,)),
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

def _state_types() -> dict[str, type[StatefulSampler]]:
    """Class name -> class, for every class a registered sampler declares
    (``SamplerSpec.state_types``): the only classes a sampler file may name."""
    return {cls.__name__: cls for spec in SAMPLERS.values() for cls in spec.state_types}


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
    known = _state_types()
    if known.get(name) is not type(sampler):
        raise TypeError(f"cannot serialise a {name}: not one of {sorted(known)} or SphereProjected")
    tensors, hparams = sampler.to_state()
    return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}, {"type": name, "hparams": hparams}


def sampler_from_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Sampler:
    """Inverse of :func:`sampler_to_state` (constructors validate the tensors)."""
    kind = meta.get("type")
    if kind == "SphereProjected":
        base = {k.removeprefix("base."): v for k, v in tensors.items() if k.startswith("base.")}
        return SphereProjected(sampler_from_state(base, meta["base"]), float(meta["radius"]))
    known = _state_types()
    check_choice(str(kind), "sampler state type", [*known, "SphereProjected"])
    return known[str(kind)].from_state(tensors, meta.get("hparams", {}))


def save_sampler(sampler: Any, path: str | Path, *, made_from: dict[str, Any] | None = None) -> Path:
    """Write a fitted sampler as safetensors: its tensors, and its class and
    hyper-parameters as JSON metadata (:func:`spherevae.distributions.samplers.sampler_to_state`).
    ``made_from``: the weights it was fitted for (``{"sha256", "epoch"}``), recorded so a
    sampler of other weights is never reused (:func:`sampler_made_from`)."""
    from safetensors.torch import save

    from spherevae.distributions.samplers import sampler_to_state
    from spherevae.io.files import atomic_write_bytes

    tensors, meta = sampler_to_state(sampler)
    metadata = {"sampler": json.dumps(meta)}
    if made_from is not None:
        metadata["made_from"] = json.dumps(made_from)
    blob = save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata)
    return atomic_write_bytes(path, blob)


def _read_sampler_file(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(metadata, tensors)`` of a sampler file; a damaged one is a :class:`UserError`."""
    from safetensors import SafetensorError, safe_open

    from spherevae.io.errors import UserError

    fix = "delete it: it is fitted again on first use (or by spherevae evaluate)"
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        if "sampler" not in meta:
            raise ValueError("it has no 'sampler' metadata")
        meta["sampler"] = json.loads(meta["sampler"])
        meta["made_from"] = json.loads(meta["made_from"]) if "made_from" in meta else None
        if not isinstance(meta["sampler"], dict):
            raise ValueError("its 'sampler' metadata is not a JSON object")
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"sampler file {path} is damaged or not a spherevae sampler ({exc}); {fix}") from None
    return meta, tensors


def sampler_made_from(path: str | Path) -> dict[str, Any] | None:
    """The ``made_from`` record of a sampler file (``None``: written before it was recorded)."""
    return _read_sampler_file(Path(path))[0]["made_from"]


def load_sampler(path: str | Path) -> Any:
    """A sampler written by :func:`save_sampler` (only registered sampler classes load).

    Raises:
        UserError: a truncated file, one lacking the metadata, or of an unknown class.
    """
    from spherevae.distributions.samplers import sampler_from_state
    from spherevae.io.errors import UserError

    meta, tensors = _read_sampler_file(Path(path))
    try:
        return sampler_from_state(tensors, meta["sampler"])
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"sampler file {path} does not describe a registered sampler ({exc}); "
                        "delete it: it is fitted again on first use") from None


