"""CIFAR-10's python batches (the ``.tar.gz`` or its extracted folder), read with a
restricted unpickler that can only rebuild numpy arrays: a malicious or corrupt file
raises :class:`~spherevae.data.UnsafePickleError` instead of running code.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from spherevae.data.base import (
    CorruptDatasetError,
    DatasetNotFoundError,
    DatasetSpec,
    ImageDataset,
    UnsafePickleError,
    cache_dir,
    candidate_dirs,
    download_file,
)

__all__ = [
    "CIFAR_TAR",
    "cifar_reader",
]

_CIFAR_DIR = "cifar-10-batches-py"
CIFAR_TAR = "cifar-10-python.tar.gz"
_CIFAR_BATCHES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
# The only globals a CIFAR batch needs: numpy's array reconstruction (both module paths,
# numpy 1 and 2) and, for pickles written by Python 3 of bytes, codecs.encode.
_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("codecs", "encode"),
    ("_codecs", "encode"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles plain data and numpy arrays; any other global raises, so a malicious
    or corrupt file cannot run code."""

    def find_class(self, module: str, name: str):
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise UnsafePickleError(f"refusing to unpickle global {module}.{name}: not a numpy array")


def _safe_unpickle(raw: bytes, source: str) -> object:
    try:
        return _RestrictedUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"{source}: {exc}") from None
    except Exception as exc:  # truncated or not a pickle at all
        raise CorruptDatasetError(f"{source}: not a readable CIFAR-10 batch ({type(exc).__name__}: {exc})") from exc


def _cifar_batch(raw: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    obj = _safe_unpickle(raw, source)
    if not isinstance(obj, dict):
        raise CorruptDatasetError(f"{source}: expected a dict, got {type(obj).__name__}")
    data, labels = obj.get(b"data", obj.get("data")), obj.get(b"labels", obj.get("labels"))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        raise CorruptDatasetError(f"{source}: 'data' must be uint8 of shape (N, 3072), got {shape}")
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (data.shape[0],) or (labels.size and (labels.min() < 0 or labels.max() > 9)):
        raise CorruptDatasetError(f"{source}: 'labels' must be {data.shape[0]} values in 0..9")
    # Rows are 1024 red, 1024 green, 1024 blue values, each a 32x32 image in row-major order.
    return data.reshape(-1, 3, 32, 32), labels


def _cifar_members(directory: Path) -> Callable[[str], bytes] | None:
    """A reader of batch files by name from ``directory``: the extracted folder or the tar.gz."""
    for folder in (directory / _CIFAR_DIR, directory):
        if (folder / "data_batch_1").is_file() or (folder / "test_batch").is_file():
            def read(name: str, folder: Path = folder) -> bytes:
                return _read_bytes(folder / name)

            return read
    tar = directory / CIFAR_TAR
    if tar.is_file():
        try:
            archive = tarfile.open(tar, "r:gz")
            names = {Path(m.name).name: m for m in archive.getmembers() if m.isfile()}
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise CorruptDatasetError(f"{tar}: truncated or not a tar.gz ({exc})") from exc

        def member(name: str) -> bytes:
            if name not in names:
                raise CorruptDatasetError(f"{tar}: no member {name}")
            f = archive.extractfile(names[name])
            assert f is not None  # names holds regular files only
            try:
                return f.read()
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise CorruptDatasetError(f"{tar}: member {name} is truncated ({exc})") from exc

        return member
    return None


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise CorruptDatasetError(f"{path} is missing (incomplete CIFAR-10 folder)")
    return path.read_bytes()


def cifar_reader(spec: DatasetSpec, split: str, root: Path | None, download: bool) -> ImageDataset:
    """Images ``(N, 3, 32, 32)``, labels and class names (from ``batches.meta``) of ``split``."""
    looked: list[str] = []
    member = None
    for d in candidate_dirs(spec, root):
        member = _cifar_members(d)
        if member is not None:
            break
        looked.append(str(d))
    if member is None and download:
        target = root if root is not None else cache_dir() / spec.name
        try:
            download_file(spec.urls[0], target / CIFAR_TAR, spec.checksums.get(CIFAR_TAR), timeout=120.0)
            member = _cifar_members(target)
        except (OSError, CorruptDatasetError) as exc:
            looked.append(f"download {spec.urls[0]}: {exc}")
    if member is None:
        raise DatasetNotFoundError(
            f"dataset {spec.name!r} ({split}) not found. Looked in: {', '.join(looked)}. {spec.help}"
        )
    parts = [_cifar_batch(member(name), name) for name in _CIFAR_BATCHES[split]]
    meta = _safe_unpickle(member("batches.meta"), "batches.meta")
    names = meta.get(b"label_names") if isinstance(meta, dict) else None
    classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names) if names else spec.classes
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return ImageDataset(torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels), spec.name, classes)
