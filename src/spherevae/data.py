"""Datasets held in memory as uint8 and converted per batch.

Readers for the idx format (MNIST, Fashion-MNIST; ``.gz`` or raw) and scikit-learn's
bundled digits. Files are looked up, in order, at: an explicit ``root``, the
per-dataset environment variable (e.g. ``SPHEREVAE_FASHION_MNIST_DIR``),
``$SPHEREVAE_DATA_DIR/<name>``, the cache directory
(``$XDG_CACHE_HOME/spherevae/<name>`` or ``~/.cache/spherevae/<name>``), then known
system locations (Debian's ``dataset-fashion-mnist`` package), then a download
from the official source verified by MD5 (``download=True``). When nothing works,
one :class:`DatasetNotFoundError` lists every place looked at and how to get the data.
Corrupt files (bad magic number, wrong size, checksum mismatch) raise
:class:`CorruptDatasetError`, never garbage tensors.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "DATASETS",
    "BatchLoader",
    "CorruptDatasetError",
    "DatasetNotFoundError",
    "DatasetSpec",
    "ImageDataset",
    "cache_dir",
    "load_dataset",
    "read_idx",
]

SPLITS = ("train", "test")


class DatasetNotFoundError(FileNotFoundError):
    """No copy of a dataset was found and none could be downloaded."""


class CorruptDatasetError(ValueError):
    """A dataset file exists but is not what it should be."""


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
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "spherevae"


# ---------------------------------------------------------------------------- idx


_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


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


@dataclass(frozen=True)
class _RemoteFile:
    name: str
    md5: str


@dataclass(frozen=True)
class DatasetSpec:
    """How to find and read one dataset."""

    name: str
    image_shape: tuple[int, int, int]
    classes: tuple[str, ...]
    reader: Callable[[str, Path | None, bool], ImageDataset]
    env_var: str | None = None
    system_dirs: tuple[str, ...] = ()
    urls: tuple[str, ...] = ()
    help: str = ""


_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# Official MD5 sums of the gzipped files.
_MD5 = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}


def _md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download_file(url: str, dest: Path, md5: str | None, *, timeout: float = 30.0) -> Path:
    """Download ``url`` to ``dest`` via a temp file; verify ``md5``; leave nothing on failure."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            shutil.copyfileobj(resp, out)
        if md5 is not None and _md5(Path(tmp)) != md5:
            raise CorruptDatasetError(f"{url}: checksum mismatch (expected MD5 {md5}); nothing kept")
        os.replace(tmp, dest)
        return dest
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _candidate_dirs(spec: DatasetSpec, root: Path | None) -> list[Path]:
    dirs: list[Path] = []
    if root is not None:
        dirs.append(Path(root))
    if spec.env_var and os.environ.get(spec.env_var):
        dirs.append(Path(os.environ[spec.env_var]))
    if os.environ.get("SPHEREVAE_DATA_DIR"):
        dirs.append(Path(os.environ["SPHEREVAE_DATA_DIR"]) / spec.name)
    dirs.append(cache_dir() / spec.name)
    dirs.extend(Path(d) for d in spec.system_dirs)
    return dirs


def _find_idx(directory: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def _idx_reader(split: str, root: Path | None, download: bool, *, spec_name: str) -> ImageDataset:
    spec = DATASETS[spec_name]
    stems = _IDX_FILES[split]
    looked: list[str] = []
    for d in _candidate_dirs(spec, root):
        found = [_find_idx(d, s) for s in stems]
        if all(found):
            return _read_idx_pair(spec, found[0], found[1])  # type: ignore[arg-type]
        looked.append(str(d))
    if download and spec.urls:
        target = cache_dir() / spec.name
        errors = []
        for base in spec.urls:
            try:
                paths = [
                    download_file(base + s + ".gz", target / (s + ".gz"), _MD5[spec.name][s + ".gz"])
                    for s in stems
                ]
                return _read_idx_pair(spec, paths[0], paths[1])
            except (OSError, CorruptDatasetError) as exc:
                errors.append(f"{base}: {exc}")
        looked.append("download: " + "; ".join(errors))
    raise DatasetNotFoundError(
        f"dataset {spec.name!r} ({split}) not found. Looked in: {', '.join(looked)}. "
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


def _digits_reader(split: str, root: Path | None, download: bool) -> ImageDataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    # Deterministic split: a fixed permutation, the last 20% are the test set.
    perm = np.random.default_rng(0).permutation(images.shape[0])
    cut = int(0.8 * images.shape[0])
    idx = perm[:cut] if split == "train" else perm[cut:]
    return ImageDataset(
        torch.from_numpy(images[idx]),
        torch.from_numpy(bunch.target[idx].astype(np.int64)),
        "digits",
        tuple(str(i) for i in range(10)),
    )


_FMNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        "mnist", (1, 28, 28), tuple(str(i) for i in range(10)),
        lambda s, r, d: _idx_reader(s, r, d, spec_name="mnist"),
        env_var="SPHEREVAE_MNIST_DIR",
        system_dirs=("/usr/share/datasets/mnist",),
        urls=("https://ossci-datasets.s3.amazonaws.com/mnist/",),
        help="Download the four MNIST .gz files from https://yann.lecun.com/exdb/mnist/.",
    ),
    "fashion-mnist": DatasetSpec(
        "fashion-mnist", (1, 28, 28), _FMNIST_CLASSES,
        lambda s, r, d: _idx_reader(s, r, d, spec_name="fashion-mnist"),
        env_var="SPHEREVAE_FASHION_MNIST_DIR",
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        urls=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        help="On Debian: apt-get install dataset-fashion-mnist.",
    ),
    "digits": DatasetSpec(
        "digits", (1, 8, 8), tuple(str(i) for i in range(10)), _digits_reader,
        help="scikit-learn's bundled digits (always available).",
    ),
}


def load_dataset(
    name: str, split: str = "train", *, root: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> ImageDataset:
    """Load split ``"train"`` or ``"test"`` of a registered dataset (see :data:`DATASETS`)."""
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {sorted(DATASETS)}, got {name!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    return DATASETS[name].reader(split, Path(root) if root is not None else None, download)


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
            x = self._images[sel].to(self.device, non_blocking=True).float().div_(255.0)
            y = None if self._labels is None else self._labels[sel].to(self.device, non_blocking=True)
            yield x, y
