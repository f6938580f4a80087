"""Losses: the beta-VAE loss (eqs 1-2), the hyperspherical prior loss (eqs 4-6) with its
batch statistics, target profiles and presets, the authors' released-code penalty, and
the same prior loss as Triton kernels for CUDA.

Layer 3: imports :mod:`spherevae.geometry` and :mod:`spherevae._utils`; torch, numpy,
scipy (triton optional, on CUDA).
"""

from spherevae.losses.authors import (
    AUTHORS_COMPRESSION,
    AUTHORS_SIGMA_ANGLE_WEIGHTS,
    AUTHORS_SIGMA_RADIUS_FACTORS,
    AUTHORS_TAIL_EPS,
    AuthorsLatentLoss,
    authors_penalty,
)
from spherevae.losses.kernels import MAX_TRITON_DIM, triton_available, triton_prior_loss
from spherevae.losses.prior import LOSS_BACKENDS, SIGMA_WEIGHTINGS, HypersphericalPriorLoss
from spherevae.losses.stats import (
    LatentStats,
    Moments,
    batch_stat_kld,
    biased_cosines,
    latent_batch_stats,
    merge_latent_stats,
    merge_moments,
    moments,
    sum_terms,
)
from spherevae.losses.targets import (
    ANGLE_TARGETS,
    PRESETS,
    RADIUS_TARGETS,
    chi_mean,
    chi_std,
    ones_cosines,
)
from spherevae.losses.vae import LossTerms, gaussian_kld, reconstruction_error, vae_loss

__all__ = [
    "ANGLE_TARGETS",
    "AUTHORS_COMPRESSION",
    "AUTHORS_SIGMA_ANGLE_WEIGHTS",
    "AUTHORS_SIGMA_RADIUS_FACTORS",
    "AUTHORS_TAIL_EPS",
    "LOSS_BACKENDS",
    "MAX_TRITON_DIM",
    "PRESETS",
    "RADIUS_TARGETS",
    "SIGMA_WEIGHTINGS",
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
    "triton_available",
    "triton_prior_loss",
    "vae_loss",
]
