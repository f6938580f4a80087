"""Tests for the sampler choice, the stages and the generation diagnostics of
spherevae.evaluation.pipeline."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from _user_models import ImageMLPVAE
from spherevae.distributions.samplers import SAMPLERS, SamplerSpec
from spherevae.distributions.vmf import VonMisesFisher
from spherevae.evaluation.context import EvalConfig, EvalContext, samplers_for
from spherevae.evaluation.features import FEATURE_BACKBONES, BackboneSpec
from spherevae.evaluation.fid import FID, fid_bootstrap_std, frechet_distance, kid, kid_with_se
from spherevae.evaluation.knn import density_coverage, precision_recall
from spherevae.evaluation.metric_info import metric_key
from spherevae.evaluation.pipeline import (
    PIPELINE,
    TANGENT_NOISE_SCALES,
    _save_samplers,
    encode,
    fit_samplers,
    generate,
    generation_metrics,
    latent_geometry,
    load_context,
    tangent_noise_fids,
)
from spherevae.io.errors import UserError
from spherevae.io.layout import RunLayout
from spherevae.models.adapter import ModelAdapter
from spherevae.training.config import load_config
from spherevae.training.runs import train

TINY = Path(__file__).parents[2] / "configs" / "digits-tiny.yaml"


def test_every_objective_gets_its_prior_and_every_fitted_sampler() -> None:
    fitted = {name for name, spec in SAMPLERS.items() if spec.fitted}
    assert samplers_for("standard")[0] == "prior"
    for objective in ("compressed", "authors"):
        assert samplers_for(objective)[0] == "vmf"
        assert set(samplers_for(objective)) == fitted | {"prior_sphere"}
    assert set(samplers_for("standard")) == fitted | {"prior"}
    for objective in ("standard", "compressed", "authors"):
        names = samplers_for(objective)
        assert len(set(names)) == len(names)


def test_samplers_for_is_explicit() -> None:
    assert samplers_for("standard", ("gmm", "esag", "gmm")) == ("gmm", "esag")
    # One list for every objective (a sweep): each keeps its paper sampler as the headline.
    listed = ("prior", "gaussian", "vmf", "gaussian_sphere", "esag")
    assert samplers_for("standard", listed) == listed
    assert samplers_for("compressed", listed) == ("vmf", "prior", "gaussian", "gaussian_sphere", "esag")
    assert samplers_for("authors", ("esag", "prior_sphere", "vmf")) == ("vmf", "prior_sphere", "esag")
    with pytest.raises(ValueError, match="objective must be one of"):
        samplers_for("mystery")
    with pytest.raises(ValueError, match="evaluate sampler must be one of"):
        samplers_for("standard", ("flow",))


class _Decoder(nn.Module):
    """A fixed smooth decoder from R^6 to 1x3x4 images."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)  # weights of the test network only
        self.net = nn.Sequential(nn.Linear(6, 12), nn.Sigmoid())

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).reshape(-1, 1, 3, 4)


def test_tangent_noise_fids_grow_with_the_noise_scale() -> None:
    n = 6
    g = torch.Generator().manual_seed(0)
    latents = VonMisesFisher(torch.ones(n), 40.0).sample(3000, generator=g).float() * math.sqrt(n)
    model = _Decoder().eval()
    with torch.no_grad():
        x_hat = model.decode(latents)
    fid = FID(nn.Flatten(), "flat", reset_real_features=False)
    fid.update(x_hat, real=True)
    ctx = EvalContext(model, torch.zeros(0, 1, 3, 4, dtype=torch.uint8), "compressed",
                      EvalConfig(progress=False), latents=latents, x_hat=x_hat, fids={"recon": fid})
    tangent_noise_fids(ctx)
    out = ctx.metrics
    vmf = VonMisesFisher.fit(latents)
    a = float(vmf.mean_resultant_length)
    assert out["vmf_tangent_std"] == pytest.approx(math.sqrt(a / float(vmf.concentration)), rel=1e-5)
    fids = [out[f"tangent_noise_fid_flat_{c:g}x"] for c in TANGENT_NOISE_SCALES]
    rmse = [out[f"tangent_noise_rmse_percent_{c:g}x"] for c in TANGENT_NOISE_SCALES]
    assert fids == sorted(fids) and fids[0] > 0
    assert rmse == sorted(rmse) and rmse[0] > 0
    assert fid.real.count == 3000 and fid.fake.count == 0  # the reference survives the resets


