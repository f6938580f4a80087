"""The feature ensembles (backbones ``domain-x2``, ``domain-x3``): features against the
members' own, its classifier against a plain mean of probabilities, its seeds (disjoint
networks per ensemble seed), the shipped members and the cache for other datasets."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from spherevae.data.base import ImageDataset
from spherevae.evaluation import featnet
from spherevae.evaluation.features import (
    FEATURE_BACKBONES,
    backbone_extractor,
    extract_features,
    feature_quality,
)
from spherevae.evaluation.metric_info import describe, metric_key

torch.set_num_threads(1)


@pytest.fixture
def fmnist(fmnist_train, fmnist_test):
    return fmnist_train, fmnist_test


@given(st.integers(0, 10_000), st.integers(0, 10_000), st.integers(2, 5))
def test_ensembles_of_different_seeds_share_no_network(a, b, size):
    ma, mb = featnet.member_seeds(a, size), featnet.member_seeds(b, size)
    assert len(set(ma)) == size and ma == sorted(ma)
    assert (set(ma) & set(mb)) == (set(ma) if a == b else set())


def test_member_seeds_and_ensembles_refuse_nonsense():
    assert featnet.member_seeds(0) == [0, 1] and featnet.member_seeds(2) == [4, 5]
    with pytest.raises(ValueError, match="seed must be >= 0 and size >= 2"):
        featnet.member_seeds(-1)
    with pytest.raises(ValueError, match="seed must be >= 0 and size >= 2"):
        featnet.member_seeds(0, 1)
    with pytest.raises(ValueError, match="at least 2 member networks, got 1"):
        featnet.FeatEnsemble([featnet.FeatNet()])


def test_ensemble_features_and_classifier_against_its_members(fmnist):
    """Features: the members' own, concatenated, over sqrt(2); the head: the argmax of the
    mean of the members' softmax; feature_quality measures the ensemble, not a member."""
    _, test = fmnist
    x, y = test.images[:1000].float() / 255, test.labels[:1000]
    members = [featnet.shipped_featnet("fashion-mnist", s).eval() for s in (0, 1)]
    ens = featnet.FeatEnsemble(members)
    got = extract_features(ens, x)
    want = np.concatenate([extract_features(m, x) for m in members], 1) / np.sqrt(2)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)  # float32 division vs float64
    assert ens.feature_dim == got.shape[1] == 2 * 576
    with torch.no_grad():
        probs = [torch.softmax(m(x), 1) for m in members]
    plain_acc = float((((probs[0] + probs[1]) / 2).argmax(1) == y).double().mean())
    q = feature_quality(ens, got, x, y)
    assert q["test_accuracy"] == pytest.approx(plain_acc, abs=1e-12)
    assert q["test_accuracy"] > 0.9 and q["dead_units"] == 0 and q["feature_dim"] == 1152
    # forward gives logits: the log of the mean probability, whose softmax is that mean.
    with torch.no_grad():
        np.testing.assert_allclose(torch.softmax(ens(x), 1).numpy(), ((probs[0] + probs[1]) / 2).numpy(), atol=1e-6)
    # Two networks, not one read twice: their features of the same images differ.
    corr = np.corrcoef(got[:, :576].ravel(), got[:, 576:].ravel())[0, 1]
    assert corr < 0.9


@pytest.mark.parametrize(("backbone", "networks"), [
    ("domain-x2", {0: (0, 1), 1: (2, 3), 2: (4, 5)}),
    ("domain-x3", {0: (0, 1, 2), 1: (3, 4, 5), 2: (6, 7, 8)}),
])
def test_ensemble_backbones_are_disjoint_shipped_networks(fmnist, backbone, networks):
    """Feature seed s of domain-x<k> is shipped networks k*s .. k*s + k - 1 (written out)."""
    train, test = fmnist
    assert FEATURE_BACKBONES[backbone].quality_floor
    x = test.images[:64].float() / 255
    for seed, nets in networks.items():
        ens = backbone_extractor(backbone, dataset=train, seed=seed)
        assert isinstance(ens, featnet.FeatEnsemble) and not ens.training
        for member, net_seed in zip(ens.members, nets, strict=True):
            shipped = featnet.shipped_featnet("fashion-mnist", net_seed)
            with torch.no_grad():
                assert torch.allclose(member.features(x), shipped.features(x), atol=1e-4)


