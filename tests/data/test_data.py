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

from spherevae.data import DATASETS, load_dataset, register_dataset
from spherevae.data.base import (
    CorruptDatasetError,
    DatasetNotFoundError,
    DatasetSpec,
    ImageDataset,
    download_file,
)
from spherevae.data.idx import read_idx
from spherevae.data.loader import BatchLoader


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
    assert str(tmp_path / "nowhere") in msg and "train-images-idx3-ubyte.gz" in msg
    assert "only place looked" in msg  # an explicit root never falls back to other copies


def test_unknown_names():
    with pytest.raises(ValueError, match=r"dataset must be one of \['celeba64', 'cifar10', 'digits', 'fashion-mnist', 'folder', 'mnist', 'synthetic'\]"):
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


# ---------------------------------------------------------------------- CIFAR-10


def _cifar_batch_bytes(n: int, seed: int) -> tuple[bytes, np.ndarray, np.ndarray]:
    """A batch pickled exactly like the official files: protocol 2, bytes keys, a numpy array."""
    import pickle

    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, n)]
    obj = {b"batch_label": b"training batch", b"labels": labels, b"data": data, b"filenames": [b"x.png"] * n}
    return pickle.dumps(obj, protocol=2), data, np.array(labels)


_CIFAR_NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]


def _write_cifar(directory: Path, *, as_tar: bool, n: int = 4) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    import io
    import pickle
    import tarfile

    files, truth = {}, {}
    for i, name in enumerate([f"data_batch_{j}" for j in range(1, 6)] + ["test_batch"]):
        raw, data, labels = _cifar_batch_bytes(n, i)
        files[name] = raw
        truth[name] = (data, labels)
    files["batches.meta"] = pickle.dumps({b"label_names": _CIFAR_NAMES, b"num_vis": 3072}, protocol=2)
    directory.mkdir(parents=True, exist_ok=True)
    if as_tar:
        with tarfile.open(directory / "cifar-10-python.tar.gz", "w:gz") as tar:
            for name, raw in files.items():
                info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
                info.size = len(raw)
                tar.addfile(info, io.BytesIO(raw))
    else:
        (directory / "cifar-10-batches-py").mkdir()
        for name, raw in files.items():
            (directory / "cifar-10-batches-py" / name).write_bytes(raw)
    return truth


@pytest.mark.parametrize("as_tar", [True, False])
def test_cifar10_reads_the_official_layout(tmp_path: Path, as_tar: bool) -> None:
    truth = _write_cifar(tmp_path, as_tar=as_tar)
    train = load_dataset("cifar10", "train", root=tmp_path, download=False)
    test = load_dataset("cifar10", "test", root=tmp_path, download=False)
    assert train.images.shape == (20, 3, 32, 32) and test.images.shape == (4, 3, 32, 32)
    assert train.classes[0] == "airplane" and train.classes[9] == "truck"
    data, labels = truth["data_batch_2"]
    # Row layout: 1024 R, 1024 G, 1024 B, each row-major: pixel (c=1, h=2, w=5) of image 0.
    assert train.images[4, 1, 2, 5].item() == data[0, 1024 + 2 * 32 + 5]
    assert train.labels[4:8].tolist() == labels.tolist()
    assert test.labels.tolist() == truth["test_batch"][1].tolist()


def test_cifar10_refuses_code_in_pickles(tmp_path: Path) -> None:
    import pickle

    from spherevae.data.base import UnsafePickleError

    _write_cifar(tmp_path, as_tar=False)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    with pytest.raises(UnsafePickleError, match="refusing to unpickle global"):
        load_dataset("cifar10", "test", root=tmp_path, download=False)
    assert not marker.exists()


def test_cifar10_corrupt_files(tmp_path: Path) -> None:
    _write_cifar(tmp_path / "a", as_tar=False)
    batch = tmp_path / "a" / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(batch.read_bytes()[:500])  # truncated
    with pytest.raises(CorruptDatasetError, match="test_batch"):
        load_dataset("cifar10", "test", root=tmp_path / "a", download=False)
    _write_cifar(tmp_path / "b", as_tar=True)
    tar = tmp_path / "b" / "cifar-10-python.tar.gz"
    tar.write_bytes(tar.read_bytes()[:300])
    with pytest.raises(CorruptDatasetError, match="tar"):
        load_dataset("cifar10", "train", root=tmp_path / "b", download=False)
    import pickle

    _write_cifar(tmp_path / "c", as_tar=False)
    bad = {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}
    (tmp_path / "c" / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(CorruptDatasetError, match=r"shape \(N, 3072\)"):
        load_dataset("cifar10", "test", root=tmp_path / "c", download=False)


def test_cifar10_not_found_lists_places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DatasetNotFoundError, match=r"(?s)cifar10.*Looked in: .*empty.*cifar-10-python.tar.gz"):
        load_dataset("cifar10", "train", root=tmp_path / "empty", download=False)


