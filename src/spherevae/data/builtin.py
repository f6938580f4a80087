"""Datasets that need no files: scikit-learn's bundled 8x8 digits and synthetic noise
images of any shape (for benchmarks and smoke tests). Both refuse a ``root``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from spherevae.data.base import DatasetSpec, ImageDataset, no_root

__all__ = [
    "digits_reader",
    "synthetic_reader",
]


def digits_reader(spec: DatasetSpec, split: str, root: Path | None, download: bool) -> ImageDataset:
    """1797 grey 8x8 digits scaled to 0..255; a fixed 80/20 train/test split."""
    from sklearn.datasets import load_digits

    no_root(spec.name, root)
    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    # Deterministic split: a fixed permutation, the last 20% are the test set.
    perm = np.random.default_rng(0).permutation(images.shape[0])
    cut = int(0.8 * images.shape[0])
    idx = perm[:cut] if split == "train" else perm[cut:]
    return ImageDataset(
        torch.from_numpy(images[idx]),
        torch.from_numpy(bunch.target[idx].astype(np.int64)),
        spec.name,
        spec.classes,
    )


def synthetic_reader(
    spec: DatasetSpec, split: str, root: Path | None, download: bool, *, image_shape: tuple[int, ...] | list[int] = (3, 32, 32),
    train_size: int = 50_000, test_size: int = 10_000, seed: int = 0,
) -> ImageDataset:
    """Uniform-noise uint8 images with random labels: for benchmarks and smoke tests of a
    dataset's *shape* (a step costs the same whatever the pixels are). Deterministic."""
    no_root(spec.name, root)
    shape = tuple(int(v) for v in image_shape)
    if len(shape) != 3 or shape[0] not in (1, 3) or min(shape[1:]) < 4:
        raise ValueError(f"option image_shape must be (C in {{1, 3}}, H >= 4, W >= 4), got {image_shape!r}")
    size = train_size if split == "train" else test_size
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"option {split}_size must be an integer >= 1, got {size!r}")
    g = torch.Generator().manual_seed(seed * 2 + (split == "test"))
    images = torch.randint(0, 256, (size, *shape), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 10, (size,), generator=g)
    return ImageDataset(images, labels, spec.name, spec.classes)
