"""The pieces every figure uses: a figure of a given size (matplotlib's Agg backend, imported
here and nowhere at module import), saving it, image grids and stacked histograms.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "image_grid",
    "new_figure",
    "save_figure",
    "show_grid",
    "stacked_hist",
    "to_numpy",
]


def new_figure(w: float, h: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=100, layout="constrained")


def to_numpy(a: Any) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def save_figure(fig, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fig.savefig(tmp, format="png", metadata={"Software": None})
        os.replace(tmp, path)
    except BaseException:  # a full disk: no half-written temporary file is left behind
        tmp.unlink(missing_ok=True)
        raise
    return path


def image_grid(images: Any, nrow: int = 8, pad: int = 1) -> np.ndarray:
    """``(N, C, H, W)`` floats in [0, 1] -> ``uint8 (rows*(H+pad)+pad, ..., C)`` grid."""
    x = to_numpy(images).astype(np.float64)
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


def show_grid(ax, grid: np.ndarray, title: str) -> None:
    ax.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=255)
    ax.set_title(title)
    ax.axis("off")


def stacked_hist(ax, values: np.ndarray, title: str, bins: int = 50) -> None:
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