# ---------------------------------------------------------------------- CelebA 64


def _write_celeba(directory: Path, n: int = 6, *, partition: bool = True) -> list[str]:
    from PIL import Image

    folder = directory / "img_align_celeba"
    folder.mkdir(parents=True)
    names = [f"{i + 1:06d}.jpg" for i in range(n)]
    for i, name in enumerate(names):
        img = np.zeros((218, 178, 3), np.uint8)
        img[..., 2] = 255  # blue border
        img[39:179, 19:159] = (255, 0, 0) if i % 2 == 0 else (0, 255, 0)  # centre 140x140: red/green
        Image.fromarray(img).save(folder / name, quality=95)
    if partition:
        split = ["0", "0", "1", "2", "0", "2"][:n]
        (directory / "list_eval_partition.txt").write_text("".join(f"{a} {b}\n" for a, b in zip(names, split, strict=True)))
    return names


def test_celeba64_crop_resize_partition_and_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    _write_celeba(tmp_path / "celeba")
    train = load_dataset("celeba64", "train", root=tmp_path / "celeba", download=False)
    test = load_dataset("celeba64", "test", root=tmp_path / "celeba", download=False)
    assert train.images.shape == (3, 3, 64, 64) and test.images.shape == (2, 3, 64, 64)
    assert train.labels is None
    # The 140x140 centre crop keeps only the coloured face region: no blue border survives.
    first = train.images[0].float()
    assert first[0].mean() > 240 and first[2].mean() < 15
    assert train.images[1, 1].float().mean() > 240  # 000002.jpg is green
    # Cached: the second load needs no JPEG at all.
    for jpg in (tmp_path / "celeba" / "img_align_celeba").glob("*.jpg"):
        jpg.unlink()
    again = load_dataset("celeba64", "train", root=tmp_path / "celeba", download=False)
    assert torch.equal(again.images, train.images)


def test_celeba64_without_partition_and_corrupt_jpeg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    names = _write_celeba(tmp_path / "c", n=10, partition=False)
    assert len(load_dataset("celeba64", "test", root=tmp_path / "c", download=False)) == 1
    (tmp_path / "c" / "img_align_celeba" / names[3]).write_bytes(b"not a jpeg")
    with pytest.raises(CorruptDatasetError, match=names[3]):
        load_dataset("celeba64", "train", root=tmp_path / "c", download=False)
    with pytest.raises(DatasetNotFoundError, match="mmlab"):
        load_dataset("celeba64", "train", root=tmp_path / "nothing", download=False)


# ---------------------------------------------------------------- image folders


def _write_folder(directory: Path, labelled: bool, mode: str = "RGB", n: int = 30) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        sub = directory / (("cats", "dogs")[i % 2] if labelled else "")
        sub.mkdir(parents=True, exist_ok=True)
        shape = (40, 50) if mode == "L" else (40, 50, 3)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(sub / f"img{i}.png")


def test_folder_labelled_split_deterministic_and_disjoint(tmp_path: Path) -> None:
    _write_folder(tmp_path, labelled=True)
    train = load_dataset("folder", "train", root=tmp_path, image_size=16, test_fraction=0.3)
    test = load_dataset("folder", "test", root=tmp_path, image_size=16, test_fraction=0.3)
    assert len(train) + len(test) == 30 and len(test) > 0
    assert train.images.shape[1:] == (3, 16, 16) and train.classes == ("cats", "dogs")
    assert set(train.labels.tolist()) <= {0, 1}
    again = load_dataset("folder", "test", root=tmp_path, image_size=16, test_fraction=0.3)
    assert torch.equal(again.images, test.images)
    rows = {tuple(x.flatten().tolist()) for x in train.images}
    assert not any(tuple(x.flatten().tolist()) in rows for x in test.images)


