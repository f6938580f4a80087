"""Figures as functions of arrays returning a matplotlib ``Figure`` (no pyplot, no
global state). ``save_figure`` writes a PNG atomically."""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

# The MSE-FID plane lives in spherevae.plane; its names stay importable from here.
from spherevae.plane import distinct_colours, draw_sweep_plane, mse_fid_plane, sampler_colours

__all__ = [
    "concentration_figure",
    "cos_phi_distribution_figure",
    "distinct_colours",
    "draw_sweep_plane",
    "image_grid",
    "interpolate_linear",
    "interpolate_sphere",
    "interpolation_figure",
    "latent_histograms",
    "mse_fid_plane",
    "project_to_3d_sphere",
    "reconstruction_figure",
    "sampler_colours",
    "save_figure",
    "sphere_projection",
    "training_curves",
    "tsne_figure",
    "volume_reduction_figure",
]


def _figure(w: float, h: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=100, layout="constrained")


def _np(a: Any) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def save_figure(fig, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", metadata={"Software": None})
    os.replace(tmp, path)
    return path


def image_grid(images: Any, nrow: int = 8, pad: int = 1) -> np.ndarray:
    """``(N, C, H, W)`` floats in [0, 1] -> ``uint8 (rows*(H+pad)+pad, ..., C)`` grid."""
    x = _np(images).astype(np.float64)
    n, c, h, w = x.shape
    ncol = min(nrow, n)
    nrows = -(-n // ncol)
    grid = np.ones((nrows * (h + pad) + pad, ncol * (w + pad) + pad, c))
    for i in range(n):
        r, q = divmod(i, ncol)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + q * (w + pad) : pad + q * (w + pad) + w] = (
            x[i].transpose(1, 2, 0)
        )
    return (np.clip(grid, 0, 1) * 255 + 0.5).astype(np.uint8)


def _show(ax, grid: np.ndarray, title: str) -> None:
    ax.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=255)
    ax.set_title(title)
    ax.axis("off")


def reconstruction_figure(x: Any, x_hat: Any, x_samples: Any, titles: Sequence[str] = ("x", "x̂ (reconstruction)", "x_ε (samples)"), nrow: int = 4):
    """Fig 1a: data, reconstructions and decoded samples side by side."""
    fig = _figure(12, 4.4)
    axes = fig.subplots(1, 3)
    for ax, imgs, title in zip(axes, (x, x_hat, x_samples), titles, strict=True):
        _show(ax, image_grid(imgs, nrow), title)
    return fig


def sampler_grid_figure(samples: dict[str, Any], fids: dict[str, float] | None = None, nrow: int = 4,
                        fid_label: str = "FID"):
    """Decoded samples of several samplers side by side, one panel each, titled with the
    sampler's name and, when given, its FID; ``fid_label`` should name the backbone."""
    if not samples:
        raise ValueError("sampler_grid_figure: no samples given")
    fig = _figure(4 * len(samples), 4.4)
    axes = np.atleast_1d(fig.subplots(1, len(samples)))
    for ax, (name, imgs) in zip(axes, samples.items(), strict=True):
        title = name if not fids or name not in fids else f"{name} ({fid_label} {fids[name]:.1f})"
        _show(ax, image_grid(imgs, nrow), title)
    return fig


def _group_sizes(n: int, groups: int) -> list[int]:
    base = n // groups
    return [base] * (groups - 1) + [n - base * (groups - 1)]


def project_to_3d_sphere(z: Any, groups: int = 3) -> np.ndarray:
    """Average the n dimensions in three contiguous groups (42/42/44 for n = 128, the
    remainder in the last, as in the paper) and normalise to the unit sphere: ``(N, 3)``."""
    z = _np(z).astype(np.float64)
    if z.ndim != 2 or z.shape[1] < groups:
        raise ValueError(f"z must have shape (N, n) with n >= {groups}, got {z.shape}")
    bounds = np.cumsum([0, *_group_sizes(z.shape[1], groups)])
    p = np.stack([z[:, a:b].mean(1) for a, b in itertools.pairwise(bounds)], 1)
    norm = np.linalg.norm(p, axis=1, keepdims=True)
    return p / np.where(norm > 0, norm, 1.0)


