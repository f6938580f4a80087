"""Distributions on latents and the sampler registry: von Mises-Fisher (and its mixture,
with the Bessel functions it needs), ESAG, Gaussian fits and mixtures; :data:`SAMPLERS`
fits any of them to latents, and saves a fitted one as safetensors.

Layer 3: imports :mod:`spherevae.geometry`, :mod:`spherevae.io` and :mod:`spherevae._utils`.
"""

from spherevae.distributions.bessel import bessel_ratio, log_bessel_iv
from spherevae.distributions.directions import (
    SampleShape,
    as_shape,
    check_sample_count,
    draw_components,
    kmeans_pp,
)
from spherevae.distributions.esag import ESAG, log_esag_m
from spherevae.distributions.gaussians import FittedGaussian, GaussianMixture, StandardNormal
from spherevae.distributions.samplers import (
    SAMPLERS,
    Sampler,
    SamplerSpec,
    SphereProjected,
    StatefulSampler,
    fit_sampler,
    load_sampler,
    sampler_from_state,
    sampler_made_from,
    sampler_to_state,
    save_sampler,
)
from spherevae.distributions.vmf import (
    VonMisesFisher,
    mean_resultant_length_to_concentration,
    unit_sphere,
    vmf_tangent_std,
)
from spherevae.distributions.vmf_mixture import VonMisesFisherMixture, banerjee_concentration

__all__ = [
    "ESAG",
    "SAMPLERS",
    "FittedGaussian",
    "GaussianMixture",
    "SampleShape",
    "Sampler",
    "SamplerSpec",
    "SphereProjected",
    "StandardNormal",
    "StatefulSampler",
    "VonMisesFisher",
    "VonMisesFisherMixture",
    "as_shape",
    "banerjee_concentration",
    "bessel_ratio",
    "check_sample_count",
    "draw_components",
    "fit_sampler",
    "kmeans_pp",
    "load_sampler",
    "log_bessel_iv",
    "log_esag_m",
    "mean_resultant_length_to_concentration",
    "sampler_from_state",
    "sampler_made_from",
    "sampler_to_state",
    "save_sampler",
    "unit_sphere",
    "vmf_tangent_std",
]
