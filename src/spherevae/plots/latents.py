"""Figures as functions of arrays returning a matplotlib ``Figure`` (no pyplot, no
global state). ``save_figure`` writes a PNG atomically."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from spherevae.plots.figure import new_figure, stacked_hist, to_numpy

# The MSE-FID plane lives in spherevae.report.plane; its names stay importable from here.

__all__ = [
    "latent_histograms",
    "latent_spectrum_figure",
    "project_to_3d_sphere",
    "sphere_projection",
    "tsne_figure",
]


def _group_sizes(n: int, groups: int) -> list[int]:
    base = n // groups
    return [base] * (groups - 1) + [n - base * (groups - 1)]


def project_to_3d_sphere(z: Any, groups: int = 3) -> np.ndarray:
    """Average the n dimensions in three contiguous groups (42/42/44 for n = 128, the
    remainder in the last, as in the paper) and normalise to the unit sphere: ``(N, 3)``."""
    z = to_numpy(z).astype(np.float64)
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


# A cap is zoomed into when the projected latents' mean resultant length exceeds this: the
# points then sit in a small island that is one dot at the whole sphere's scale.
_CAP_RESULTANT = 0.5


def sphere_projection(z: Any, labels: Any = None, max_points: int = 5000,
                      class_names: Sequence[str] | None = None):
    """Fig 1b: latents projected to the 2-sphere, coloured by class (legend: ``class_names``
    when given, else the label values). When the points gather in a cap (mean resultant
    length > 0.5, the compressed model's island) a second panel zooms into it: each point's
    coordinates in the plane tangent to the sphere at the points' mean direction, so the
    classes inside the island can be seen (the paper's Fig 1b, right)."""
    p = project_to_3d_sphere(z)[:max_points]
    centre = p.mean(axis=0)
    zoom = float(np.linalg.norm(centre)) > _CAP_RESULTANT
    fig = new_figure(11 if zoom else 5.5, 5.8)
    ax = fig.add_subplot(1, 2 if zoom else 1, 1, projection="3d")
    u, v = np.mgrid[0 : 2 * np.pi : 24j, 0 : np.pi : 12j]
    ax.plot_wireframe(np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v), color="0.85", lw=0.4)
    c = None if labels is None else to_numpy(labels)[: len(p)]
    ax.scatter(p[:, 0], p[:, 1], p[:, 2], s=2, **_class_colours(c))
    ax.set_title("latents projected on the 2-sphere")
    ax.set_xlabel("dims group 1")
    ax.set_ylabel("dims group 2")
    ax.set_zlabel("dims group 3")
    ax.set_box_aspect((1, 1, 1))
    if zoom:
        _cap_panel(fig.add_subplot(1, 2, 2), p, centre / np.linalg.norm(centre), c)
    _class_legend(ax, c, class_names, below=True)
    return fig


def _cap_panel(ax: Any, p: np.ndarray, m: np.ndarray, c: np.ndarray | None) -> None:
    """``p`` ``(N, 3)`` unit vectors in the tangent plane at the unit vector ``m``: an
    orthonormal basis (e1, e2) of the plane orthogonal to ``m`` and each point's (p·e1, p·e2)."""
    e1 = np.cross(m, np.eye(3)[int(np.argmin(np.abs(m)))])  # the axis least aligned with m
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(m, e1)
    ax.scatter(p @ e1, p @ e2, s=3, **_class_colours(c))
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title("zoom on the cap (tangent plane at the mean direction)")
    ax.set_xlabel("tangent direction 1")
    ax.set_ylabel("tangent direction 2")


def tsne_figure(z: Any, labels: Any = None, seed: int = 0, knn_accuracy: float | None = None,
                class_names: Sequence[str] | None = None):
    """Fig 1c: t-SNE of the latents (PCA to 50 dimensions first), with a class legend."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = to_numpy(z).astype(np.float32)
    if x.shape[1] > 50:
        x = PCA(50, random_state=seed).fit_transform(x)
    e = TSNE(2, init="pca", random_state=seed, perplexity=min(30, max(2, len(x) // 4))).fit_transform(x)
    fig = new_figure(6, 5)
    ax = fig.add_subplot()
    c = None if labels is None else to_numpy(labels)
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


def latent_histograms(mu: Any, sigma: Any, z: Any, cos_phi_mu: Any):
    """Figs 8-9: per-dimension histograms (white dots: means, black: stds), norms and
    the replica angle between the latents and their mean (red dashed: its mean)."""
    mu, sigma, z, cos = (to_numpy(a).astype(np.float64) for a in (mu, sigma, z, cos_phi_mu))
    fig = new_figure(12, 7)  # two rows of three: readable at a page's width
    axes = fig.subplots(2, 3).ravel()
    for ax, vals, title in zip(axes[:4], (mu, sigma, z, cos), ("μ", "σ", "z", "cos φ_k(μ)"), strict=True):
        stacked_hist(ax, vals, title)
    ax = axes[4]
    ax.hist(np.linalg.norm(mu, axis=1), 50, alpha=0.6, label="|μ|", color="tab:orange")
    ax.hist(np.linalg.norm(z, axis=1), 50, alpha=0.6, label="|z|", color="tab:blue")
    ax.legend(fontsize=10)
    ax.set_title("norms")
    ax.set_xlabel("norm")
    ax.set_ylabel("test images")
    from spherevae.geometry.sphere import replica_angles

    ang = replica_angles(torch.from_numpy(mu)).numpy()
    ax = axes[5]
    ax.hist(ang, 50, color="0.5")
    ax.axvline(ang.mean(), color="r", ls="--", label=f"mean {ang.mean():.2f}")
    ax.axvline(np.pi / 2, color="k", ls=":", label="π/2")
    ax.legend(fontsize=10)
    ax.set_title("replica angle to the mean")
    ax.set_xlabel("angle (rad)")
    ax.set_ylabel("test images")
    return fig


# ------------------------------------------------------------ theory (Figs 3-6)


def latent_spectrum_figure(sigma_per_dim: Any, tangent_spectrum: Any, vmf_tangent_var: float | None = None):
    """Two panels that explain generation: the posterior scale per latent dimension
    (``mean_i exp(logvar_ij / 2)``, log scale, with the median and 10x the median) and the
    tangent spectrum (eigenvalues of the latents' tangent covariance at their mean
    direction, largest first, log scale, with its participation ratio). A vMF's spectrum
    is flat at ``vmf_tangent_var`` (``A_n(kappa)/kappa``), drawn when given."""
    sigma = to_numpy(sigma_per_dim).astype(np.float64)
    lam = to_numpy(tangent_spectrum).astype(np.float64)
    fig = new_figure(11, 3.8)
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