def _class_legend(ax, labels: np.ndarray | None, class_names: Sequence[str] | None,
                  below: bool = False) -> None:
    """One legend entry per class, in the colours ``scatter(c=labels, cmap="tab10")`` used;
    right of the axes, or ``below`` the figure (3-D axes, whose z label sits on the right)."""
    if labels is None:
        return
    from matplotlib import colormaps
    from matplotlib.lines import Line2D

    classes = np.unique(labels)
    lo, hi = labels.min(), labels.max()
    cmap = colormaps["tab10"]  # scatter normalises c linearly from its min to its max
    handles = []
    for k in classes:
        name = class_names[int(k)] if class_names is not None and 0 <= int(k) < len(class_names) else str(k)
        colour = cmap((k - lo) / (hi - lo) if hi > lo else 0.0)
        handles.append(Line2D([], [], ls="", marker="o", ms=5, color=colour, label=name))
    if below:
        ax.figure.legend(handles=handles, title="class", fontsize=7, title_fontsize=8,
                         loc="outside lower center", ncol=min(len(handles), 5), frameon=False)
    else:
        ax.legend(handles=handles, title="class", fontsize=7, title_fontsize=8,
                  loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)


def _class_colours(labels: Any) -> dict[str, Any]:
    # Without labels, no colour map: matplotlib warns when given a cmap but no values.
    return {} if labels is None else {"c": labels, "cmap": "tab10"}


def sphere_projection(z: Any, labels: Any = None, max_points: int = 5000,
                      class_names: Sequence[str] | None = None):
    """Fig 1b: latents projected to the 2-sphere, coloured by class (legend: ``class_names``
    when given, else the label values)."""
    p = project_to_3d_sphere(z)[:max_points]
    fig = _figure(5.5, 5.8)
    ax = fig.add_subplot(projection="3d")
    u, v = np.mgrid[0 : 2 * np.pi : 24j, 0 : np.pi : 12j]
    ax.plot_wireframe(np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v), color="0.85", lw=0.4)
    c = None if labels is None else _np(labels)[: len(p)]
    ax.scatter(p[:, 0], p[:, 1], p[:, 2], s=2, **_class_colours(c))
    ax.set_title("latents projected on the 2-sphere")
    ax.set_xlabel("dims group 1")
    ax.set_ylabel("dims group 2")
    ax.set_zlabel("dims group 3")
    ax.set_box_aspect((1, 1, 1))
    _class_legend(ax, c, class_names, below=True)
    return fig


