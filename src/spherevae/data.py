"""Datasets held in memory as uint8 and converted per batch.

Readers: the idx format (MNIST, Fashion-MNIST; ``.gz`` or raw), CIFAR-10's python
batches (the ``.tar.gz`` or its extracted folder, read with a restricted unpickler that
can only rebuild numpy arrays), CelebA 64x64 (aligned JPEGs, centre crop 140 then resize;
decoded once and cached as ``.npy``), any image folder, and scikit-learn's bundled
digits. Files are looked up, in order, at: an explicit ``root``, the
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
import io
import math
import os
import pickle
import tarfile
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from spherevae.rundir import atomic_open

__all__ = [
    "DATASETS",
    "BatchLoader",
    "CorruptDatasetError",
    "DatasetNotFoundError",
    "DatasetSpec",
    "ImageDataset",
    "UnsafePickleError",
    "cache_dir",
    "load_dataset",
    "read_idx",
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
    reader: Callable[..., ImageDataset]  # (split, root, download, **options)
    env_var: str | None = None
    system_dirs: tuple[str, ...] = ()
    urls: tuple[str, ...] = ()
    help: str = ""
    options: tuple[str, ...] = ()  # extra keyword options the reader accepts


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
    h = hashlib.md5(usedforsecurity=False)
    with atomic_open(dest, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
        for chunk in iter(lambda: resp.read(1 << 20), b""):
            h.update(chunk)
            out.write(chunk)
        if md5 is not None and h.hexdigest() != md5:
            raise CorruptDatasetError(f"{url}: checksum mismatch (expected MD5 {md5}); nothing kept")
    return dest


def _candidate_dirs(spec: DatasetSpec, root: Path | None) -> list[Path]:
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
        target = root if root is not None else cache_dir() / spec.name
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


def _no_root(name: str, root: Path | None) -> None:
    if root is not None:
        raise ValueError(f"dataset {name!r} is built in and reads no files, but root={str(root)!r} "
                         "was given (data.root): remove it")


def _digits_reader(split: str, root: Path | None, download: bool) -> ImageDataset:
    from sklearn.datasets import load_digits

    _no_root("digits", root)
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


# ---------------------------------------------------------------------- CIFAR-10

_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_TAR = "cifar-10-python.tar.gz"
_CIFAR_MD5 = "c58f30108f718f92721af3b95e74349a"
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

    def find_class(self, module: str, name: str):  # type: ignore[override]
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
            return lambda name, folder=folder: _read_bytes(folder / name)
    tar = directory / _CIFAR_TAR
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
            try:
                return f.read()  # type: ignore[union-attr]
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise CorruptDatasetError(f"{tar}: member {name} is truncated ({exc})") from exc

        return member
    return None


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise CorruptDatasetError(f"{path} is missing (incomplete CIFAR-10 folder)")
    return path.read_bytes()


def _cifar_reader(split: str, root: Path | None, download: bool) -> ImageDataset:
    spec = DATASETS["cifar10"]
    looked: list[str] = []
    member = None
    for d in _candidate_dirs(spec, root):
        member = _cifar_members(d)
        if member is not None:
            break
        looked.append(str(d))
    if member is None and download:
        target = root if root is not None else cache_dir() / spec.name
        try:
            download_file(spec.urls[0], target / _CIFAR_TAR, _CIFAR_MD5, timeout=120.0)
            member = _cifar_members(target)
        except (OSError, CorruptDatasetError) as exc:
            looked.append(f"download {spec.urls[0]}: {exc}")
    if member is None:
        raise DatasetNotFoundError(
            f"dataset 'cifar10' ({split}) not found. Looked in: {', '.join(looked)}. {spec.help}"
        )
    parts = [_cifar_batch(member(name), name) for name in _CIFAR_BATCHES[split]]
    meta = _safe_unpickle(member("batches.meta"), "batches.meta")
    names = meta.get(b"label_names") if isinstance(meta, dict) else None
    classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names) if names else spec.classes
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return ImageDataset(torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels), "cifar10", classes)


# ---------------------------------------------------------------- image folders

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def _decode_square(path: Path, size: int, crop: int | None, mode: str) -> np.ndarray:
    """Decode, centre-crop (to ``crop`` or to the short side), resize to ``size``, ``(C, H, W)``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert(mode)
            w, h = img.size
            side = min(w, h) if crop is None else min(crop, w, h)
            left, top = (w - side) // 2, (h - side) // 2
            img = img.crop((left, top, left + side, top + side))
            if side != size:
                img = img.resize((size, size), Image.Resampling.LANCZOS)
            arr = np.asarray(img, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise CorruptDatasetError(f"{path}: cannot be decoded as an image ({exc})") from exc
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _decode_many(paths: list[Path], size: int, crop: int | None, mode: str) -> np.ndarray:
    from concurrent.futures import ThreadPoolExecutor

    channels = 1 if mode == "L" else 3
    out = np.empty((len(paths), channels, size, size), dtype=np.uint8)
    # Pillow releases the GIL while decoding, so threads scale with cores.
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for i, arr in enumerate(pool.map(lambda p: _decode_square(p, size, crop, mode), paths)):
            out[i] = arr
    return out


def _image_mode(path: Path) -> str | None:
    """The image's mode from its header, or None if it is not a readable image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.mode
    except (OSError, UnidentifiedImageError, ValueError):
        return None


def _in_test_split(relative: str, test_fraction: float) -> bool:
    """Deterministic split by a stable hash of the relative path (independent of file order)."""
    digest = hashlib.sha1(relative.encode(), usedforsecurity=False).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < test_fraction


def _infer_image_size(root: Path, files: list[Path]) -> int:
    """The side of the square images the folder's files become without resizing: the short
    side when every file has the same size (a centre crop for non-square ones)."""
    from PIL import Image

    sizes: dict[tuple[int, int], Path] = {}
    for p in files:
        with Image.open(p) as img:  # reads the header only
            sizes.setdefault(img.size, p)
    if len(sizes) > 1:
        shown = ", ".join(f"{w}x{h} ({p.name})" for (w, h), p in list(sizes.items())[:4])
        raise ValueError(
            f"image folder {root} holds images of {len(sizes)} sizes ({shown}); set "
            "data.options.image_size to the side they should be centre-cropped and resized to"
        )
    (w, h), = sizes
    return min(w, h)


def _folder_reader(
    split: str, root: Path | None, download: bool, *, image_size: int | None = None,
    test_fraction: float = 0.1, greyscale: bool | None = None,
) -> ImageDataset:
    """Images under ``root`` (class subfolders give labels). ``image_size=None`` keeps the
    files' own size (all files must share it); an integer centre-crops and resizes."""
    if root is None:
        raise ValueError("dataset 'folder' needs root=DIR (data.root in a config): a folder of images")
    if not root.is_dir():
        raise DatasetNotFoundError(f"image folder {root} does not exist")
    if image_size is not None and (not isinstance(image_size, int) or image_size < 4):
        raise ValueError(f"option image_size must be an integer >= 4 or null, got {image_size!r}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"option test_fraction must lie in (0, 1), got {test_fraction!r}")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES)
    if not files:
        raise DatasetNotFoundError(f"image folder {root} holds no images ({', '.join(_IMAGE_SUFFIXES)})")
    if image_size is None:
        image_size = _infer_image_size(root, files)
    subdirs = sorted({p.relative_to(root).parts[0] for p in files if len(p.relative_to(root).parts) > 1})
    labelled = bool(subdirs) and all(len(p.relative_to(root).parts) > 1 for p in files)
    modes = {p: _image_mode(p) for p in files}  # reads headers only
    unreadable = [p for p, mode in modes.items() if mode is None]
    if unreadable:
        warnings.warn(f"image folder {root}: skipping {len(unreadable)} file(s) that are not "
                      f"readable images, e.g. {unreadable[0]}", stacklevel=3)
        files = [p for p in files if modes[p] is not None]
        if not files:
            raise DatasetNotFoundError(f"image folder {root} holds no readable images")
    if greyscale is None:
        # Greyscale only when every image is: one colour image makes the set RGB.
        greyscale = all(modes[p] in ("L", "1", "I;16") for p in files)
    chosen = [p for p in files if _in_test_split(p.relative_to(root).as_posix(), test_fraction) == (split == "test")]
    if not chosen:
        raise DatasetNotFoundError(f"image folder {root}: the {split} split is empty ({len(files)} images)")
    images = _decode_many(chosen, image_size, None, "L" if greyscale else "RGB")
    labels = classes = None
    if labelled:
        index = {name: i for i, name in enumerate(subdirs)}
        labels = torch.tensor([index[p.relative_to(root).parts[0]] for p in chosen], dtype=torch.int64)
        classes = tuple(subdirs)
    return ImageDataset(torch.from_numpy(images), labels, f"folder:{root.name}", classes)


# ---------------------------------------------------------------------- CelebA 64

_CELEBA_CROP = 140  # the usual CelebA-64 crop: the face region of the 178x218 aligned images
_CELEBA_PARTITION = {"train": "0", "test": "2"}  # 1 = validation, unused


def _celeba_source(directory: Path) -> Path | None:
    for folder in (directory / "img_align_celeba", directory):
        partition = (folder / "list_eval_partition.txt").is_file() or (
            folder.parent / "list_eval_partition.txt"
        ).is_file()
        # With the partition file the JPEGs may be gone once the decoded cache exists.
        if folder.is_dir() and (any(folder.glob("*.jpg")) or (partition and folder.name == "img_align_celeba")):
            return folder
    return None


def _celeba_files(folder: Path, split: str) -> list[Path]:
    partition = None
    for candidate in (folder / "list_eval_partition.txt", folder.parent / "list_eval_partition.txt"):
        if candidate.is_file():
            partition = candidate
            break
    if partition is not None:
        names = []
        for line_no, line in enumerate(partition.read_text().splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise CorruptDatasetError(f"{partition}:{line_no}: expected '<file> <0|1|2>', got {line!r}")
            if parts[1] == _CELEBA_PARTITION[split]:
                names.append(parts[0])
        return [folder / n for n in names]
    # No official partition: sorted names, the last 10% are the test set.
    files = sorted(folder.glob("*.jpg"))
    cut = len(files) - max(1, len(files) // 10)
    return files[:cut] if split == "train" else files[cut:]


def _celeba_reader(split: str, root: Path | None, download: bool) -> ImageDataset:
    spec = DATASETS["celeba64"]
    looked = []
    for d in _candidate_dirs(spec, root):
        folder = _celeba_source(d)
        if folder is None:
            looked.append(str(d))
            continue
        files = _celeba_files(folder, split)
        if not files:
            raise CorruptDatasetError(f"{folder}: the {split} partition is empty")
        key = hashlib.sha1(
            f"{folder.resolve()}|{split}|{len(files)}|{files[0].name}|{files[-1].name}|{_CELEBA_CROP}".encode(),
            usedforsecurity=False,
        ).hexdigest()[:16]
        cached = cache_dir() / "celeba64" / f"{split}-{key}.npy"
        images = _load_cached_array(cached, (len(files), 3, 64, 64))
        if images is None:
            missing = [f for f in files if not f.is_file()]
            if missing:
                raise CorruptDatasetError(
                    f"{folder}: {len(missing)} images of the partition file are missing, e.g. {missing[0].name}"
                )
            images = _decode_many(files, 64, _CELEBA_CROP, "RGB")
            _save_array_atomic(cached, images)
        return ImageDataset(torch.from_numpy(images), None, "celeba64", None)
    raise DatasetNotFoundError(
        f"dataset 'celeba64' ({split}) not found. Looked in: {', '.join(looked)}. {spec.help}"
    )


def _load_cached_array(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    if not path.is_file():
        return None
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None  # a damaged cache is rebuilt, not trusted
    return arr if arr.shape == shape and arr.dtype == np.uint8 else None


def _save_array_atomic(path: Path, arr: np.ndarray) -> None:
    with atomic_open(path, "wb") as f:
        np.save(f, arr, allow_pickle=False)


def _synthetic_reader(
    split: str, root: Path | None, download: bool, *, image_shape: tuple[int, ...] | list[int] = (3, 32, 32),
    train_size: int = 50_000, test_size: int = 10_000, seed: int = 0,
) -> ImageDataset:
    """Uniform-noise uint8 images with random labels: for benchmarks and smoke tests of a
    dataset's *shape* (a step costs the same whatever the pixels are). Deterministic."""
    _no_root("synthetic", root)
    shape = tuple(int(v) for v in image_shape)
    if len(shape) != 3 or shape[0] not in (1, 3) or min(shape[1:]) < 4:
        raise ValueError(f"option image_shape must be (C in {{1, 3}}, H >= 4, W >= 4), got {image_shape!r}")
    size = train_size if split == "train" else test_size
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"option {split}_size must be an integer >= 1, got {size!r}")
    g = torch.Generator().manual_seed(seed * 2 + (split == "test"))
    images = torch.randint(0, 256, (size, *shape), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 10, (size,), generator=g)
    return ImageDataset(images, labels, "synthetic", tuple(str(i) for i in range(10)))


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
    "cifar10": DatasetSpec(
        "cifar10", (3, 32, 32),
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        _cifar_reader,
        env_var="SPHEREVAE_CIFAR10_DIR",
        system_dirs=("/usr/share/datasets/cifar10",),
        urls=("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
        help="Get cifar-10-python.tar.gz (CIFAR-10 python version) from "
        "https://www.cs.toronto.edu/~kriz/cifar.html and pass root=DIR holding it (or its "
        "extracted cifar-10-batches-py/).",
    ),
    "celeba64": DatasetSpec(
        "celeba64", (3, 64, 64), (), _celeba_reader,
        env_var="SPHEREVAE_CELEBA_DIR",
        help="CelebA cannot be downloaded automatically (Google Drive). Get img_align_celeba.zip "
        "and list_eval_partition.txt from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html, unzip "
        "into DIR (DIR/img_align_celeba/*.jpg) and pass root=DIR or set SPHEREVAE_CELEBA_DIR.",
    ),
    "folder": DatasetSpec(
        "folder", (3, 64, 64), (), _folder_reader,
        help="Pass root=DIR: class subfolders of images (labelled) or images directly.",
        options=("image_size", "test_fraction", "greyscale"),
    ),
    "synthetic": DatasetSpec(
        "synthetic", (3, 32, 32), tuple(str(i) for i in range(10)), _synthetic_reader,
        help="Noise images of a given shape, for benchmarks (always available).",
        options=("image_shape", "train_size", "test_size", "seed"),
    ),
    "digits": DatasetSpec(
        "digits", (1, 8, 8), tuple(str(i) for i in range(10)), _digits_reader,
        help="scikit-learn's bundled digits (always available).",
    ),
}


def load_dataset(
    name: str, split: str = "train", *, root: str | os.PathLike[str] | None = None,
    download: bool = True, **options: object,
) -> ImageDataset:
    """Load split ``"train"`` or ``"test"`` of a registered dataset (see :data:`DATASETS`).

    ``options`` go to the reader (``folder``: ``image_size``, ``test_fraction``, ``greyscale``).
    """
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {sorted(DATASETS)}, got {name!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    spec = DATASETS[name]
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise ValueError(
            f"dataset {name!r} does not take option(s) {unknown}; allowed: {list(spec.options) or 'none'}"
        )
    return spec.reader(split, Path(root) if root is not None else None, download, **options)


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
