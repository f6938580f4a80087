"""What every dataset reader shares: the in-memory :class:`ImageDataset`, the
:class:`DatasetSpec` that registers a reader, the errors, where files are looked for,
verified downloads and the decoded-array cache.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from spherevae.io.files import atomic_open

__all__ = [
    "SPLITS",
    "CorruptDatasetError",
    "DatasetNotFoundError",
    "DatasetSpec",
    "ImageDataset",
    "UnsafePickleError",
    "cache_dir",
    "candidate_dirs",
    "download_file",
    "load_cached_array",
    "no_root",
    "save_array_atomic",
]

SPLITS = ("train", "test")


class DatasetNotFoundError(FileNotFoundError):
    """No copy of a dataset was found and none could be downloaded."""


class CorruptDatasetError(ValueError):
    """A dataset file exists but is not what it should be."""


class UnsafePickleError(CorruptDatasetError):
    """A pickle asked for something other than the numpy arrays a dataset file holds."""


@dataclass(frozen=True)
class ImageDataset:
    """Images ``uint8 (N, C, H, W)``, labels ``int64 (N,)`` or None."""

    images: torch.Tensor
    labels: torch.Tensor | None
    name: str
    classes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(
                f"ImageDataset.images must be a uint8 tensor (N, C, H, W), got dtype "
                f"{self.images.dtype} and shape {tuple(self.images.shape)}"
            )
        if self.labels is not None and (
            self.labels.dtype != torch.int64 or self.labels.shape != (self.images.shape[0],)
        ):
            raise ValueError(
                f"ImageDataset.labels must be int64 of shape ({self.images.shape[0]},), got "
                f"{self.labels.dtype} {tuple(self.labels.shape)}"
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/spherevae`` or ``~/.cache/spherevae``: downloads and decoded caches."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "spherevae"


@dataclass(frozen=True)
class DatasetSpec:
    """How to find and read one dataset (an entry of :data:`spherevae.data.DATASETS`).

    ``reader(spec, split, root, download, **options) -> ImageDataset`` gets its own spec,
    so one reader serves every dataset of a format (the idx reader: MNIST and
    Fashion-MNIST). ``split`` is ``"train"`` or ``"test"``; ``root`` an explicit folder or
    ``None`` (then :func:`candidate_dirs` says where to look); ``options`` are the keyword
    options listed in ``options`` (``data.options`` in a config).
    """

    name: str
    image_shape: tuple[int, int, int]
    classes: tuple[str, ...]
    reader: Callable[..., ImageDataset]  # (spec, split, root, download, **options)
    env_var: str | None = None
    system_dirs: tuple[str, ...] = ()
    urls: tuple[str, ...] = ()
    help: str = ""
    options: tuple[str, ...] = ()  # extra keyword options the reader accepts
    checksums: Mapping[str, str] = field(default_factory=dict)  # file name -> official MD5


def download_file(url: str, dest: Path, md5: str | None, *, timeout: float = 30.0) -> Path:
    """Download ``url`` to ``dest`` via a temp file; verify ``md5``; leave nothing on failure.
    Without ``md5`` (a registered dataset whose ``checksums`` lack the file) it warns that
    the download is not verified."""
    if md5 is None:
        warnings.warn(f"{url}: no MD5 checksum is registered for this file, so the download "
                      "is not verified (add it to DatasetSpec.checksums)", stacklevel=2)
    h = hashlib.md5(usedforsecurity=False)
    with atomic_open(dest, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
        for chunk in iter(lambda: resp.read(1 << 20), b""):
            h.update(chunk)
            out.write(chunk)
        if md5 is not None and h.hexdigest() != md5:
            raise CorruptDatasetError(f"{url}: checksum mismatch (expected MD5 {md5}); nothing kept")
    return dest


def candidate_dirs(spec: DatasetSpec, root: Path | None) -> list[Path]:
    """The folders looked in, in order: an explicit ``root`` alone, else the
    environment variable, ``$SPHEREVAE_DATA_DIR/<name>``, the cache, system folders."""
    if root is not None:
        # An explicit root is the only place looked: falling back to another copy would
        # train on data the user did not point at, and record a root that does not hold it.
        return [Path(root)]
    dirs: list[Path] = []
    if spec.env_var and os.environ.get(spec.env_var):
        dirs.append(Path(os.environ[spec.env_var]))
    if os.environ.get("SPHEREVAE_DATA_DIR"):
        dirs.append(Path(os.environ["SPHEREVAE_DATA_DIR"]) / spec.name)
    dirs.append(cache_dir() / spec.name)
    dirs.extend(Path(d) for d in spec.system_dirs)
    return dirs


def no_root(name: str, root: Path | None) -> None:
    """Built-in datasets read no files: a ``root`` would be silently ignored, so refuse it."""
    if root is not None:
        raise ValueError(f"dataset {name!r} is built in and reads no files, but root={str(root)!r} "
                         "was given (data.root): remove it")


def load_cached_array(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """The uint8 array cached at ``path`` if it has ``shape``, else ``None`` (rebuild it)."""
    if not path.is_file():
        return None
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None  # a damaged cache is rebuilt, not trusted
    return arr if arr.shape == shape and arr.dtype == np.uint8 else None


def save_array_atomic(path: Path, arr: np.ndarray) -> None:
    with atomic_open(path, "wb") as f:
        np.save(f, arr, allow_pickle=False)
