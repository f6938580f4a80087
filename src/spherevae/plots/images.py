"""Figures of images: reconstructions beside samples (Fig 1a), samples of every sampler,
and interpolations (A.11).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from spherevae.plots.figure import image_grid, new_figure, show_grid

__all__ = [
    "interpolation_figure",
    "reconstruction_figure",
    "sampler_grid_figure",
]


def reconstruction_figure(x: Any, x_hat: Any, x_samples: Any, titles: Sequence[str] = ("x", "x̂ (reconstruction)", "x_ε (samples)"), nrow: int = 4):
    """Fig 1a: data, reconstructions and decoded samples side by side."""
    fig = new_figure(12, 4.4)
    axes = fig.subplots(1, 3)
    for ax, imgs, title in zip(axes, (x, x_hat, x_samples), titles, strict=True):
        show_grid(ax, image_grid(imgs, nrow), title)
    return fig


def sampler_grid_figure(samples: dict[str, Any], fids: dict[str, float] | None = None, nrow: int = 4,
                        fid_label: str = "FID", columns: int = 4):
    """Decoded samples of several samplers, one panel each in a grid that wraps after
    ``columns`` panels (so the figure stays readable at a page's width), titled with the
    sampler's name and, when given, its FID; ``fid_label`` should name the backbone."""
    if not samples:
        raise ValueError("sampler_grid_figure: no samples given")
    ncol = min(columns, len(samples))
    nrows = -(-len(samples) // ncol)
    fig = new_figure(3.2 * ncol, 3.6 * nrows)
    axes = np.atleast_1d(fig.subplots(nrows, ncol)).ravel()
    for ax, (name, imgs) in zip(axes, samples.items(), strict=False):
        title = name if not fids or name not in fids else f"{name}\n{fid_label} {fids[name]:.3g}"
        show_grid(ax, image_grid(imgs, nrow), title)
        ax.title.set_fontsize(13)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[len(samples):]:  # the wrapped grid's empty places
        ax.set_axis_off()
    return fig


def interpolation_figure(images_linear: Any, images_sphere: Any):
    """A.11: decoded linear (top) and spherical (bottom) interpolations."""
    fig = new_figure(12, 3)
    axes = fig.subplots(2, 1)
    for ax, imgs, title in zip(axes, (images_linear, images_sphere), ("linear", "along the sphere"), strict=True):
        show_grid(ax, image_grid(imgs, nrow=len(imgs)), title)
    return fig


