"""The idx format of MNIST and Fashion-MNIST (``.gz`` or raw): a reader of one file
(:func:`read_idx`, checking magic number and size) and the dataset reader that finds or
downloads the four files of a spec (``*-images-idx3-ubyte``, ``*-labels-idx1-ubyte``).
"""

from __future__ import annotations

import gzip
import math
import os
from pathlib import Path

import numpy as np
import torch

from spherevae.data.base import (
    CorruptDatasetError,
    DatasetNotFoundError,
    DatasetSpec,
    ImageDataset,
    cache_dir,
    candidate_dirs,
    download_file,
)

__all__ = [
    "IDX_FILES",
    "idx_reader",
    "read_idx",
]

_IDX_DTYPES: dict[int, str] = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike[str], *, expected_ndim: int | None = None) -> np.ndarray:
    """Read an idx file (``.gz`` or raw) into a numpy array, checking magic and size."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise CorruptDatasetError(f"{path}: cannot be read as idx ({exc})") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise CorruptDatasetError(f"{path}: bad idx magic number {raw[:4].hex() or '(empty)'}")
    ndim = raw[3]
    if expected_ndim is not None and ndim != expected_ndim:
        raise CorruptDatasetError(f"{path}: idx file has {ndim} dimensions, expected {expected_ndim}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise CorruptDatasetError(f"{path}: truncated idx header")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = header + math.prod(dims) * dtype.itemsize
    if len(raw) != expected:
        raise CorruptDatasetError(
            f"{path}: idx file of shape {dims} should have {expected} bytes, has {len(raw)} "
            "(truncated or corrupt: delete it and fetch it again)"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).copy()


IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find_idx(directory: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def idx_reader(spec: DatasetSpec, split: str, root: Path | None, download: bool) -> ImageDataset:
    """Images ``(N, 1, H, W)`` and labels of ``split`` from the first folder holding both
    files, else downloaded from ``spec.urls`` (verified by ``spec.checksums``)."""
    stems = IDX_FILES[split]
    looked: list[str] = []
    for d in candidate_dirs(spec, root):
        images, labels = (_find_idx(d, s) for s in stems)
        if images is not None and labels is not None:
            return _read_idx_pair(spec, images, labels)
        looked.append(str(d))
    if download and spec.urls:
        target = root if root is not None else cache_dir() / spec.name
        errors = []
        for base in spec.urls:
            try:
                paths = [
                    download_file(base + s + ".gz", target / (s + ".gz"), spec.checksums.get(s + ".gz"))
                    for s in stems
                ]
                return _read_idx_pair(spec, paths[0], paths[1])
            except (OSError, CorruptDatasetError) as exc:
                errors.append(f"{base}: {exc}")
        looked.append("download: " + "; ".join(errors))
    only = " (an explicit root is the only place looked)" if root is not None else ""
    raise DatasetNotFoundError(
        f"dataset {spec.name!r} ({split}) not found. Looked in: {', '.join(looked)}{only}. "
        f"{spec.help} Or pass root=DIR holding {', '.join(s + '.gz' for s in stems)}."
    )


def _read_idx_pair(spec: DatasetSpec, images_path: Path, labels_path: Path) -> ImageDataset:
    images = read_idx(images_path, expected_ndim=3)
    labels = read_idx(labels_path, expected_ndim=1)
    if images.shape[0] != labels.shape[0]:
        raise CorruptDatasetError(
            f"{images_path} has {images.shape[0]} images but {labels_path} has {labels.shape[0]} labels"
        )
    if images.shape[1:] != spec.image_shape[1:]:
        raise CorruptDatasetError(
            f"{images_path}: images of size {images.shape[1:]}, expected {spec.image_shape[1:]}"
        )
    return ImageDataset(
        torch.from_numpy(images.astype(np.uint8)).unsqueeze(1),
        torch.from_numpy(labels.astype(np.int64)),
        spec.name,
        spec.classes,
    )