class _ImageVAE(nn.Module):
    """Any model with encode/decode (not spherevae's): 1x4x4 images, n = 3."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)  # weights of the test network only
        self.enc = nn.Linear(16, 6)
        self.dec = nn.Linear(3, 16)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.enc(x.flatten(1)).chunk(2, dim=1)
        return 3 * mu, logvar.clamp(-6, 2)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.dec(z)).reshape(-1, 1, 4, 4)

    def reparameterize(self, mu, logvar, generator=None):
        return mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=generator)


class _Jitter:
    """A toy sampler: test latents drawn at random plus small Gaussian noise."""

    def __init__(self, z: torch.Tensor) -> None:
        self.z = z

    def sample(self, num: int, generator: torch.Generator | None = None) -> torch.Tensor:
        idx = torch.randint(self.z.shape[0], (num,), generator=generator)
        return self.z[idx] + 0.01 * torch.randn(num, self.z.shape[1], generator=generator)


def _images(num: int = 120) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    labels = torch.arange(num) % 3
    base = torch.stack([torch.linspace(0, 1, 16).roll(5 * c) for c in range(3)])[labels]
    images = ((base + 0.1 * torch.rand(num, 16, generator=g)).clamp(0, 1) * 255).to(torch.uint8)
    return images.reshape(num, 1, 4, 4), labels


def test_a_registered_sampler_and_backbone_run_through_the_stages(monkeypatch, tmp_path, caplog) -> None:
    """docs/design.md "Adding a sampler / a feature backbone": one registry entry each."""
    monkeypatch.setitem(SAMPLERS, "jitter", SamplerSpec(lambda z, radius, seed: _Jitter(z), "euclidean",
                                                        True, "test latents plus small noise"))
    monkeypatch.setitem(FEATURE_BACKBONES, "pixels", BackboneSpec(lambda dataset=None, **_: nn.Flatten(),
                                                                  32, "raw pixels"))
    images, labels = _images()
    opts = EvalConfig(backbone="pixels", num_samples=300, progress=False, tsne_points=60)
    ctx = EvalContext(_ImageVAE(), images, "standard", opts, labels, out_dir=tmp_path)
    assert "jitter" in ctx.samplers and ctx.samplers[0] == "prior"
    for stage in (encode, fit_samplers, generate, generation_metrics):
        stage(ctx)
    m, flat = ctx.metrics, ctx.x_hat.flatten(1).double().numpy()
    for name in ("prior", "jitter"):
        feats = ctx.samples[name].flatten(1).double().numpy()
        assert m[metric_key("fid_recon", backbone="pixels", sampler=name)] == frechet_distance(feats, flat)
        pr = precision_recall(ctx.x_test.flatten(1).double().numpy(), feats)
        assert m[metric_key("precision", backbone="pixels", sampler=name)] == pr["precision"]
        # Against the reconstructions too, and density/coverage beside them.
        dc = density_coverage(flat, feats)
        assert m[metric_key("coverage_recon", backbone="pixels", sampler=name)] == dc["coverage"]
        assert m[metric_key("recall_recon", backbone="pixels", sampler=name)] == precision_recall(flat, feats)["recall"]
        # KID for every sampler, with its standard error; every FID with its bootstrap std.
        kid_key = metric_key("kid_recon", backbone="pixels", sampler=name)
        assert (m[kid_key], m[kid_key + "_se"]) == kid_with_se(feats, flat)
        fid_key = metric_key("fid_recon", backbone="pixels", sampler=name)
        assert m[fid_key + "_std"] == fid_bootstrap_std(flat, feats, rounds=opts.fid_bootstrap)
        # The feature network's own quality is stored (no head: no accuracy).
        assert m[metric_key("feature_effective_dim", backbone="pixels")] > 1
        assert metric_key("feature_accuracy", backbone="pixels") not in m
    assert m["fid_pixels_jitter_recon"] < 0.1 * m["fid_pixels_prior_recon"]  # jitter stays on the data
    prior = ctx.samples["prior"].flatten(1).double().numpy()
    assert m["kid_pixels_prior_recon"] == kid(prior, flat)
    assert m["fid_pixels_recon"] == m["fid_pixels_prior_recon"] and m["fid_backbone"] == "pixels"
    # The other stages run on the same hand-made context: no run directory needed.
    for _, stages in PIPELINE[3:]:
        for stage in stages:
            stage(ctx)
    assert "knn_accuracy_k5" not in m  # no training split, no k-NN
    assert {p.name for p in tmp_path.iterdir()} >= {"samples.png", "samples_by_sampler.png", "interpolation.png"}
    # A sampler without a saved form is evaluated all the same, and not saved.
    with caplog.at_level("WARNING", logger="spherevae.evaluate"):
        _save_samplers(ctx.fitted, RunLayout(tmp_path), {"sha256": "0" * 64, "epoch": 0})
    assert RunLayout(tmp_path).sampler("prior").is_file()
    assert (tmp_path / "samplers" / "prior.safetensors").is_file()  # the documented layout
    assert not RunLayout(tmp_path).sampler("jitter").exists() and "jitter not saved" in caplog.text


def test_a_stage_says_which_stage_it_needs() -> None:
    images, _ = _images(10)
    ctx = EvalContext(_ImageVAE(), images, "standard", EvalConfig(progress=False))
    with pytest.raises(ValueError, match="run the 'encode' stage first"):
        latent_geometry(ctx)
    encode(ctx)
    with pytest.raises(ValueError, match="run the 'fit_samplers' stage first"):
        generate(ctx)


def test_samples_are_seeded_per_sampler() -> None:
    images, _ = _images(40)
    draws = []
    for samplers in (("gaussian", "vmf"), ("vmf",)):
        ctx = EvalContext(_ImageVAE(), images, "standard", EvalConfig(samplers=samplers, num_samples=20))
        for stage in (encode, fit_samplers, generate):
            stage(ctx)
        draws.append(ctx.samples["vmf"])
    torch.testing.assert_close(draws[0], draws[1], rtol=0, atol=0)


def test_latent_spectrum_figure_draws_both_panels(tmp_path) -> None:
    from spherevae.plots.figure import save_figure
    from spherevae.plots.latents import latent_spectrum_figure

    sigma = torch.cat([torch.tensor([6.8]), torch.full((7,), 0.01)])
    fig = latent_spectrum_figure(sigma, torch.tensor([0.5, 0.1, 0.01, 0.0]), vmf_tangent_var=0.05)
    assert len(fig.axes) == 2
    assert "1 dims above" in fig.axes[0].get_legend().get_texts()[1].get_text()
    assert save_figure(fig, tmp_path / "s.png").stat().st_size > 0


def test_a_run_of_a_wrapped_user_model_loads_for_evaluation(tmp_path) -> None:
    # load_context read model.config.image_shape, which only spherevae's own VAE has: a
    # run trained on a user's model (a ModelAdapter) could not be evaluated at all.
    cfg = load_config(TINY, [f"train.out_dir={tmp_path}", "train.epochs=1"])
    run = train(cfg, model=ImageMLPVAE())
    with pytest.raises(UserError, match=r"allow_classes=\[._user_models:ImageMLPVAE.\]"):
        load_context(run, EvalConfig(max_test=50, progress=False))  # never imported unless allowed
    ctx = load_context(run, EvalConfig(max_test=50, progress=False), allow_classes=[ImageMLPVAE])
    assert isinstance(ctx.model, ModelAdapter)
    assert ctx.test_images.shape == (50, 1, 8, 8)
    encode(ctx)
    assert ctx.latents is not None and ctx.latents.shape == (50, 8)
    assert ctx.x_hat is not None and ctx.x_hat.shape == (50, 1, 8, 8)


class _Broken:
    """A degenerate fitted sampler: every draw is NaN."""

    def __init__(self, n: int) -> None:
        self.n = n

    def sample(self, num: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.full((num, self.n), float("nan"))


def test_a_sampler_that_draws_nan_does_not_stop_the_evaluation(monkeypatch) -> None:
    """One degenerate fit costs its own metrics (NaN), not every other sampler's."""
    monkeypatch.setitem(SAMPLERS, "broken", SamplerSpec(lambda z, radius, seed: _Broken(z.shape[1]),
                                                        "euclidean", True, "NaN draws"))
    monkeypatch.setitem(FEATURE_BACKBONES, "pixels", BackboneSpec(lambda dataset=None, **_: nn.Flatten(),
                                                                  32, "raw pixels"))
    images, labels = _images()
    opts = EvalConfig(backbone="pixels", num_samples=200, progress=False, samplers=("prior", "broken"))
    ctx = EvalContext(_ImageVAE(), images, "standard", opts, labels)
    for stage in (encode, fit_samplers, generate, generation_metrics):
        stage(ctx)
    m = ctx.metrics
    assert math.isfinite(m[metric_key("fid_recon", backbone="pixels", sampler="prior")])
    assert math.isnan(m[metric_key("fid_recon", backbone="pixels", sampler="broken")])


