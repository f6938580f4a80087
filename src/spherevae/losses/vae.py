"""The beta-VAE loss (paper eqs 1-2): squared error summed over pixels and averaged over
the batch, plus beta times the Gaussian KL divergence to N(0, I).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from spherevae._utils.validation import (
    check_finite,
    check_floating,
    check_latents,
    check_same_shape,
)
from spherevae.losses.targets import (
    _check_gain,
)

__all__ = [
    "LossTerms",
    "gaussian_kld",
    "reconstruction_error",
    "vae_loss",
]


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


