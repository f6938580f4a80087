"""Tests of spherevae.models.vae: shapes, ranges, sampling statistics, projection, validation."""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spherevae.geometry import coordinates
from spherevae.models.config import MODEL_PRESETS, ModelConfig
from spherevae.models.layers import BLOCKS, NORMS, UPSAMPLERS
from spherevae.models.vae import VAE, VAEOutput

needs_projection = pytest.mark.skipif(
    not hasattr(coordinates, "project_to_sphere"),
    reason="coordinates.project_to_sphere has not been merged into this branch yet",
)


def tiny(**overrides) -> VAE:
    torch.manual_seed(0)  # parameter init only; every sampling call below takes a generator
    return VAE(ModelConfig.from_preset("tiny", **overrides))


def images(model: VAE, batch: int = 5, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, *model.config.image_shape, generator=torch.Generator().manual_seed(seed))


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- shapes and presets

def test_tiny_forward_shapes_and_types() -> None:
    model = tiny()
    out = model(images(model), gen(0))
    assert isinstance(out, VAEOutput)
    assert out.x_hat.shape == (5, 1, 8, 8)
    assert out.mu.shape == out.logvar.shape == out.z.shape == (5, model.latent_dim)
    assert torch.equal(out.sigma, torch.exp(0.5 * out.logvar))


def test_tiny_preset_is_under_50k_parameters() -> None:
    assert sum(p.numel() for p in tiny().parameters()) < 50_000


@pytest.mark.parametrize("name", sorted(MODEL_PRESETS))
def test_every_preset_builds_and_runs_a_batch_of_two(name: str) -> None:
    torch.manual_seed(0)
    config = ModelConfig.from_preset(name)
    model = VAE(config)
    assert sum(p.numel() for p in model.parameters()) > 0
    x = torch.rand(2, *config.image_shape, generator=gen(1))
    with torch.no_grad():
        out = model(x, gen(2))
    assert out.x_hat.shape == x.shape
    assert out.z.shape == (2, config.latent_dim)


def test_preset_image_shapes_match_their_datasets() -> None:
    expected = {"mnist": (1, 28, 28), "fashion-mnist-cpu": (1, 28, 28),
                "cifar10": (3, 32, 32), "celeba64": (3, 64, 64)}
    for name, shape in expected.items():
        assert ModelConfig.from_preset(name).image_shape == shape


@pytest.mark.parametrize(
    ("block", "norm", "upsample"), list(itertools.product(BLOCKS, NORMS, UPSAMPLERS))
)
def test_every_block_norm_upsample_combination_keeps_shapes(block: str, norm: str, upsample: str) -> None:
    model = tiny(block=block, norm=norm, upsample=upsample)
    out = model(images(model), gen(0))
    assert out.x_hat.shape == (5, 1, 8, 8)


def test_non_square_images_and_any_size_divisible_by_the_stages() -> None:
    # 2 stages: H, W need only be multiples of 4.
    model = tiny(image_shape=(3, 12, 20))
    out = model(images(model, batch=2), gen(0))
    assert out.x_hat.shape == (2, 3, 12, 20)


def test_zero_residual_blocks_is_a_plain_conv_net() -> None:
    model = tiny(blocks_per_stage=0)
    assert not any(isinstance(m, tuple(BLOCKS.values())) for m in model.modules())
    assert model(images(model), gen(0)).x_hat.shape == (5, 1, 8, 8)


@pytest.mark.parametrize("n", [2, 2048])
def test_extreme_latent_dims(n: int) -> None:
    model = tiny(latent_dim=n)
    out = model(images(model, batch=3), gen(0))
    assert out.z.shape == (3, n)
    assert torch.isfinite(out.x_hat).all()


# ---------------------------------------------------------------- ranges and initialisation

def test_x_hat_in_unit_interval_even_for_huge_latents() -> None:
    model = tiny()
    z = 1e4 * torch.randn(64, model.latent_dim, generator=gen(0))
    with torch.no_grad():
        x_hat = model.decode(z)
    assert torch.isfinite(x_hat).all()
    assert x_hat.min() >= 0 and x_hat.max() <= 1


@pytest.mark.parametrize("init_sigma", [0.05, 0.5, 1.0])
def test_sigma_starts_at_init_sigma_for_every_input(init_sigma: float) -> None:
    model = tiny(init_sigma=init_sigma)
    _, logvar = model.encode(images(model, batch=7))
    torch.testing.assert_close(torch.exp(0.5 * logvar), torch.full_like(logvar, init_sigma))


@pytest.mark.parametrize("raw_bias", [-1e6, -50.0, 50.0, 1e6])
def test_logvar_is_soft_limited_and_sigma_stays_finite(raw_bias: float) -> None:
    config = ModelConfig.from_preset("tiny")
    model = VAE(config)
    with torch.no_grad():
        model.head.bias[model.latent_dim:] = raw_bias
    x = images(model)
    _, logvar = model.encode(x)
    assert (logvar >= config.logvar_min).all() and (logvar <= config.logvar_max).all()
    out = model(x, gen(0))
    assert torch.isfinite(out.sigma).all() and torch.isfinite(out.z).all()


