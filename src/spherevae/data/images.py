"""Datasets of image files: any image folder (class subfolders give labels) and
CelebA 64x64 (aligned JPEGs, centre crop 140 then resize; decoded once and cached as
``.npy``). Decoding uses Pillow, in threads.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Any

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

__all__ = [
    "IMAGE_SUFFIXES",
    "celeba_reader",
    "folder_reader",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


# Pixel modes whose values are not 8-bit, and the value of full scale in each: Pillow's own
# convert("L") clips them at 255 (a 16-bit image turns almost all white), so they are
# scaled to 0..255 first. "I" is how Pillow opens 16-bit PNGs in some versions.
_WIDE_MODES: dict[str, int] = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": 65535}
# Modes with no fixed range: refused by name (scaling by the file's own max would change
# each image's brightness).
_REFUSED_MODES: dict[str, str] = {"F": "32-bit float pixels"}
_GREY_MODES = ("L", "1", *_WIDE_MODES)


def _to_8bit(img: Any, path: Path) -> Any:
    """``img`` with wide pixel values (:data:`_WIDE_MODES`) scaled to an 8-bit ``L`` image."""
    from PIL import Image

    if img.mode in _REFUSED_MODES:
        raise CorruptDatasetError(f"{path}: pixel mode {img.mode!r} ({_REFUSED_MODES[img.mode]}) has "
                                  "no fixed range; save the images as 8- or 16-bit PNGs")
    full = _WIDE_MODES.get(img.mode)
    if full is None:
        return img
    arr = np.asarray(img).astype(np.float64)
    if arr.size and (arr.min() < 0 or arr.max() > full):
        raise CorruptDatasetError(f"{path}: pixel mode {img.mode!r} with values outside 0..{full}; "
                                  "save the images as 8- or 16-bit PNGs")
    return Image.fromarray(np.rint(arr * (255.0 / full)).astype(np.uint8), mode="L")


def _decode_square(path: Path, size: int, crop: int | None, mode: str) -> np.ndarray:
    """Decode, centre-crop (to ``crop`` or to the short side), resize to ``size``, ``(C, H, W)``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            img = _to_8bit(opened, path).convert(mode)
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


def _decode_into(paths: list[Path], out: np.ndarray, crop: int | None, mode: str) -> dict[int, str]:
    """Decode ``paths`` into ``out`` ``(N, C, size, size)`` uint8, in threads; returns
    index -> reason for the files that do not decode (their rows are left unset)."""
    from concurrent.futures import ThreadPoolExecutor

    def decode(i: int) -> str | None:
        try:
            out[i] = _decode_square(paths[i], out.shape[-1], crop, mode)
        except CorruptDatasetError as exc:
            return str(exc)
        return None

    # Pillow releases the GIL while decoding, so threads scale with cores.
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        reasons = list(pool.map(decode, range(len(paths))))
    return {i: r for i, r in enumerate(reasons) if r is not None}


def _empty_images(n: int, size: int, mode: str) -> np.ndarray:
    return np.empty((n, 1 if mode == "L" else 3, size, size), dtype=np.uint8)


def _decode_many(paths: list[Path], size: int, crop: int | None, mode: str) -> np.ndarray:
    """All of ``paths`` as ``(N, C, size, size)`` uint8; a file that does not decode is a
    :class:`CorruptDatasetError` naming it."""
    out = _empty_images(len(paths), size, mode)
    failed = _decode_into(paths, out, crop, mode)
    if failed:
        raise CorruptDatasetError(failed[min(failed)])
    return out


