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


def _split_item(item: Any) -> tuple[Any, Any]:
    if isinstance(item, tuple | list):
        return item[0], (item[1] if len(item) > 1 else None)
    return item, None


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
        xs, ys = zip(*(_split_item(b) for b in data), strict=True)
        labels = None if any(y is None for y in ys) else torch.cat([torch.as_tensor(y) for y in ys])
        return TensorData(torch.cat([torch.as_tensor(x) for x in xs]), None if labels is None else labels.long())
    if isinstance(data, torch.utils.data.Dataset) and hasattr(data, "__len__"):
        xs, ys = zip(*(_split_item(data[i]) for i in range(len(data))), strict=True)
        labels = None if any(y is None for y in ys) else torch.as_tensor(list(ys)).long()
        return TensorData(torch.stack([torch.as_tensor(x) for x in xs]), labels)
    raise TypeError(
        f"{what} must be a tensor, a numpy array, (x, labels), a sized Dataset or a DataLoader; "
        f"got {type(data).__name__}"
    )


