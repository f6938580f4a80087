"""The theory figures: volume reduction (Fig 3), concentration of measure (Figs 4-5) and
the distribution of the hyperspherical cosines of a Gaussian (Fig 6).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from spherevae.plots.figure import new_figure, stacked_hist

__all__ = [
    "concentration_figure",
    "cos_phi_distribution_figure",
    "volume_reduction_figure",
]


def volume_reduction_figure(ns: Sequence[int] = (3, 10, 20), points: int = 200):
    """Fig 3: hypervolume fraction ``v_t / v_0`` against the coordinate scale ``1 - t``,
    shrinking every angle (``(1-t)^{n(n-1)/2}``) vs the radius (``(1-t)^{n-1}``), one panel per n."""
    from spherevae.geometry.theory import angular_volume_fraction, radial_volume_fraction

    scale = np.linspace(0.0, 1.0, points)
    fig = new_figure(4 * len(ns), 3.4)
    axes = np.atleast_1d(fig.subplots(1, len(ns)))
    for ax, n in zip(axes, ns, strict=True):
        ax.plot(scale, angular_volume_fraction(1 - scale, n), "r-", label="angles shrink: $(1-t)^{n(n-1)/2}$")
        ax.plot(scale, radial_volume_fraction(1 - scale, n), "b--", label="radius shrinks: $(1-t)^{n-1}$")
        ax.set_title(f"n = {n}")
        ax.set_xlabel("coordinate scale 1 - t")
        ax.set_ylabel("volume fraction $v_t / v_0$")
        ax.legend(fontsize=8)
    fig.suptitle("Fig 3: volume reduction, angular vs radial (small-angle regime, A.3)")
    return fig


def concentration_figure(ns: Sequence[int] = (2, 100), samples: int = 20_000, seed: int = 0):
    """Figs 4-5: for ``N(0, I_n)`` samples, the norm histogram against the chi(n) density and
    the angle between independent pairs against its exact density ``sin^{n-2}``; last
    panel: exact fraction of the sphere within an equatorial band vs the paper's eq 12."""
    from scipy import stats

    from spherevae.geometry.theory import (
        equatorial_band_fraction,
        pairwise_angle_density,
        paper_concentration_bound,
    )

    rng = np.random.default_rng(seed)
    fig = new_figure(4 * (2 * len(ns) + 1) / 1.3, 3.4)
    axes = fig.subplots(1, 2 * len(ns) + 1)
    for i, n in enumerate(ns):
        x, y = rng.standard_normal((samples, n)), rng.standard_normal((samples, n))
        norms = np.linalg.norm(x, axis=1)
        ax = axes[2 * i]
        ax.hist(norms, 60, density=True, color="0.6")
        grid = np.linspace(0, norms.max(), 200)
        ax.plot(grid, stats.chi(n).pdf(grid), "r-", label=f"χ({n}); √n = {np.sqrt(n):.1f}")
        ax.set_title(f"|x|, x ~ N(0, I_{{{n}}})", fontsize=9)
        ax.set_xlabel("norm")
        ax.legend(fontsize=8)
        cos = (x * y).sum(1) / (norms * np.linalg.norm(y, axis=1))
        ax = axes[2 * i + 1]
        ax.hist(np.arccos(np.clip(cos, -1, 1)), 60, density=True, color="0.6", range=(0, np.pi))
        theta = np.linspace(1e-3, np.pi - 1e-3, 300)
        ax.plot(theta, pairwise_angle_density(theta, n), "r-", label="∝ sin^{n-2}θ")
        ax.set_title(f"angle between two samples, n = {n}", fontsize=9)
        ax.set_xlabel("angle (rad)")
        ax.legend(fontsize=8)
    ax = axes[-1]
    eps = np.linspace(0.0, 1.0, 200)
    for n, color in zip((10, 100, 1000), ("tab:blue", "tab:orange", "tab:green"), strict=True):
        ax.plot(eps, equatorial_band_fraction(eps, n), color=color, label=f"exact, n = {n}")
        ax.plot(eps, np.clip(paper_concentration_bound(2 * eps, n), 0, 1), color=color, ls=":",
                label=f"eq 12 bound (width 2h), n = {n}")
    ax.set_xlabel("band half-width h")
    ax.set_ylabel("fraction of the sphere with |⟨z, y⟩| ≤ h")
    ax.set_title("equatorial band (Fig 5b)", fontsize=9)
    ax.legend(fontsize=7)
    fig.suptitle("Figs 4-5: concentration of measure")
    return fig


def cos_phi_distribution_figure(n: int = 40, samples: int = 20_000, seed: int = 0):
    """Fig 6: per-index histograms of ``phi_k`` and ``cos phi_k`` of ``N(0, I_n)`` samples
    (white dots: means, black: stds), and the measured RMS of ``cos phi_k`` against the
    exact ``1/sqrt(n-k+1)`` and the paper's ``1/sqrt(k+1)`` target profile."""
    from spherevae.geometry.coordinates import hyperspherical_cosines, to_hyperspherical

    x = torch.from_numpy(np.random.default_rng(seed).standard_normal((samples, n)))
    _, phi_t = to_hyperspherical(x)
    _, cos_t = hyperspherical_cosines(x)
    phi, cos = phi_t.numpy(), cos_t.numpy()
    fig = new_figure(13, 4)
    axes = fig.subplots(1, 3)
    stacked_hist(axes[0], phi[:, :-1], "φ_k, k = 1..n-2")
    stacked_hist(axes[1], cos, "cos φ_k, k = 1..n-1")
    k = np.arange(1, n)
    ax = axes[2]
    ax.plot(k, np.sqrt((cos**2).mean(0)), "ko", ms=3, label="measured RMS of cos φ_k")
    ax.plot(k, 1 / np.sqrt(n - k + 1), "r-", label="exact 1/√(n-k+1)")
    ax.plot(k, 1 / np.sqrt(k + 1), "b--", label="paper's profile 1/√(k+1)")
    ax.set_xlabel("angle index k")
    ax.set_ylabel("RMS of cos φ_k")
    ax.legend(fontsize=8)
    fig.suptitle(f"Fig 6: N(0, I_{{{n}}}) in hyperspherical coordinates ({samples} samples)")
    return fig


