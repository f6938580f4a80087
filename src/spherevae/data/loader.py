"""Batches of an :class:`~spherevae.data.ImageDataset` for training and evaluation:
reproducible, resumable shuffles and disjoint per-rank slices under DDP."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from spherevae.data.base import ImageDataset

__all__ = [
    "BatchLoader",
]


class BatchLoader:
    """Batches ``(x float32 (B, C, H, W) in [0, 1], y int64 (B,) or None)``.

    The order is a permutation drawn from a generator seeded by ``(seed, epoch)``
    (call :meth:`set_epoch`), so runs are reproducible and resumable. With
    ``world_size > 1`` every rank takes a disjoint, equal-size strided slice of the
    same permutation; the tail that does not divide evenly is dropped.
    """

    def __init__(
        self, dataset: ImageDataset, batch_size: int, *, shuffle: bool = True, seed: int = 0,
        drop_last: bool = False, device: str | torch.device = "cpu", rank: int = 0,
        world_size: int = 1, keep_on_device: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.device = torch.device(device)
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self._images = dataset.images.to(self.device) if keep_on_device else dataset.images
        self._labels = dataset.labels
        if keep_on_device and self._labels is not None:
            self._labels = self._labels.to(self.device)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _indices(self) -> torch.Tensor:
        n = len(self.dataset)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        per_rank = n // self.world_size
        return order[self.rank : per_rank * self.world_size : self.world_size]

    def __len__(self) -> int:
        per_rank = len(self.dataset) // self.world_size
        if self.drop_last:
            return per_rank // self.batch_size
        return math.ceil(per_rank / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        idx = self._indices()
        for b in range(len(self)):
            sel = idx[b * self.batch_size : (b + 1) * self.batch_size]
            if sel.device != self._images.device:
                sel = sel.to(self._images.device)
            x = self._images[sel].to(self.device, non_blocking=True)
            # uint8 images are scaled to [0, 1]; float data (spherevae.fit) is used as given.
            x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
            y = None if self._labels is None else self._labels[sel].to(self.device, non_blocking=True)
            yield x, y