def tsne_figure(z: Any, labels: Any = None, seed: int = 0, knn_accuracy: float | None = None,
                class_names: Sequence[str] | None = None):
    """Fig 1c: t-SNE of the latents (PCA to 50 dimensions first), with a class legend."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = _np(z).astype(np.float32)
    if x.shape[1] > 50:
        x = PCA(50, random_state=seed).fit_transform(x)
    e = TSNE(2, init="pca", random_state=seed, perplexity=min(30, max(2, len(x) // 4))).fit_transform(x)
    fig = _figure(6, 5)
    ax = fig.add_subplot()
    c = None if labels is None else _np(labels)
    ax.scatter(e[:, 0], e[:, 1], s=2, **_class_colours(c))
    title = "t-SNE of the latents"
    if knn_accuracy is not None:
        title += f" (k-NN accuracy {knn_accuracy:.3f})"
    ax.set_title(title)
    ax.set_xlabel("t-SNE 1")
    ax.set_ylabel("t-SNE 2")
    ax.set_xticks([])
    ax.set_yticks([])
    _class_legend(ax, c, class_names)
    return fig


def _stacked_hist(ax, values: np.ndarray, title: str, bins: int = 50) -> None:
    lo, hi = np.percentile(values, [0.5, 99.5])
    hi = hi if hi > lo else lo + 1e-6
    edges = np.linspace(lo, hi, bins + 1)
    img = np.stack([np.histogram(values[:, k], edges, density=True)[0] for k in range(values.shape[1])])
    ax.imshow(img, aspect="auto", origin="lower", extent=(lo, hi, 0, values.shape[1]), cmap="jet")
    idx = np.arange(values.shape[1]) + 0.5
    ax.plot(values.mean(0), idx, "w.", ms=2)
    ax.plot(values.std(0), idx, "k.", ms=2)
    ax.set_title(f"{title}\nmean {values.mean():.3g}, std {values.std():.3g}", fontsize=9)
    ax.set_xlabel(f"value of {title.split(',')[0]}", fontsize=8)
    ax.set_ylabel("dimension index")


def latent_histograms(mu: Any, sigma: Any, z: Any, cos_phi_mu: Any):
    """Figs 8-9: per-dimension histograms (white dots: means, black: stds), norms and
    the replica angle between the latents and their mean (red dashed: its mean)."""
    mu, sigma, z, cos = (_np(a).astype(np.float64) for a in (mu, sigma, z, cos_phi_mu))
    fig = _figure(16, 4)
    axes = fig.subplots(1, 6)
    for ax, vals, title in zip(axes[:4], (mu, sigma, z, cos), ("μ", "σ", "z", "cos φ_k(μ)"), strict=True):
        _stacked_hist(ax, vals, title)
    ax = axes[4]
    ax.hist(np.linalg.norm(mu, axis=1), 50, alpha=0.6, label="|μ|", color="tab:orange")
    ax.hist(np.linalg.norm(z, axis=1), 50, alpha=0.6, label="|z|", color="tab:blue")
    ax.legend(fontsize=8)
    ax.set_title("norms", fontsize=9)
    ax.set_xlabel("norm")
    ax.set_ylabel("test images")
    from spherevae.metrics import replica_angles

    ang = replica_angles(torch.from_numpy(mu)).numpy()
    ax = axes[5]
    ax.hist(ang, 50, color="0.5")
    ax.axvline(ang.mean(), color="r", ls="--", label=f"mean {ang.mean():.2f}")
    ax.axvline(np.pi / 2, color="k", ls=":", label="π/2")
    ax.legend(fontsize=8)
    ax.set_title("replica angle to the mean", fontsize=9)
    ax.set_xlabel("angle (rad)")
    ax.set_ylabel("test images")
    return fig


def training_curves(rows: Sequence[dict[str, Any]]):
    """Per-epoch MSE (train/test), latent loss, beta and the schedule multiplier."""
    fig = _figure(12, 3.5)
    axes = fig.subplots(1, 3)
    epochs = [r.get("epoch", i) for i, r in enumerate(rows)]
    panels = (
        (("train_rmse_percent", "test_rmse_percent"), "RMSE (% of range)"),
        (("train_latent",), "latent loss"),
        (("beta", "multiplier"), "β and multiplier"),
    )
    for ax, (keys, title) in zip(axes, panels, strict=True):
        for key in keys:
            ys = [r.get(key) for r in rows]
            if any(y is not None for y in ys):
                ax.plot(epochs, [np.nan if y is None else y for y in ys], marker=".", label=key)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(title)
        if ax.get_legend_handles_labels()[0]:  # a panel with no logged key stays empty
            ax.legend(fontsize=8)
    return fig


def interpolate_linear(z0: torch.Tensor, z1: torch.Tensor, steps: int) -> torch.Tensor:
    t = torch.linspace(0, 1, steps, dtype=z0.dtype)[:, None]
    return (1 - t) * z0 + t * z1


def interpolate_sphere(z0: torch.Tensor, z1: torch.Tensor, steps: int) -> torch.Tensor:
    """Great-circle interpolation (slerp) with the radius interpolated linearly.

    Nearly parallel vectors fall back to normalised linear interpolation; exactly
    antipodal ones go through a fixed orthogonal direction."""
    r0, r1 = z0.norm(), z1.norm()
    u0, u1 = z0 / r0, z1 / r1
    t = torch.linspace(0, 1, steps, dtype=z0.dtype)[:, None]
    cos = torch.clamp(u0 @ u1, -1.0, 1.0)
    omega = torch.arccos(cos)
    if omega < 1e-6:
        d = (1 - t) * u0 + t * u1
        d = d / d.norm(dim=1, keepdim=True)
    else:
        if torch.pi - omega < 1e-6:  # antipodal: any orthogonal direction is a geodesic
            e = torch.zeros_like(u0)
            e[int(torch.argmin(u0.abs()))] = 1.0
            w = e - (e @ u0) * u0
            u1_perp = w / w.norm()
        else:
            u1_perp = (u1 - cos * u0) / torch.sin(omega)
        d = torch.cos(t * omega) * u0 + torch.sin(t * omega) * u1_perp
    return d * ((1 - t) * r0 + t * r1)


def interpolation_figure(images_linear: Any, images_sphere: Any):
    """A.11: decoded linear (top) and spherical (bottom) interpolations."""
    fig = _figure(12, 3)
    axes = fig.subplots(2, 1)
    for ax, imgs, title in zip(axes, (images_linear, images_sphere), ("linear", "along the sphere"), strict=True):
        _show(ax, image_grid(imgs, nrow=len(imgs)), title)
    return fig


# ------------------------------------------------------------ theory (Figs 3-6)


def volume_reduction_figure(ns: Sequence[int] = (3, 10, 20), points: int = 200):
    """Fig 3: hypervolume fraction ``v_t / v_0`` against the coordinate scale ``1 - t``,
    shrinking every angle (``(1-t)^{n(n-1)/2}``) vs the radius (``(1-t)^{n-1}``), one panel per n."""
    from spherevae.theory import angular_volume_fraction, radial_volume_fraction

    scale = np.linspace(0.0, 1.0, points)
    fig = _figure(4 * len(ns), 3.4)
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

    from spherevae.theory import (
        equatorial_band_fraction,
        pairwise_angle_density,
        paper_concentration_bound,
    )

    rng = np.random.default_rng(seed)
    fig = _figure(4 * (2 * len(ns) + 1) / 1.3, 3.4)
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
    from spherevae.coordinates import hyperspherical_cosines, to_hyperspherical

    x = torch.from_numpy(np.random.default_rng(seed).standard_normal((samples, n)))
    _, phi_t = to_hyperspherical(x)
    _, cos_t = hyperspherical_cosines(x)
    phi, cos = phi_t.numpy(), cos_t.numpy()
    fig = _figure(13, 4)
    axes = fig.subplots(1, 3)
    _stacked_hist(axes[0], phi[:, :-1], "φ_k, k = 1..n-2")
    _stacked_hist(axes[1], cos, "cos φ_k, k = 1..n-1")
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


def latent_spectrum_figure(sigma_per_dim: Any, tangent_spectrum: Any, vmf_tangent_var: float | None = None):
    """Two panels that explain generation: the posterior scale per latent dimension
    (``mean_i exp(logvar_ij / 2)``, log scale, with the median and 10x the median) and the
    tangent spectrum (eigenvalues of the latents' tangent covariance at their mean
    direction, largest first, log scale, with its participation ratio). A vMF's spectrum
    is flat at ``vmf_tangent_var`` (``A_n(kappa)/kappa``), drawn when given."""
    sigma = _np(sigma_per_dim).astype(np.float64)
    lam = _np(tangent_spectrum).astype(np.float64)
    fig = _figure(11, 3.8)
    ax_s, ax_t = fig.subplots(1, 2)
    dims = np.arange(1, sigma.size + 1)
    ax_s.semilogy(dims, np.maximum(sigma, 1e-300), "k.", ms=4)
    median = float(np.median(sigma))
    ax_s.axhline(median, color="b", lw=1, label=f"median {median:.3g}")
    ax_s.axhline(10 * median, color="r", lw=1, ls="--",
                 label=f"10 x median ({int((sigma > 10 * median).sum())} dims above)")
    ax_s.set_xlabel("latent dimension j")
    ax_s.set_ylabel("mean posterior σ_j")
    ax_s.legend(fontsize=8)
    ax_s.set_title("posterior scale per dimension")
    positive = lam[lam > 0]
    ratio = positive.sum() ** 2 / (positive**2).sum() if positive.size else 0.0
    ax_t.semilogy(np.arange(1, positive.size + 1), positive, "k.-", ms=3, lw=0.8,
                  label=f"latents (participation ratio {ratio:.1f} of {lam.size})")
    if vmf_tangent_var is not None:
        ax_t.axhline(vmf_tangent_var, color="r", ls="--", lw=1, label="vMF fit (isotropic)")
    ax_t.set_xlabel("eigenvalue rank")
    ax_t.set_ylabel("variance (unit sphere)")
    ax_t.legend(fontsize=8)
    ax_t.set_title("tangent spectrum at the mean direction")
    return fig
