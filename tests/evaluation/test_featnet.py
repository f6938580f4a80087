"""The domain-v2 feature network: shipped weights verified by checksum, its quality on real
Fashion-MNIST test images, what its FID ranks, the recipe's determinism and its cache."""

import json
import shutil

import numpy as np
import pytest
import torch

from spherevae.data.base import ImageDataset
from spherevae.evaluation import featnet
from spherevae.evaluation.features import (
    FEATURE_BACKBONES,
    WeakFeaturesError,
    check_feature_quality,
    extract_features,
    feature_quality,
)
from spherevae.evaluation.fid import frechet_distance
from spherevae.evaluation.metric_info import describe, metric_key

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def fmnist_test():
    from spherevae.data import load_dataset

    try:
        return load_dataset("fashion-mnist", "test", download=False)
    except (FileNotFoundError, OSError, ValueError) as exc:
        pytest.skip(f"Fashion-MNIST not available: {exc}")


def test_manifest_lists_three_seeds_whose_checksums_and_accuracy_hold():
    manifest = json.loads((featnet.WEIGHTS_DIR / "manifest.json").read_text())
    assert sorted(SEED for (_, SEED) in featnet.SHIPPED_WEIGHTS) == [0, 1, 2]
    for name, entry in manifest["files"].items():
        assert entry["version"] == featnet.RECIPE["version"] == manifest["recipe"]["version"]
        assert entry["test_accuracy"] >= 0.92
        model, meta = featnet.load_featnet(featnet.WEIGHTS_DIR / name, sha256=entry["sha256"])
        assert model.feature_dim == 256 and meta["seed"] == str(entry["seed"])
    assert manifest["recipe"] == featnet.RECIPE  # the code's recipe is the shipped one's


def test_a_damaged_weights_file_is_one_clear_error(tmp_path, monkeypatch):
    name = featnet.SHIPPED_WEIGHTS[("fashion-mnist", 0)]
    copy = tmp_path / "weights"
    shutil.copytree(featnet.WEIGHTS_DIR, copy)
    data = bytearray((copy / name).read_bytes())
    data[-1] ^= 1
    (copy / name).write_bytes(bytes(data))
    monkeypatch.setattr(featnet, "WEIGHTS_DIR", copy)
    with pytest.raises(featnet.WeightsChecksumError, match=r"sha256 .* is not the manifest's"):
        featnet.shipped_featnet("fashion-mnist", 0)
    assert featnet.shipped_featnet("fashion-mnist", 0, image_shape=(3, 32, 32)) is None
    assert featnet.shipped_featnet("cifar10", 0) is None


def test_shipped_network_quality_on_real_test_images(fmnist_test):
    """Accuracy of its head, effective dimension (participation ratio, checked against
    numpy's eigenvalues) and dead units on 2000 real test images."""
    model = featnet.shipped_featnet("fashion-mnist", 0)
    x, y = fmnist_test.images[:2000].float() / 255, fmnist_test.labels[:2000]
    feats = extract_features(model, x)
    q = feature_quality(model, feats, x, y)
    lam = np.linalg.eigvalsh(np.cov(feats.T))
    assert q["effective_dim"] == pytest.approx(lam.sum() ** 2 / (lam ** 2).sum(), rel=1e-9)
    assert q["test_accuracy"] > 0.9 and q["effective_dim"] >= 8 and q["dead_units"] == 0
    assert q["feature_dim"] == 256
    check_feature_quality(q, "domain")  # above the floor: no error
    with pytest.raises(WeakFeaturesError, match=r"below the floor.*--allow-weak-features"):
        check_feature_quality({**q, "effective_dim": 2.4, "test_accuracy": 0.8}, "domain-v1")


def _class_repeat_and_unseen(images: torch.Tensor, labels: torch.Tensor):
    """reference: test 0..1999; unseen: test 2000..3999; one image per class (the first of
    each in 4000..), each repeated 200x."""
    x = images.float() / 255
    firsts = torch.stack([x[4000:][int(torch.nonzero(labels[4000:] == c)[0])] for c in range(10)])
    return x[:2000], x[2000:4000], firsts.repeat_interleave(200, 0)