def test_folder_flat_greyscale_and_errors(tmp_path: Path) -> None:
    _write_folder(tmp_path / "g", labelled=False, mode="L")
    ds = load_dataset("folder", "train", root=tmp_path / "g", image_size=8)
    assert ds.images.shape[1:] == (1, 8, 8) and ds.labels is None
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match="holds no images"):
        load_dataset("folder", "train", root=tmp_path / "empty")
    with pytest.raises(ValueError, match="needs root"):
        load_dataset("folder", "train")
    with pytest.raises(ValueError, match=r"does not take option\(s\) \['size'\]; allowed"):
        load_dataset("folder", "train", root=tmp_path / "g", size=3)
    with pytest.raises(ValueError, match="does not take"):
        load_dataset("digits", "train", image_size=3)


def _folder_with_bad_files(directory: Path) -> dict[str, str]:
    """20 greyscale 12x12 PNGs plus files with an image suffix that do not decode."""
    import io

    from PIL import Image

    directory.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(20):
        Image.fromarray(rng.integers(0, 256, (12, 12), dtype=np.uint8)).save(directory / f"{i}.png")
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (12, 12), dtype=np.uint8)).save(buf, "PNG")
    bad = {"broken.png": "garbage", "empty.jpg": "empty", "truncated.png": "header reads, data cut"}
    (directory / "broken.png").write_bytes(b"notapng")
    (directory / "empty.jpg").write_bytes(b"")
    (directory / "truncated.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return bad


def test_folder_skips_files_that_do_not_decode_and_names_them(tmp_path: Path) -> None:
    import warnings

    bad = _folder_with_bad_files(tmp_path / "imgs")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # image_size=None: the size is inferred from the headers, which must skip bad files too
        train = load_dataset("folder", "train", root=tmp_path / "imgs")
        test = load_dataset("folder", "test", root=tmp_path / "imgs")
    assert len(train) + len(test) == 20 and train.images.shape[1:] == (1, 12, 12)
    said = " ".join(str(w.message) for w in caught)
    assert "not readable images" in said
    for name in bad:  # every bad file named once, in the warning of the split it falls in
        assert said.count(name) == 1, (name, said)
    counts = [int(str(w.message).split("skipping ")[1].split(" ")[0]) for w in caught
              if "not readable images" in str(w.message)]
    assert sum(counts) == len(bad)


def test_folder_without_a_readable_image_is_one_cli_line(tmp_path: Path, capsys) -> None:
    from spherevae.cli import main

    (tmp_path / "imgs").mkdir()
    for name in ("a.png", "b.jpg"):
        (tmp_path / "imgs" / name).write_bytes(b"notapng")
    with pytest.raises(DatasetNotFoundError, match="holds no readable images"):
        load_dataset("folder", "train", root=tmp_path / "imgs")
    code = main(["train", "--config", "digits-tiny", "data.name=folder", f"data.root={tmp_path / 'imgs'}",
                 f"train.out_dir={tmp_path / 'runs'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "Traceback" not in err[0]
    assert err[0].startswith("spherevae train: error: image folder") and "no readable images" in err[0]


@pytest.mark.parametrize("value", ["maybe", 1, "yes please"])
def test_folder_greyscale_must_be_a_boolean(tmp_path: Path, capsys, value) -> None:
    from spherevae.cli import main

    _write_folder(tmp_path / "g", labelled=False, mode="L")
    with pytest.raises(ValueError, match=r"data\.options\.greyscale\) must be true, false or null"):
        load_dataset("folder", "train", root=tmp_path / "g", greyscale=value)
    code = main(["train", "--config", "digits-tiny", "data.name=folder", f"data.root={tmp_path / 'g'}",
                 f"data.options.greyscale={value}", f"train.out_dir={tmp_path / 'runs'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "data.options.greyscale" in err[0] and "true, false or null" in err[0]
    assert not list((tmp_path / "runs").rglob("config.yaml"))  # nothing recorded with the bad value
    for ok in (True, False, None):
        assert load_dataset("folder", "train", root=tmp_path / "g", image_size=8, greyscale=ok).images.shape[1] == (
            3 if ok is False else 1)


def test_synthetic_dataset_shape_determinism_and_options() -> None:
    a = load_dataset("synthetic", "train", image_shape=[3, 32, 32], train_size=20, seed=1)
    b = load_dataset("synthetic", "train", image_shape=(3, 32, 32), train_size=20, seed=1)
    t = load_dataset("synthetic", "test", image_shape=(3, 32, 32), test_size=7, seed=1)
    assert a.images.shape == (20, 3, 32, 32) and torch.equal(a.images, b.images) and len(t) == 7
    assert not torch.equal(a.images[:7], t.images)
    with pytest.raises(ValueError, match="image_shape"):
        load_dataset("synthetic", "train", image_shape=(5, 2))


# ---------------------------------------------------------------- adding a dataset (docs/design.md)


def _toy_reader(spec, split, root, download, *, size=96):
    """A user's reader: deterministic 8x8 grey images, labels 0..2, one seed per split."""
    g = torch.Generator().manual_seed(0 if split == "train" else 1)
    images = torch.randint(0, 256, (size, *spec.image_shape), generator=g, dtype=torch.uint8)
    labels = torch.arange(size, dtype=torch.int64) % len(spec.classes)
    return ImageDataset(images, labels, spec.name, spec.classes)


def test_registering_a_dataset_makes_loading_and_training_accept_it(tmp_path):
    from spherevae.io.files import read_jsonl
    from spherevae.io.safe_read import read_run_json
    from spherevae.training.config import load_config
    from spherevae.training.runs import train

    spec = DatasetSpec("toy8", (1, 8, 8), ("a", "b", "c"), _toy_reader, options=("size",))
    with pytest.raises(ValueError, match="dataset must be one of"):
        load_dataset("toy8")
    register_dataset(spec)
    try:
        test = load_dataset("toy8", "test", size=40)
        assert test.images.shape == (40, 1, 8, 8) and test.labels.tolist()[:4] == [0, 1, 2, 0]
        assert not torch.equal(load_dataset("toy8", "train", size=40).images, test.images)
        with pytest.raises(ValueError, match=r"does not take option\(s\) \['seed'\]"):
            load_dataset("toy8", seed=1)
        with pytest.raises(ValueError, match="already registered"):
            register_dataset(spec)
        cfg = load_config(Path(__file__).parents[2] / "configs" / "digits-tiny.yaml",
                          [f"train.out_dir={tmp_path}", "data.name=toy8", "train.epochs=1"])
        run = train(cfg)
        assert read_run_json(run, run / "data_fingerprint.json")["train"]["size"] == 96
        assert len(read_jsonl(run / "metrics.jsonl")) == 1
    finally:
        del DATASETS["toy8"]
    with pytest.raises(TypeError, match="must be a DatasetSpec"):
        register_dataset({"name": "x"})  # type: ignore[arg-type]
    assert "toy8" not in DATASETS and "x" not in DATASETS


def test_an_idx_dataset_is_one_spec_with_urls_and_checksums(tmp_path):
    """A new MNIST-family dataset reuses the idx reader: files come from ``urls`` and are
    verified against ``checksums``; a wrong checksum keeps nothing."""
    from spherevae.data.idx import idx_reader

    src = tmp_path / "srv"
    images, labels = _write_fmnist(src, n=5)
    sums = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in src.iterdir()}
    server = _serve(src)
    try:
        url = f"http://127.0.0.1:{server.server_port}/"
        register_dataset(DatasetSpec("idx-toy", (1, 28, 28), tuple("0123456789"), idx_reader,
                                     urls=(url,), checksums=sums))
        ds = load_dataset("idx-toy", "test", root=tmp_path / "got")
        assert torch.equal(ds.images[:, 0], torch.from_numpy(images))
        assert torch.equal(ds.labels, torch.from_numpy(labels.astype(np.int64)))
        bad = {k: "0" * 32 for k in sums}
        register_dataset(DatasetSpec("idx-bad", (1, 28, 28), tuple("0123456789"), idx_reader,
                                     urls=(url,), checksums=bad))
        with pytest.raises(DatasetNotFoundError, match="checksum mismatch"):
            load_dataset("idx-bad", "test", root=tmp_path / "bad")
        assert not any((tmp_path / "bad").glob("*.gz"))
    finally:
        server.shutdown()
        DATASETS.pop("idx-toy", None)
        DATASETS.pop("idx-bad", None)