def test_soft_limit_is_near_identity_in_the_middle_of_the_range() -> None:
    model = tiny()
    mid = model._logvar_mid
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias[model.latent_dim:] = mid + 1.0
    _, logvar = model.encode(images(model))
    # tanh(u) = u - u^3/3: one unit from the middle of a 24-wide range moves by ~1.
    torch.testing.assert_close(logvar, torch.full_like(logvar, mid + 1.0), atol=1e-2, rtol=0)


# ---------------------------------------------------------------- sampling

@settings(max_examples=10, deadline=None)
@given(
    mu=st.floats(-5, 5), log_sigma=st.floats(-3, 1.5), n=st.integers(2, 6), seed=st.integers(0, 2**31),
)
def test_reparameterization_mean_and_std_match_mu_and_sigma(
    mu: float, log_sigma: float, n: int, seed: int
) -> None:
    # z_i = mu + sigma eps_i over N draws: the sample mean has standard error sigma/sqrt(N)
    # and the sample std about sigma/sqrt(2N); 5 standard errors over n dims fails by
    # chance with probability < 1e-5.
    model = tiny(latent_dim=n)
    draws = 20_000
    sigma = math.exp(log_sigma)
    mus = torch.full((draws, n), mu, dtype=torch.float64)
    logvar = torch.full((draws, n), 2 * log_sigma, dtype=torch.float64)
    z = model.reparameterize(mus, logvar, gen(seed))
    assert (z.mean(0) - mu).abs().max() < 5 * sigma / math.sqrt(draws)
    assert (z.std(0) - sigma).abs().max() < 5 * sigma / math.sqrt(2 * draws)


def test_seeded_generator_makes_forward_reproducible() -> None:
    model = tiny()
    x = images(model)
    a, b = model(x, gen(3)), model(x, gen(3))
    c = model(x, gen(4))
    assert torch.equal(a.z, b.z) and torch.equal(a.x_hat, b.x_hat)
    assert not torch.equal(a.z, c.z)


def test_library_code_leaves_the_global_rng_alone() -> None:
    model = tiny()
    x = images(model)
    state = torch.get_rng_state()
    model(x, gen(0))
    assert torch.equal(torch.get_rng_state(), state)


def test_eval_mode_still_samples_and_sample_false_decodes_mu() -> None:
    model = tiny().eval()
    x = images(model)
    with torch.no_grad():
        a, b = model(x, gen(0)), model(x, gen(1))
        det = model(x, sample=False)
    assert not torch.equal(a.z, b.z)
    assert torch.equal(det.z, det.mu)
    torch.testing.assert_close(det.x_hat, model.decode(det.mu))


def test_embed_returns_mu_not_a_sample() -> None:
    model = tiny()
    x = images(model)
    out = model(x, gen(0))
    torch.testing.assert_close(model.embed(x), out.mu)
    assert not torch.allclose(model.embed(x), out.z)
    torch.testing.assert_close(model.embed(x), model.embed(x))


def test_group_norm_makes_each_sample_independent_of_its_batch() -> None:
    # The documented reason for the default: with GroupNorm, an image's mu does not
    # depend on the rest of its batch; with BatchNorm (train mode) it does.
    x = images(tiny(), batch=6)
    for norm, independent in [("group", True), ("batch", False)]:
        model = tiny(norm=norm)
        alone, together = model.embed(x[:1]), model.embed(x)[:1]
        assert torch.allclose(alone, together, atol=1e-5) == independent, norm


# ---------------------------------------------------------------- projection (eq 8)

def test_radius_is_none_without_projection() -> None:
    assert tiny().radius is None


@needs_projection
@pytest.mark.parametrize("n", [2, 7, 2048])
def test_projected_latents_have_radius_sqrt_n(n: int) -> None:
    model = tiny(latent_dim=n, project_to_sphere=True)
    assert model.radius == math.sqrt(n)
    x = images(model)
    for z in (model(x, gen(0)).z, model(x, sample=False).z):
        norms = z.double().norm(dim=1)
        torch.testing.assert_close(norms, torch.full_like(norms, math.sqrt(n)), rtol=1e-5, atol=0)


@needs_projection
def test_embed_is_unprojected_mu_even_when_projecting() -> None:
    model = tiny(project_to_sphere=True)
    x = images(model)
    mu, _ = model.encode(x)
    torch.testing.assert_close(model.embed(x), mu)


# ---------------------------------------------------------------- gradients