def _flat_folder_run(tmp_path: Path) -> Path:
    """A run trained for one epoch on a flat folder of random 8x8 PNGs (no labels)."""
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(60):
        pixels = torch.randint(0, 256, (8, 8), generator=g, dtype=torch.uint8)
        Image.fromarray(pixels.numpy()).save(folder / f"img{i:02d}.png")
    cfg = load_config(TINY, ["data.name=folder", f"data.root={folder}", f"train.out_dir={tmp_path}",
                             "train.epochs=1", "train.batch_size=16", "train.run_name=flat-run"])
    return train(cfg)


def test_a_flat_folder_run_is_evaluated_without_fid_and_says_why(monkeypatch, tmp_path, caplog) -> None:
    """No labels, so no domain classifier: every stage that needs no FID features runs
    (it failed at stage 4 after fitting and drawing every sampler); an explicit backbone
    that cannot be built, or a size that cannot fit, stops at once, before stage 2."""
    from spherevae.evaluation.inception import InceptionWeightsNotFoundError
    from spherevae.evaluation.pipeline import evaluate_run

    run = _flat_folder_run(tmp_path)
    m = evaluate_run(run, num_samples=100, samplers=("vmf", "gaussian"), tsne_points=20, progress=False)
    assert m["rmse_percent"] > 0 and m["main_sampler"] == "vmf" and math.isfinite(m["vmf_concentration"])
    assert "tangent_noise_rmse_percent_1x" in m and "fid_backbone" not in m
    assert not [k for k in m if k.startswith(("fid_", "kid_", "precision_", "recall_", "tangent_noise_fid"))]
    (warning,) = [w for w in m["warnings"] if "FID" in w]
    assert "class subfolders" in warning and "--backbone inception --inception-weights FILE" in warning
    assert (run / "eval" / "samples_by_sampler.png").is_file()
    monkeypatch.delenv("SPHEREVAE_INCEPTION_WEIGHTS", raising=False)
    nope = str(tmp_path / "nope.pth")
    for options, error, match in (
        ({"backbone": "inception"}, InceptionWeightsNotFoundError, "no Inception weights file given"),
        ({"backbone": "inception", "inception_weights": nope}, InceptionWeightsNotFoundError, "does not exist"),
        ({"num_samples": 10**12}, ValueError, "needs about .* GiB .* use at most"),
    ):
        caplog.clear()
        with caplog.at_level("INFO", logger="spherevae.evaluate"), pytest.raises(error, match=match):
            evaluate_run(run, **options)
        assert "[1/6]" in caplog.text and "[2/6]" not in caplog.text