def test_new_fid_ranks_one_image_per_class_far_below_unseen_images(fmnist_test):
    ref, unseen, classrep = _class_repeat_and_unseen(fmnist_test.images, fmnist_test.labels)
    model = featnet.shipped_featnet("fashion-mnist", 0)
    f = {k: extract_features(model, v) for k, v in dict(ref=ref, unseen=unseen, rep=classrep).items()}
    fid_unseen, fid_rep = frechet_distance(f["ref"], f["unseen"]), frechet_distance(f["ref"], f["rep"])
    assert fid_rep > 40 * fid_unseen  # measured: 127.5 vs 1.50 (85x)


@pytest.mark.slow
def test_the_old_extractor_separates_them_less(fmnist_test):
    """domain-v1 (trained 2 epochs on 10k training images): measured 25.1 vs 0.62 (40x)
    against domain-v2's 85x."""
    from spherevae.data import load_dataset
    from spherevae.evaluation.domain import _train_domain_classifier

    train = load_dataset("fashion-mnist", "train", download=False)
    old = _train_domain_classifier(ImageDataset(train.images[:10_000], train.labels[:10_000], "fashion-mnist"),
                                   seed=0, epochs=2, device="cpu")
    new = featnet.shipped_featnet("fashion-mnist", 0)
    ref, unseen, classrep = _class_repeat_and_unseen(fmnist_test.images, fmnist_test.labels)
    ratios = []
    for net in (new, old):
        f = [extract_features(net, v) for v in (ref, unseen, classrep)]
        ratios.append(frechet_distance(f[0], f[2]) / frechet_distance(f[0], f[1]))
    assert ratios[0] > 1.5 * ratios[1]


def _toy(n: int = 96, seed: int = 0) -> ImageDataset:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    images = (torch.rand(n, 1, 8, 8, generator=g) * 60 + labels[:, None, None, None] * 60).to(torch.uint8)
    return ImageDataset(images, labels, "toy-squares")


def test_recipe_is_deterministic_and_leaves_the_global_rng_alone():
    data = _toy()
    torch.manual_seed(123)
    before = torch.random.get_rng_state().clone()
    a, _ = featnet.train_featnet(data.images, data.labels, seed=0, epochs=2)
    assert torch.equal(before, torch.random.get_rng_state())
    b, _ = featnet.train_featnet(data.images, data.labels, seed=0, epochs=2)
    c, _ = featnet.train_featnet(data.images, data.labels, seed=1, epochs=2)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa if sa[k].is_floating_point())
    # Standardised features: training-set mean 0 and std 1 per unit.
    f = a.features(data.images.float() / 255).detach().double()
    assert torch.allclose(f.mean(0), torch.zeros(f.shape[1], dtype=torch.float64), atol=1e-4)
    assert torch.allclose(f.std(0), torch.ones(f.shape[1], dtype=torch.float64), atol=1e-3)


def test_other_datasets_train_once_and_load_from_the_cache(tmp_path, monkeypatch):
    data = _toy()
    recipe = {**featnet.RECIPE, "epochs": 1}
    monkeypatch.setattr(featnet, "RECIPE", recipe)
    first = featnet.featnet_backbone(data, seed=0, cache=tmp_path)
    (path,) = tmp_path.glob("*.safetensors")
    assert "toy-squares-1x8x8-s0-domain-v2-N96-" in path.name
    again = featnet.featnet_backbone(data, seed=0, cache=tmp_path)
    x = data.images.float() / 255
    assert torch.equal(first.features(x), again.features(x))


def test_metric_keys_with_a_hyphenated_backbone_and_recon_references_parse():
    assert set(FEATURE_BACKBONES) >= {"domain", "domain-v1"}
    for backbone in ("domain", "domain-v1"):
        key = metric_key("precision_recon", backbone=backbone, sampler="vmf_mixture")
        info = describe(key)
        assert info is not None and info.backbone == backbone and info.sampler == "vmf_mixture"
        assert "recon" in info.label
        fid = describe(metric_key("fid_recon", backbone=backbone, sampler="gaussian_sphere"))
        assert fid is not None and (fid.backbone, fid.sampler) == (backbone, "gaussian_sphere")
        plain = describe(metric_key("coverage", backbone=backbone, sampler="prior"))
        assert plain is not None and plain.sampler == "prior" and "recon" not in plain.label
    assert describe(metric_key("feature_effective_dim", backbone="domain-v1")).backbone == "domain-v1"