def test_other_datasets_train_both_members_once_and_cache_them(tmp_path, monkeypatch):
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(96) % 3
    images = (torch.rand(96, 1, 8, 8, generator=g) * 60 + labels[:, None, None, None] * 60).to(torch.uint8)
    data = ImageDataset(images, labels, "toy-squares")
    monkeypatch.setattr(featnet, "RECIPE", {**featnet.RECIPE, "epochs": 1})
    ens = featnet.featnet_ensemble(data, seed=1, cache=tmp_path)
    weights = sorted(p.name for p in tmp_path.glob("*.safetensors") if p.name.count(".") == 1)
    assert [w.split("-")[3] for w in weights] == ["s2", "s3"]
    x = images.float() / 255
    monkeypatch.setattr(featnet, "train_featnet", lambda *a, **k: pytest.fail("trained again"))
    again = featnet.featnet_ensemble(data, seed=1, cache=tmp_path)
    with torch.no_grad():
        assert torch.equal(ens.features(x), again.features(x))
        assert not torch.equal(ens.members[0].features(x), ens.members[1].features(x))


def test_metric_keys_of_the_ensemble_parse():
    key = metric_key("fid_recon", backbone="domain-x2", sampler="gaussian_sphere")
    info = describe(key)
    assert info is not None and (info.backbone, info.sampler) == ("domain-x2", "gaussian_sphere")


class _Tiny28(torch.nn.Module):
    """Any model with encode/decode: 1x28x28 images, n = 3 (weights from a fixed seed)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.enc = torch.nn.Linear(784, 6)
        self.dec = torch.nn.Linear(3, 784)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(0.05 * torch.randn(p.shape, generator=g))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.enc(x.flatten(1)).chunk(2, dim=1)
        return mu, logvar.clamp(-6, 2)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.dec(z)).reshape(-1, 1, 28, 28)

    def reparameterize(self, mu, logvar, generator=None):
        return mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=generator)


def test_evaluation_with_domain_x2_spreads_over_disjoint_pairs(fmnist, tmp_path):
    """The pipeline with the real backbone: keys carry ``domain-x2``, the quality is the
    ensemble's, and feature seed 1's FID is the one of networks 2 and 3 read together,
    recomputed here from their own features."""
    from spherevae.evaluation import (
        EvalConfig,
        EvalContext,
        encode,
        fit_samplers,
        frechet_distance,
        generate,
        generation_metrics,
    )

    train, test = fmnist
    opts = EvalConfig(backbone="domain-x2", num_samples=200, progress=False, samplers=("prior",),
                      feature_seeds=(0, 1), fid_bootstrap=0)
    ctx = EvalContext(_Tiny28(), test.images[:300], "standard", opts, test.labels[:300], train=train, out_dir=tmp_path)
    for stage in (encode, fit_samplers, generate, generation_metrics):
        stage(ctx)
    m = ctx.metrics
    key = metric_key("fid_recon", backbone="domain-x2", sampler="prior")
    assert m["fid_backbone"] == "domain-x2" and key in m
    assert m[metric_key("feature_dead_units", backbone="domain-x2")] == 0
    assert m[metric_key("feature_accuracy", backbone="domain-x2")] > 0.85
    pair = featnet.FeatEnsemble([featnet.shipped_featnet("fashion-mnist", s) for s in (2, 3)]).eval()
    want = frechet_distance(extract_features(pair, ctx.x_hat), extract_features(pair, ctx.samples["prior"]))
    assert m["fid_per_feature_seed"][key]["1"] == pytest.approx(want, rel=1e-4)
    assert m["fid_per_feature_seed"][key]["0"] == pytest.approx(m[key], rel=1e-6)