def _failing_fit(z: torch.Tensor, radius: float, seed: int):
    raise ValueError("no finite estimate")


def test_a_sampler_whose_fit_fails_gets_nan_metrics_and_the_rest_go_on(monkeypatch, tmp_path) -> None:
    """A fit that raises (the vMF's kappa = inf stopped the evaluation at stage 3) costs
    that sampler's metrics (NaN, with a warning naming it and the reason), even the
    headline sampler's; every other sampler and stage runs, figures included."""
    monkeypatch.setitem(SAMPLERS, "vmf", SamplerSpec(_failing_fit, "sphere", True, "fails"))
    monkeypatch.setitem(FEATURE_BACKBONES, "pixels", BackboneSpec(lambda dataset=None, **_: nn.Flatten(),
                                                                  32, "raw pixels"))
    images, labels = _images()
    opts = EvalConfig(backbone="pixels", num_samples=200, progress=False, samplers=("vmf", "gaussian"),
                      tsne_points=30)
    ctx = EvalContext(_ImageVAE(), images, "compressed", opts, labels, out_dir=tmp_path)
    for _, stages in PIPELINE:
        for stage in stages:
            stage(ctx)
    m = ctx.metrics
    assert m["main_sampler"] == "vmf" and "vmf" not in ctx.fitted and "vmf" not in ctx.samples
    assert math.isnan(m["fid_pixels_vmf_recon"]) and math.isnan(m["fid_pixels_recon"])
    assert math.isnan(m["precision_pixels_vmf"]) and math.isnan(m["kid_pixels_vmf_recon"])
    assert math.isfinite(m["fid_pixels_gaussian_recon"]) and math.isfinite(m["recall_pixels_gaussian"])
    assert "sampler vmf: fit failed (ValueError: no finite estimate), metrics NaN" in m["warnings"]
    assert (tmp_path / "samples_by_sampler.png").is_file() and not (tmp_path / "samples.png").exists()


