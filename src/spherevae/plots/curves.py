"""Training curves from the per-epoch records of ``metrics.jsonl``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from spherevae.plots.figure import new_figure

__all__ = [
    "training_curves",
]


# metrics.jsonl key -> its legend label.
_LABELS = {"train_rmse_percent": "train", "test_rmse_percent": "test", "train_latent": "train",
           "beta": "β", "multiplier": "schedule multiplier"}


def training_curves(rows: Sequence[dict[str, Any]]):
    """Per-epoch MSE (train/test), latent loss, beta and the schedule multiplier. Epochs are
    counted 1..N as the training log counts them (``metrics.jsonl`` stores 0-based epochs)."""
    from matplotlib.ticker import MaxNLocator  # matplotlib only when a figure is drawn

    fig = new_figure(12, 3.5)
    axes = fig.subplots(1, 3)
    epochs = [r.get("epoch", i) + 1 for i, r in enumerate(rows)]
    panels = (
        (("train_rmse_percent", "test_rmse_percent"), "RMSE (% of range)"),
        (("train_latent",), "latent loss"),
        (("beta", "multiplier"), "β and multiplier"),
    )
    for ax, (keys, title) in zip(axes, panels, strict=True):
        for key in keys:
            ys = [r.get(key) for r in rows]
            if any(y is not None for y in ys):
                ax.plot(epochs, [np.nan if y is None else y for y in ys], marker=".", label=_LABELS.get(key, key))
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(title)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.get_legend_handles_labels()[0]:  # a panel with no logged key stays empty
            ax.legend(fontsize=9)
    return fig