@pytest.mark.parametrize("project", [False, pytest.param(True, marks=needs_projection)])
def test_gradients_reach_every_parameter(project: bool) -> None:
    model = tiny(project_to_sphere=project)
    x = images(model)
    out = model(x, gen(0))
    loss = (out.x_hat - x).pow(2).sum() + out.mu.pow(2).sum() + out.logvar.exp().sum()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    for part in (model.encoder, model.head, model.decoder):
        assert any(p.grad.abs().sum() > 0 for p in part.parameters())


# ---------------------------------------------------------------- input validation

@pytest.mark.parametrize(
    "shape", [(5, 3, 8, 8), (5, 1, 8, 16), (5, 1, 16, 8), (1, 8, 8), (5, 1, 8, 8, 1)]
)
def test_wrong_image_shape_raises_with_expected_and_got(shape: tuple[int, ...]) -> None:
    model = tiny()
    with pytest.raises(ValueError, match=r"\(B, 1, 8, 8\).*got " + re_shape(shape)):
        model(torch.rand(shape))


def re_shape(shape: tuple[int, ...]) -> str:
    return r"\(" + r", ".join(str(s) for s in shape) + r"\)"


def test_integer_images_raise_type_error() -> None:
    model = tiny()
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        model(torch.zeros(2, 1, 8, 8, dtype=torch.uint8))


def test_decode_rejects_a_wrong_latent_dim() -> None:
    model = tiny()
    with pytest.raises(ValueError, match=r"z must have shape \(B, n\) = \(B, 4\), got \(3, 5\)"):
        model.decode(torch.zeros(3, 5))


def test_vae_requires_a_model_config() -> None:
    with pytest.raises(TypeError, match="config must be a ModelConfig"):
        VAE(MODEL_PRESETS["tiny"])  # type: ignore[arg-type]


# ---------------------------------------------------------------- config validation

@pytest.mark.parametrize(
    ("overrides", "error", "pattern"),
    [
        ({"latent_dim": 1}, ValueError, r"latent_dim must be an int >= 2, got 1"),
        ({"latent_dim": 4.0}, TypeError, r"latent_dim must be an int"),
        ({"blocks_per_stage": -1}, ValueError, r"blocks_per_stage must be an int >= 0"),
        ({"channels": ()}, ValueError, r"channels must be a non-empty tuple"),
        ({"channels": (8, 0)}, ValueError, r"channels must be a non-empty tuple of positive ints"),
        ({"channels": (8, 16.0)}, TypeError, r"channels must be a tuple of ints"),
        ({"image_shape": (1, 8)}, ValueError, r"image_shape must be 3 positive ints"),
        ({"image_shape": (1, 10, 8)}, ValueError, r"divisible by 2\*\*len\(channels\) = 4"),
        ({"channels": (8, 16, 16, 16)}, ValueError, r"divisible by 2\*\*len\(channels\) = 16"),
        ({"norm": "layer"}, ValueError, r"norm must be one of \['batch', 'group'\], got 'layer'"),
        ({"block": "bottleneck"}, ValueError, r"block must be one of \['postact', 'preact'\]"),
        ({"upsample": "bilinear"}, ValueError, r"upsample must be one of \['nearest', 'transpose'\]"),
        ({"norm_groups": 3}, ValueError, r"norm_groups must divide every entry of channels"),
        ({"project_to_sphere": 1}, TypeError, r"project_to_sphere must be a bool"),
        ({"logvar_min": 2.0, "logvar_max": 1.0}, ValueError, r"logvar_min < logvar_max"),
        ({"init_sigma": 0.0}, ValueError, r"init_sigma must lie strictly inside"),
        ({"init_sigma": 100.0}, ValueError, r"init_sigma must lie strictly inside"),
    ],
)
def test_invalid_config_names_the_field(overrides: dict, error: type, pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        ModelConfig.from_preset("tiny", **overrides)


def test_norm_groups_is_ignored_with_batch_norm() -> None:
    assert ModelConfig.from_preset("tiny", norm="batch", norm_groups=3).norm == "batch"


def test_unknown_preset_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"preset must be one of \[.*'cifar10'.*'tiny'\], got 'svhn'"):
        ModelConfig.from_preset("svhn")


def test_unknown_override_lists_the_fields() -> None:
    with pytest.raises(ValueError, match=r"unknown ModelConfig field\(s\) \['latent'\].*'latent_dim'"):
        ModelConfig.from_preset("tiny", latent=3)


def test_config_is_frozen_hashable_and_lists_become_tuples() -> None:
    config = ModelConfig.from_preset("tiny", channels=[8, 16], image_shape=[1, 8, 8])
    assert config.channels == (8, 16) and config.image_shape == (1, 8, 8)
    assert hash(config) == hash(ModelConfig.from_preset("tiny"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.latent_dim = 8  # type: ignore[misc]


def test_config_round_trips_through_a_dict() -> None:
    config = ModelConfig.from_preset("cifar10", latent_dim=1000, project_to_sphere=True)
    assert ModelConfig(**dataclasses.asdict(config)) == config