class _ChanceClassifier(nn.Module):
    """A feature network with a head that always says class 0: accuracy 1/3 on _images."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(16, 3)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(x.shape[0], 3).index_fill_(1, torch.tensor([0]), 1.0)


def test_a_feature_network_below_the_floor_is_refused_unless_allowed(monkeypatch, tmp_path) -> None:
    from spherevae.evaluation.features import WeakFeaturesError

    monkeypatch.setitem(FEATURE_BACKBONES, "chance", BackboneSpec(lambda dataset=None, **_: _ChanceClassifier(),
                                                                  32, "a chance classifier", None, True))
    images, labels = _images()
    for allow in (False, True):
        opts = EvalConfig(backbone="chance", num_samples=200, progress=False, samplers=("prior",),
                          allow_weak_features=allow)
        ctx = EvalContext(_ImageVAE(), images, "standard", opts, labels, out_dir=tmp_path)
        for stage in (encode, fit_samplers, generate):
            stage(ctx)
        if not allow:
            with pytest.raises(WeakFeaturesError, match=r"'chance' is below the floor \(test_accuracy 0.333 < 0.85"):
                generation_metrics(ctx)
            continue
        generation_metrics(ctx)
        m = ctx.metrics
        assert m[metric_key("feature_accuracy", backbone="chance")] == pytest.approx(40 / 120)
        assert m[metric_key("feature_dead_units", backbone="chance")] == 0
        assert math.isfinite(m[metric_key("fid_recon", backbone="chance", sampler="prior")])


def test_fit_split_train_fits_on_held_out_training_images(tmp_path) -> None:
    """--fit-split train: the samplers see the training images just after data.max_train,
    and say so in the metrics; without a held-out slice, the ones the VAE saw, with a warning."""
    from types import SimpleNamespace

    from spherevae.data.base import ImageDataset
    from spherevae.distributions.samplers import fit_sampler
    from spherevae.evaluation.context import stage_generator
    from spherevae.models.inference import encode_dataset, sampler_latents

    test_images, test_labels = _images(60)
    train_images, train_labels = _images(200)
    train_images = train_images.flip(3)  # not the test images
    train = ImageDataset(train_images, train_labels, "toy")
    for max_train, start, seen in ((50, 50, False), (180, 140, True)):
        opts = EvalConfig(num_samples=50, progress=False, samplers=("gaussian",), fit_split="train")
        ctx = EvalContext(_ImageVAE(), test_images, "standard", opts, test_labels, train=train,
                          config=SimpleNamespace(data=SimpleNamespace(max_train=max_train)), out_dir=tmp_path)
        for stage in (encode, fit_samplers, generate):
            stage(ctx)
        m = ctx.metrics
        assert (m["fit_split"], m["fit_split_range"], m["fit_split_seen_by_vae"]) == ("train", [start, start + 60], seen)
        assert bool(m.get("warnings")) == seen
        mu, _ = encode_dataset(ctx.model, train_images[start:start + 60], batch_size=500, device="cpu")
        by_hand = fit_sampler("gaussian", sampler_latents(ctx.model, mu), radius=None, seed=0)
        z = by_hand.sample(50, generator=stage_generator(0, "gaussian"))
        assert torch.allclose(ctx.samples["gaussian"], ctx.model.decode(z).clamp(0, 1), atol=1e-6)
    with pytest.raises(ValueError, match=r"'fit_split' must be one of \['test', 'train'\]"):
        EvalConfig(fit_split="val")


class _Scaled(nn.Module):
    """Pixels times (1 + seed): the FID of seed s is (1 + s)^2 times seed 0's."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.scale = 1.0 + seed

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x.flatten(1)


