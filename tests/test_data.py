"""Dataset readers on small files written in the real formats, lookup order, loader."""

import gzip
import hashlib
import http.server
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from spherevae.data import (
    BatchLoader,
    CorruptDatasetError,
    DatasetNotFoundError,
    ImageDataset,
    download_file,
    load_dataset,
    read_idx,
)


def _write_idx(path: Path, array: np.ndarray, *, gz: bool) -> Path:
    code = {np.dtype(np.uint8): 0x08}[array.dtype]
    header = bytes([0, 0, code, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    data = header + array.tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


def _write_fmnist(directory: Path, n: int = 7, *, gz: bool = True, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    directory.mkdir(parents=True, exist_ok=True)
    for _split, prefix in (("train", "train"), ("test", "t10k")):
        _write_idx(directory / f"{prefix}-images-idx3-ubyte", images, gz=gz)
        _write_idx(directory / f"{prefix}-labels-idx1-ubyte", labels, gz=gz)
    return images, labels


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    # No dataset may leak in from the machine's cache or env in these tests.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for var in ("SPHEREVAE_DATA_DIR", "SPHEREVAE_FASHION_MNIST_DIR", "SPHEREVAE_MNIST_DIR"):
        monkeypatch.delenv(var, raising=False)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip_exact(tmp_path, gz):
    images, labels = _write_fmnist(tmp_path / "d", gz=gz)
    ds = load_dataset("mnist", "test", root=tmp_path / "d", download=False)
    assert ds.images.shape == (7, 1, 28, 28) and ds.images.dtype == torch.uint8
    assert torch.equal(ds.images[:, 0], torch.from_numpy(images))
    assert torch.equal(ds.labels, torch.from_numpy(labels.astype(np.int64)))


def test_bad_magic_truncated_and_mismatched(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(b"\x01\x02\x03\x04" + b"\x00" * 20)
    with pytest.raises(CorruptDatasetError, match="magic"):
        read_idx(p)
    good = _write_idx(tmp_path / "y", np.zeros((3, 28, 28), np.uint8), gz=False)
    good.write_bytes(good.read_bytes()[:-5])
    with pytest.raises(CorruptDatasetError, match="truncated or corrupt"):
        read_idx(good)
    d = tmp_path / "d"
    _write_fmnist(d)
    _write_idx(d / "t10k-labels-idx1-ubyte", np.zeros(3, np.uint8), gz=True)
    with pytest.raises(CorruptDatasetError, match="7 images but"):
        load_dataset("fashion-mnist", "test", root=d, download=False)


def test_lookup_order_root_beats_env_beats_cache(tmp_path, monkeypatch):
    _write_fmnist(tmp_path / "root", n=3)
    _write_fmnist(tmp_path / "env", n=4)
    _write_fmnist(tmp_path / "cache" / "spherevae" / "fashion-mnist", n=5)
    monkeypatch.setenv("SPHEREVAE_FASHION_MNIST_DIR", str(tmp_path / "env"))
    assert len(load_dataset("fashion-mnist", root=tmp_path / "root", download=False)) == 3
    assert len(load_dataset("fashion-mnist", download=False)) == 4
    monkeypatch.delenv("SPHEREVAE_FASHION_MNIST_DIR")
    assert len(load_dataset("fashion-mnist", download=False)) == 5


def test_not_found_lists_places(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("mnist", "train", root=tmp_path / "nowhere", download=False)
    msg = str(info.value)
    assert str(tmp_path / "nowhere") in msg and "cache" in msg and "train-images-idx3-ubyte.gz" in msg


def test_unknown_names():
    with pytest.raises(ValueError, match=r"dataset must be one of \['digits'"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="split must be one of"):
        load_dataset("digits", "valid")


@pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").is_file(),
    reason="Debian's dataset-fashion-mnist is not installed",
)
def test_real_fashion_mnist_from_debian_package():
    ds = load_dataset("fashion-mnist", "test", download=False)
    assert ds.images.shape == (10_000, 1, 28, 28)
    assert torch.bincount(ds.labels).tolist() == [1000] * 10  # balanced test set


def test_digits_split_is_deterministic_and_disjoint():
    a, b = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert len(a) + len(b) == 1797
    assert torch.equal(load_dataset("digits", "test").images, b.images)
    assert a.images.max() == 255


def _serve(directory: Path):
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(directory), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_download_verifies_checksum_and_keeps_nothing_on_mismatch(tmp_path):
    (tmp_path / "srv").mkdir()
    payload = b"hello dataset"
    (tmp_path / "srv" / "f.bin").write_bytes(payload)
    server = _serve(tmp_path / "srv")
    try:
        url = f"http://127.0.0.1:{server.server_port}/f.bin"
        good = hashlib.md5(payload).hexdigest()
        out = download_file(url, tmp_path / "dl" / "f.bin", good)
        assert out.read_bytes() == payload
        with pytest.raises(CorruptDatasetError, match="checksum mismatch"):
            download_file(url, tmp_path / "dl2" / "f.bin", "0" * 32)
        assert os.listdir(tmp_path / "dl2") == []
    finally:
        server.shutdown()


def _toy(n=10):
    return ImageDataset(
        torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous(),
        torch.arange(n, dtype=torch.int64),
        "toy",
    )


def test_loader_covers_every_index_once_and_is_reproducible():
    loader = BatchLoader(_toy(10), 3, shuffle=True, seed=5)
    seen = torch.cat([y for _, y in loader])
    assert sorted(seen.tolist()) == list(range(10))
    assert torch.equal(seen, torch.cat([y for _, y in BatchLoader(_toy(10), 3, seed=5)]))
    loader.set_epoch(1)
    assert not torch.equal(seen, torch.cat([y for _, y in loader]))
    x, y = next(iter(loader))
    assert x.dtype == torch.float32 and torch.allclose(x[:, 0, 0, 0] * 255, y.float())


def test_loader_shards_are_disjoint_and_equal():
    shards = [torch.cat([y for _, y in BatchLoader(_toy(11), 2, seed=1, rank=r, world_size=3)])
              for r in range(3)]
    assert all(len(s) == 3 for s in shards)
    together = torch.cat(shards).tolist()
    assert len(set(together)) == 9


def test_imagedataset_validation():
    with pytest.raises(ValueError, match="uint8"):
        ImageDataset(torch.zeros(2, 1, 2, 2), None, "x")
    with pytest.raises(ValueError, match="labels must be int64"):
        ImageDataset(torch.zeros(2, 1, 2, 2, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64), "x")