def _read_header(path: Path) -> tuple[str, tuple[int, int]] | None:
    """The image's ``(mode, (width, height))`` from its header, or None if it is not a
    readable image (garbage, empty, an unknown format)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.mode, img.size
    except (OSError, UnidentifiedImageError, ValueError):
        return None


def _in_test_split(relative: str, test_fraction: float) -> bool:
    """Deterministic split by a stable hash of the relative path (independent of file order)."""
    digest = hashlib.sha1(relative.encode(), usedforsecurity=False).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < test_fraction


def _infer_image_size(root: Path, sizes_of: dict[Path, tuple[int, int]]) -> int:
    """The side of the square images the folder's files become without resizing: the short
    side when every file has the same size (a centre crop for non-square ones)."""
    sizes: dict[tuple[int, int], Path] = {}
    for p, size in sizes_of.items():
        sizes.setdefault(size, p)
    if len(sizes) > 1:
        shown = ", ".join(f"{w}x{h} ({p.name})" for (w, h), p in list(sizes.items())[:4])
        raise ValueError(
            f"image folder {root} holds images of {len(sizes)} sizes ({shown}); set "
            "data.options.image_size to the side they should be centre-cropped and resized to"
        )
    (w, h), = sizes
    return min(w, h)


def _check_folder_options(image_size: object, test_fraction: object, greyscale: object) -> None:
    """One :class:`ValueError` per bad option, before any file is read."""
    if image_size is not None and (
        isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 4
    ):
        raise ValueError(f"option image_size must be an integer >= 4 or null, got {image_size!r}")
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
        raise ValueError(f"option test_fraction must lie in (0, 1), got {test_fraction!r}")
    if greyscale is not None and not isinstance(greyscale, bool):
        # YAML's `maybe` or `1` must not be taken as true: only the booleans.
        raise ValueError(
            f"option greyscale (data.options.greyscale) must be true, false or null (null: "
            f"greyscale when every image is), got {greyscale!r}"
        )


def _warn_skipped(root: Path, split: str, skipped: list[Path]) -> None:
    if skipped:
        shown = ", ".join(str(p) for p in skipped[:5]) + (", ..." if len(skipped) > 5 else "")
        warnings.warn(f"image folder {root} ({split} split): skipping {len(skipped)} file(s) that are not "
                      f"readable images: {shown}", stacklevel=5)  # load_dataset's caller


def _decode_split(root: Path, chosen: list[Path], size: int, mode: str, skipped: list[Path],
                  split: str) -> tuple[np.ndarray, list[Path]]:
    """The ``chosen`` files decoded ``(N, C, size, size)`` and the files kept; files whose
    header reads but whose data does not decode (truncated, damaged) are dropped and
    warned about with the header-unreadable ``skipped`` ones, in one warning."""
    images = _empty_images(len(chosen), size, mode)
    failed = _decode_into(chosen, images, None, mode)
    _warn_skipped(root, split, sorted(skipped + [chosen[i] for i in failed]))
    if failed:
        keep = [i for i in range(len(chosen)) if i not in failed]
        images, chosen = images[keep], [chosen[i] for i in keep]
    return images, chosen


def folder_reader(
    spec: DatasetSpec, split: str, root: Path | None, download: bool, *, image_size: int | None = None,
    test_fraction: float = 0.1, greyscale: bool | None = None,
) -> ImageDataset:
    """Images under ``root`` (class subfolders give labels). ``image_size=None`` keeps the
    files' own size (all files must share it); an integer centre-crops and resizes. Files
    that are not readable images (garbage, empty, truncated) are skipped with a warning
    naming them; a folder (or split) without a readable image is an error."""
    if root is None:
        raise ValueError("dataset 'folder' needs root=DIR (data.root in a config): a folder of images")
    _check_folder_options(image_size, test_fraction, greyscale)
    if not root.is_dir():
        raise DatasetNotFoundError(f"image folder {root} does not exist")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetNotFoundError(f"image folder {root} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    headers = {p: _read_header(p) for p in files}  # headers only: cheap
    skipped = [p for p in files if headers[p] is None]
    readable = {p: h for p, h in headers.items() if h is not None}
    if not readable:
        raise DatasetNotFoundError(f"image folder {root} holds no readable images: all {len(files)} "
                                   f"files fail to open, e.g. {files[0]}")
    refused = [(p, m) for p, (m, _) in readable.items() if m in _REFUSED_MODES]
    if refused:  # an error, not a skip: every file of such a folder would be dropped
        path, mode = refused[0]
        raise CorruptDatasetError(f"image folder {root}: {path} has pixel mode {mode!r} "
                                  f"({_REFUSED_MODES[mode]}), which has no fixed range "
                                  f"({len(refused)} such file(s)); save them as 8- or 16-bit PNGs")
    files = list(readable)
    if image_size is None:
        image_size = _infer_image_size(root, {p: size for p, (_, size) in readable.items()})
    subdirs = sorted({p.relative_to(root).parts[0] for p in files if len(p.relative_to(root).parts) > 1})
    labelled = bool(subdirs) and all(len(p.relative_to(root).parts) > 1 for p in files)
    if greyscale is None:
        # Greyscale only when every image is: one colour image makes the set RGB.
        greyscale = all(mode in _GREY_MODES for mode, _ in readable.values())
    def in_split(path: Path) -> bool:
        return _in_test_split(path.relative_to(root).as_posix(), test_fraction) == (split == "test")

    chosen = [p for p in files if in_split(p)]
    if not chosen:
        raise DatasetNotFoundError(f"image folder {root}: the {split} split is empty ({len(files)} images)")
    # Each split warns about its own unreadable files only: the two warnings add up.
    images, chosen = _decode_split(root, chosen, image_size, "L" if greyscale else "RGB",
                                   [p for p in skipped if in_split(p)], split)
    if not chosen:
        raise CorruptDatasetError(f"image folder {root}: no file of the {split} split decodes as an image")
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