def test_feature_seed_spread_is_the_std_over_the_seeds_networks(monkeypatch, tmp_path) -> None:
    import numpy as np

    builds: list[int] = []

    def build(dataset=None, *, seed=0, **_):
        builds.append(seed)
        return _Scaled(seed)

    monkeypatch.setitem(FEATURE_BACKBONES, "scaled", BackboneSpec(build, 32, "scaled pixels"))
    images, labels = _images()
    opts = EvalConfig(backbone="scaled", num_samples=200, progress=False, samplers=("prior",),
                      feature_seeds=(0, 1, 2))
    ctx = EvalContext(_ImageVAE(), images, "standard", opts, labels, out_dir=tmp_path)
    for stage in (encode, fit_samplers, generate, generation_metrics):
        stage(ctx)
    m = ctx.metrics
    key = metric_key("fid_recon", backbone="scaled", sampler="prior")
    fid0 = m[key]
    assert m["fid_per_feature_seed"][key]["0"] == pytest.approx(fid0, rel=1e-6)  # streamed vs one-shot stats
    assert m["fid_per_feature_seed"][key]["2"] == pytest.approx(9 * fid0, rel=1e-6)
    assert m[key + "_std"] == pytest.approx(np.std([fid0, 4 * fid0, 9 * fid0], ddof=1), rel=1e-6)
    assert m["fid_spread"].startswith("std over feature-network seeds")
    # Seed 0's network is the FIDs' own: built once, its features reused for the spread.
    assert sorted(builds) == [0, 1, 2]
    # The bootstrap's (sampling) std is kept beside the seeds' one, not overwritten.
    assert 0 < m["fid_bootstrap_std"][key] < m[key + "_std"]
    with pytest.raises(ValueError, match="feature_seeds"):
        EvalConfig(feature_seeds=(1, 2))
