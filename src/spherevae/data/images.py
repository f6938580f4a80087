"""Datasets of image files: any image folder (class subfolders give labels) and
CelebA 64x64 (aligned JPEGs, centre crop 140 then resize; decoded once and cached as
``.npy``). Decoding uses Pillow, in threads.
"""

from __future__ import annotations

import hashlib
import os
import warnings
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
    load_cached_array,
    save_array_atomic,
)

__all__ = ["IMAGE_SUFFIXES", "celeba_reader", "folder_reader"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def _decode_square(path: Path, size: int, crop: int | None, mode: str) -> np.ndarray:
    """Decode, centre-crop (to ``crop`` or to the short side), resize to ``size``, ``(C, H, W)``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            img = opened.convert(mode)
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


def folder_reader(
    spec: DatasetSpec, split: str, root: Path | None, download: bool, *, image_size: int | None = None,
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
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetNotFoundError(f"image folder {root} holds no images ({', '.join(IMAGE_SUFFIXES)})")
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


def celeba_reader(spec: DatasetSpec, split: str, root: Path | None, download: bool) -> ImageDataset:
    """Images ``(N, 3, 64, 64)`` of the official partition (else the last 10% of the sorted
    names are the test set); no labels. Decoded once per folder and split, then cached."""
    looked = []
    for d in candidate_dirs(spec, root):
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
        cached = cache_dir() / spec.name / f"{split}-{key}.npy"
        images = load_cached_array(cached, (len(files), 3, 64, 64))
        if images is None:
            missing = [f for f in files if not f.is_file()]
            if missing:
                raise CorruptDatasetError(
                    f"{folder}: {len(missing)} images of the partition file are missing, e.g. {missing[0].name}"
                )
            images = _decode_many(files, 64, _CELEBA_CROP, "RGB")
            save_array_atomic(cached, images)
        return ImageDataset(torch.from_numpy(images), None, spec.name, None)
    raise DatasetNotFoundError(
        f"dataset {spec.name!r} ({split}) not found. Looked in: {', '.join(looked)}. {spec.help}"
    )
