"""Datasets held in memory as uint8 and converted per batch: the dataset registry.

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

Layout: :mod:`~spherevae.data.base` (ImageDataset, DatasetSpec, errors, lookup,
downloads), one module per format (:mod:`~spherevae.data.idx`,
:mod:`~spherevae.data.cifar`, :mod:`~spherevae.data.images`,
:mod:`~spherevae.data.builtin`), :mod:`~spherevae.data.loader` (BatchLoader), and here
the registry :data:`DATASETS`, :func:`register_dataset` and :func:`load_dataset`.
Adding a dataset: write ``reader(spec, split, root, download, **options)`` and
``register_dataset(DatasetSpec(name, image_shape, classes, reader, ...))``.
In-memory data (tensors, arrays, a ``Dataset`` or ``DataLoader``) becomes a
:class:`~spherevae.data.tensors.TensorData` (:func:`as_tensor_data`), and
:mod:`~spherevae.data.fingerprint` identifies the data a run was trained on.

Layer 2: imports only :mod:`spherevae.io` and :mod:`spherevae._utils`.
"""

from __future__ import annotations

import os
from pathlib import Path

from spherevae.data.base import (
    SPLITS,
    CorruptDatasetError,
    DatasetNotFoundError,
    DatasetSpec,
    ImageDataset,
    UnsafePickleError,
    cache_dir,
    download_file,
)
from spherevae.data.builtin import digits_reader, synthetic_reader
from spherevae.data.cifar import CIFAR_TAR, cifar_reader
from spherevae.data.fingerprint import FINGERPRINT_SAMPLE, check_fingerprint, data_fingerprint
from spherevae.data.idx import idx_reader, read_idx
from spherevae.data.images import celeba_reader, folder_reader
from spherevae.data.loader import BatchLoader
from spherevae.data.tensors import TensorData, as_tensor_data, check_same_scale

__all__ = [
    "DATASETS",
    "FINGERPRINT_SAMPLE",
    "BatchLoader",
    "CorruptDatasetError",
    "DatasetNotFoundError",
    "DatasetSpec",
    "ImageDataset",
    "TensorData",
    "UnsafePickleError",
    "as_tensor_data",
    "cache_dir",
    "check_fingerprint",
    "check_same_scale",
    "data_fingerprint",
    "download_file",
    "load_dataset",
    "read_idx",
    "register_dataset",
]

_FMNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

_DIGITS = tuple(str(i) for i in range(10))

DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        "mnist", (1, 28, 28), _DIGITS, idx_reader,
        env_var="SPHEREVAE_MNIST_DIR",
        system_dirs=("/usr/share/datasets/mnist",),
        urls=("https://ossci-datasets.s3.amazonaws.com/mnist/",),
        help="Download the four MNIST .gz files from https://yann.lecun.com/exdb/mnist/.",
        checksums={  # official MD5 sums of the gzipped files
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
    ),
    "fashion-mnist": DatasetSpec(
        "fashion-mnist", (1, 28, 28), _FMNIST_CLASSES, idx_reader,
        env_var="SPHEREVAE_FASHION_MNIST_DIR",
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        urls=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        help="On Debian: apt-get install dataset-fashion-mnist.",
        checksums={
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
    ),
    "cifar10": DatasetSpec(
        "cifar10", (3, 32, 32),
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        cifar_reader,
        env_var="SPHEREVAE_CIFAR10_DIR",
        system_dirs=("/usr/share/datasets/cifar10",),
        urls=("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
        help="Get cifar-10-python.tar.gz (CIFAR-10 python version) from "
        "https://www.cs.toronto.edu/~kriz/cifar.html and pass root=DIR holding it (or its "
        "extracted cifar-10-batches-py/).",
        checksums={CIFAR_TAR: "c58f30108f718f92721af3b95e74349a"},
    ),
    "celeba64": DatasetSpec(
        "celeba64", (3, 64, 64), (), celeba_reader,
        env_var="SPHEREVAE_CELEBA_DIR",
        help="CelebA cannot be downloaded automatically (Google Drive). Get img_align_celeba.zip "
        "and list_eval_partition.txt from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html, unzip "
        "into DIR (DIR/img_align_celeba/*.jpg) and pass root=DIR or set SPHEREVAE_CELEBA_DIR.",
    ),
    "folder": DatasetSpec(
        "folder", (3, 64, 64), (), folder_reader,
        help="Pass root=DIR: class subfolders of images (labelled) or images directly.",
        options=("image_size", "test_fraction", "greyscale"),
    ),
    "synthetic": DatasetSpec(
        "synthetic", (3, 32, 32), _DIGITS, synthetic_reader,
        help="Noise images of a given shape, for benchmarks (always available).",
        options=("image_shape", "train_size", "test_size", "seed"),
    ),
    "digits": DatasetSpec(
        "digits", (1, 8, 8), _DIGITS, digits_reader,
        help="scikit-learn's bundled digits (always available).",
    ),
}


def register_dataset(spec: DatasetSpec) -> None:
    """Add ``spec`` to :data:`DATASETS` under ``spec.name``; configs (``data.name``),
    :func:`load_dataset`, training and evaluation then accept it."""
    if not isinstance(spec, DatasetSpec):
        raise TypeError(f"spec must be a DatasetSpec, got {type(spec).__name__}")
    if spec.name in DATASETS:
        raise ValueError(f"dataset {spec.name!r} is already registered; choose another name")
    if not callable(spec.reader):
        raise TypeError(f"DatasetSpec.reader of {spec.name!r} must be callable")
    DATASETS[spec.name] = spec


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
    return spec.reader(spec, split, Path(root) if root is not None else None, download, **options)
