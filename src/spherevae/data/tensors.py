"""In-memory data for :func:`spherevae.fit`: tensors, arrays, a ``Dataset`` or a
``DataLoader`` read once into a :class:`TensorData` (images ``(N, ...)``, optional labels).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    pass

__all__ = [
    "TensorData",
    "as_tensor_data",
    "check_same_scale",
]


@dataclass(frozen=True)
class TensorData:
    """In-memory data for :func:`fit`: ``images`` ``(N, ...)`` uint8 or float, ``labels``
    int64 ``(N,)`` or ``None`` (duck-compatible with :class:`spherevae.data.ImageDataset`)."""

    images: torch.Tensor
    labels: torch.Tensor | None = None
    name: str = "in-memory"

    def __post_init__(self) -> None:
        x = self.images
        if not isinstance(x, torch.Tensor) or x.dim() < 2 or x.shape[0] < 1:
            raise ValueError(
                f"data must be a tensor of shape (N, ...) with N >= 1, got "
                f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}"
            )
        if not (x.dtype == torch.uint8 or x.is_floating_point()):
            raise ValueError(f"data must be uint8 or floating point, got {x.dtype}")
        if x.is_floating_point() and not bool(torch.isfinite(x).all()):
            raise ValueError("data holds NaN or inf values")
        if self.labels is not None and self.labels.shape != (x.shape[0],):
            raise ValueError(
                f"labels must have shape ({x.shape[0]},), got {tuple(self.labels.shape)}"
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.images.shape[1:])


def _split_item(item: Any, what: str) -> tuple[Any, Any]:
    """``(x, label or None)`` of one item or batch: ``x`` or ``(x, label)``."""
    if isinstance(item, tuple | list) and item:
        return item[0], (item[1] if len(item) > 1 else None)
    if isinstance(item, dict):
        raise TypeError(
            f"{what} yields dicts (keys {sorted(map(str, item))[:6]}); spherevae takes items x "
            "or (x, label): map them first, e.g. a collate_fn returning (batch['image'], batch['label'])"
        )
    if not isinstance(item, torch.Tensor | np.ndarray):
        raise TypeError(f"{what} yields {type(item).__name__} items; spherevae takes tensors or "
                        "arrays x, or (x, label)")
    return item, None


def check_same_scale(train: TensorData, test: TensorData) -> None:
    """Train and test must be on one scale: uint8 images are divided by 255 and floats are
    used as they are, so a uint8 split beside a float one (or floats beyond [0, 1] beside
    uint8) would train and test on different ranges. A ``ValueError`` names both."""
    a, b = train.images, test.images
    if (a.dtype == torch.uint8) == (b.dtype == torch.uint8):
        return
    top = {n: float(x.max()) for n, x in (("train", a), ("test", b)) if x.is_floating_point()}
    raise ValueError(
        f"train is {a.dtype} and test is {b.dtype}: uint8 images are scaled to [0, 1] and floats "
        f"are used as they are (float max {', '.join(f'{n} {v:g}' for n, v in top.items())}); give "
        "both splits as uint8, or both as floats on one scale"
    )


def as_tensor_data(data: Any, what: str = "data") -> TensorData:
    """``data`` (tensor, array, Dataset, DataLoader, or ``(x, labels)``) as :class:`TensorData`."""
    if isinstance(data, TensorData):
        return data
    if isinstance(data, torch.Tensor | np.ndarray):
        # Held on the CPU (batches move to the training device); a GPU tensor is copied once.
        return TensorData(torch.as_tensor(data).cpu())
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        return TensorData(data[0], None if data[1] is None else torch.as_tensor(data[1]).long())
    if isinstance(data, torch.utils.data.DataLoader):
        xs, ys = zip(*(_split_item(b, f"{what} (a DataLoader)") for b in data), strict=True)
        labels = None if any(y is None for y in ys) else torch.cat([torch.as_tensor(y) for y in ys])
        return TensorData(torch.cat([torch.as_tensor(x) for x in xs]), None if labels is None else labels.long())
    if isinstance(data, torch.utils.data.Dataset) and hasattr(data, "__len__"):
        xs, ys = zip(*(_split_item(data[i], f"{what} (a Dataset)") for i in range(len(data))), strict=True)
        labels = None if any(y is None for y in ys) else torch.as_tensor(list(ys)).long()
        return TensorData(torch.stack([torch.as_tensor(x) for x in xs]), labels)
    raise TypeError(
        f"{what} must be a tensor, a numpy array, (x, labels), a sized Dataset or a DataLoader; "
        f"got {type(data).__name__}"
    )


