"""TODO docstring."""

from __future__ import annotations

import itertools

import os

from collections.abc import Sequence

from pathlib import Path

from typing import Any

import numpy as np

import torch

from spherevae.report.plane import (
    distinct_colours,
    draw_sweep_plane,
    mse_fid_plane,
    sampler_colours,
)


def new_figure(w: float, h: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=100, layout="constrained")


def to_numpy(a: Any) -> np.ndarray:
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


