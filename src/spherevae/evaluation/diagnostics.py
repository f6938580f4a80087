"""Per-run diagnostics on encoded data: reconstruction error (MSE and RMSE %), posterior
collapse (A.6-A.7: histogram and KL criteria) and the posterior sigma per dimension.
"""

from __future__ import annotations

from typing import Any

import torch

from spherevae._utils.validation import check_same_shape

__all__ = [
    "collapse_stats",
    "posterior_sigma_summary",
    "reconstruction_metrics",
]


def reconstruction_metrics(x: torch.Tensor, x_hat: torch.Tensor) -> dict[str, float]:
    """``mse_sum``: squared error summed over pixels, mean over images (the loss's scale);
    ``rmse_percent``: 100*sqrt(mean squared error per pixel), images in [0, 1] (the
    scale of the paper's reported "MSE", see docs/objectives.md)."""
    check_same_shape(x, x_hat, "x", "x_hat")
    se = (x.double() - x_hat.double()).pow(2)
    return {
        "mse_sum": float(se.flatten(1).sum(1).mean()),
        "rmse_percent": float(100.0 * se.mean().sqrt()),
    }


def collapse_stats(
    mu: torch.Tensor,
    *,
    threshold: float = 0.05,
    logvar: torch.Tensor | None = None,
    kl_threshold: float = 0.01,
) -> dict[str, Any]:
    """Posterior collapse (A.6-A.7), three ways.

    ``mu`` (N, n): encoder means over a data set. Per-dimension std of ``mu`` and the
    number of dimensions under ``threshold`` times the *mean* std, in Cartesian
    coordinates and in the cosines of the hyperspherical angles (the paper's histogram
    criterion, made scale-free so it works for the standard and the projected model; the
    mean, not the median, because with more than half collapsed the median is collapsed).

    With ``logvar`` (N, n): also the data-averaged KL of each dimension's posterior to
    N(0, 1), ``kl_per_dim`` (nats), and ``collapsed_kl``, the count under ``kl_threshold``
    (Lucas et al. 2019's delta-collapse, delta = 0.01 nats): the definition the paper quotes
    ("the variational posterior collapses to the prior"). It only means something for a
    model whose prior is N(0, I), i.e. the standard VAE. Short runs can show many
    KL-collapsed dimensions (sigma ~ 1, no information) whose mean still varies a little
    over the data, which the histogram criterion does not count.
    """
    from spherevae.geometry.coordinates import hyperspherical_cosines

    std_cart = mu.double().std(0)
    _, cos = hyperspherical_cosines(mu.double())
    std_cos = cos.std(0)
    out: dict[str, Any] = {
        "std_cartesian": std_cart,
        "std_cos_phi": std_cos,
        "collapsed_cartesian": int((std_cart < threshold * std_cart.mean()).sum()),
        "collapsed_cos_phi": int((std_cos < threshold * std_cos.mean()).sum()),
        "threshold_relative": threshold,
    }
    if logvar is not None:
        if logvar.shape != mu.shape:
            raise ValueError(f"collapse_stats: logvar shape {tuple(logvar.shape)} != mu shape {tuple(mu.shape)}")
        m, lv = mu.double(), logvar.double()
        kl = 0.5 * (m.square() + lv.exp() - 1.0 - lv).mean(0)
        out["kl_per_dim"] = kl
        out["collapsed_kl"] = int((kl < kl_threshold).sum())
        out["kl_threshold_nats"] = kl_threshold
    return out


def posterior_sigma_summary(logvar: torch.Tensor, *, ratio: float = 10.0) -> dict[str, Any]:
    """Per-dimension posterior scale: ``sigma_per_dim[j] = mean_i exp(0.5 logvar[i, j])``.

    ``logvar`` (N, n): encoder log-variances over a data set. Returns ``sigma_per_dim``
    (n,) float64 and its summary: ``sigma_max``, ``sigma_median`` and
    ``sigma_dims_above_ratio`` (how many dims exceed ``ratio`` times the median; the
    quickstart compressed model had one dim at 6.8 and the rest at 0.002-0.05).
    """
    if logvar.ndim != 2 or logvar.shape[0] < 1:
        raise ValueError(f"posterior_sigma_summary: expected logvar of shape (N >= 1, n), got {tuple(logvar.shape)}")
    sigma = torch.exp(0.5 * logvar.double()).mean(0)
    median = float(sigma.median())
    return {
        "sigma_per_dim": sigma,
        "sigma_max": float(sigma.max()),
        "sigma_median": median,
        "sigma_dims_above_ratio": int((sigma > ratio * median).sum()),
        "sigma_ratio": ratio,
    }


