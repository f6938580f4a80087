"""Tests of spherevae.losses.prior against plain-Python float64 references of eqs 1-5 and of the
authors' released-code penalty (authors-code-facts.md)."""

from __future__ import annotations

import itertools
import math

import pytest
import scipy.stats
import torch
from hypothesis import given
from hypothesis import strategies as st

from spherevae.geometry.coordinates import hyperspherical_cosines
from spherevae.losses.authors import AUTHORS_SIGMA_ANGLE_WEIGHTS, AuthorsLatentLoss
from spherevae.losses.prior import HypersphericalPriorLoss
from spherevae.losses.stats import batch_stat_kld, latent_batch_stats, merge_latent_stats
from spherevae.losses.targets import ANGLE_TARGETS, PRESETS, chi_mean, chi_std, ones_cosines
from spherevae.losses.vae import LossTerms, vae_loss

TERM_KEYS = {
    f"{g}_{p}_{s}" for g in ("mu", "sigma") for p in ("angle", "radius") for s in ("mean", "std")
}

# ---------------------------------------------------------------- plain float64 references


def ref_cosines(v: list[float]) -> tuple[float, list[float]]:
    """Radius and cos phi_k = v_k / |v_{k..n}| (1 where the tail is zero), k = 1..n-1."""
    n = len(v)
    cos = []
    for k in range(n - 1):
        tail = math.sqrt(sum(v[j] ** 2 for j in range(k, n)))
        cos.append(v[k] / tail if tail > 0 else 1.0)
    return math.sqrt(sum(x * x for x in v)), cos


def ref_mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def ref_var(xs: list[float], unbiased: bool = False) -> float:
    m = ref_mean(xs)
    return sum((x - m) ** 2 for x in xs) / (len(xs) - (1 if unbiased else 0))


def ref_coords(t: torch.Tensor) -> tuple[list[float], list[list[float]]]:
    """Per-sample radii and the columns of cosines (column k-1 holds cos phi_k)."""
    rows = [ref_cosines([float(x) for x in row]) for row in t.double()]
    radii = [r for r, _ in rows]
    cols = [[c[k] for _, c in rows] for k in range(t.shape[1] - 1)]
    return radii, cols


def ref_prior_loss(mu: torch.Tensor, sigma: torch.Tensor, loss: HypersphericalPriorLoss) -> float:
    """Eqs 4-5 with population std, summed term by term in plain Python."""
    total = 0.0
    for group, t, use in (("mu", mu, loss.use_mu_terms), ("sigma", sigma, loss.use_sigma_terms)):
        if not use:
            continue
        radii, cols = ref_coords(t)

        def buf(name: str, group: str = group) -> list[float]:
            return [float(x) for x in getattr(loss, f"{group}_{name}").double().reshape(-1)]

        a, b = buf("angle_mean_target"), buf("angle_std_target")
        alpha, beta = buf("angle_mean_gain"), buf("angle_std_gain")
        for k, col in enumerate(cols):
            total += alpha[k] * (ref_mean(col) - a[k]) ** 2
            total += beta[k] * (math.sqrt(ref_var(col)) - b[k]) ** 2
        if loss.use_radius_terms:
            (ar,), (br,) = buf("radius_mean_target"), buf("radius_std_target")
            (gr,), (hr,) = buf("radius_mean_gain"), buf("radius_std_gain")
            total += gr * (ref_mean(radii) - ar) ** 2 + hr * (math.sqrt(ref_var(radii)) - br) ** 2
    return total


def ref_authors(
    mu: torch.Tensor,
    sigma: torch.Tensor,
    w_sigma: float,
    full: bool,
    *,
    c: float = 0.6,
    eps: float = 0.0,
    ones: list[float] | None = None,
) -> float:
    """The released-code penalty from authors-code-facts.md, in plain Python.

    ``ones`` defaults to the plain-loop cosines of the all-ones vector; ``eps`` is their
    ``+0.001`` under every tail norm; ``c`` the sigma-radius factor.
    """
    d = mu.shape[1]
    if ones is None:
        ones = ref_cosines([1.0] * d)[1]

    def s(xs: list[float]) -> float:
        return math.sqrt(ref_var(xs, unbiased=True) + 1e-4)

    def pen(x: float, b: float) -> float:
        u = (x + 1 - b) ** 2
        return u - math.log(u) - 1

    def coords(t: torch.Tensor) -> tuple[list[float], list[list[float]]]:
        rows = [[float(x) for x in row] for row in t.double()]
        radii = [math.sqrt(sum(x * x for x in v)) for v in rows]
        cols = [
            [v[k] / math.sqrt(sum(x * x for x in v[k:]) + eps) for v in rows] for k in range(d - 1)
        ]
        return radii, cols

    r_mu, c_mu = coords(mu) if eps else ref_coords(mu)
    r_sg, c_sg = coords(sigma) if eps else ref_coords(sigma)
    mu_ang = sig_ang = 0.0
    for i in range(d - 1):
        k = i + 1
        g = 50 * math.sqrt(d) / math.sqrt(k)
        a = 1.0 if full else ones[i]
        mu_ang += g * pen(s(c_mu[i]), ones[i]) + 0.05 * g * (ref_mean(c_mu[i]) - a) ** 2
        sig_ang += g * pen(s(c_sg[i]), 0.0) + 0.05 * g * (ref_mean(c_sg[i]) - ones[i]) ** 2
    mu_rad = 50 * pen(s(r_mu), 0.0) + 50 * (ref_mean(r_mu) - math.sqrt(d - 0.5)) ** 2
    q = s(r_sg) ** 2 / 0.5
    sig_rad = 50 * (q - math.log(q) - 1) + 50 * (ref_mean(r_sg) - c * math.sqrt(d - 0.5)) ** 2
    return 1000 * mu_ang + 300 * mu_rad + w_sigma * sig_ang + 500 * sig_rad


def latents(batch: int, n: int, seed: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(batch, n, generator=g, dtype=dtype)
    sigma = torch.rand(batch, n, generator=g, dtype=dtype) + 0.05
    return mu, sigma


def from_angles(r: float, phi: torch.Tensor) -> torch.Tensor:
    """Eq 9 in float64: x_k = r sin(phi_1)..sin(phi_{k-1}) cos(phi_k), x_n = r prod sin."""
    sines = torch.cat([torch.ones((*phi.shape[:-1], 1), dtype=phi.dtype), torch.sin(phi)], -1)
    prefix = torch.cumprod(sines, -1)
    cos = torch.cat([torch.cos(phi), torch.ones((*phi.shape[:-1], 1), dtype=phi.dtype)], -1)
    return r * prefix * cos


# ---------------------------------------------------------------- beta-VAE (eqs 1-2)


def test_vae_loss_matches_loop_reference():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 2, 4, 4, generator=g, dtype=torch.float64)
    x_hat = torch.rand(3, 2, 4, 4, generator=g, dtype=torch.float64)
    mu = torch.randn(3, 5, generator=g, dtype=torch.float64)
    logvar = torch.randn(3, 5, generator=g, dtype=torch.float64)
    out = vae_loss(x, x_hat, mu, logvar, 0.3)
    assert isinstance(out, LossTerms)
    rec = sum(float((x[b] - x_hat[b]).pow(2).sum()) for b in range(3)) / 3
    kld = 0.0
    for b in range(3):
        for k in range(5):
            m, lv = float(mu[b, k]), float(logvar[b, k])
            kld += -0.5 * (1 + lv - m * m - math.exp(lv))
    kld /= 3  # mean over the batch (eq 1 sums; see the docstring)
    assert out.reconstruction.item() == pytest.approx(rec, rel=1e-12)
    assert out.latent.item() == pytest.approx(kld, rel=1e-12)
    assert out.total.item() == pytest.approx(rec + 0.3 * kld, rel=1e-12)


def test_vae_loss_kld_zero_at_prior_and_positive_elsewhere():
    x = torch.zeros(2, 1, 2, 2)
    zeros = torch.zeros(2, 4)
    assert vae_loss(x, x, zeros, zeros, 1.0).total.item() == 0.0
    assert vae_loss(x, x, zeros + 0.1, zeros, 1.0).latent.item() > 0
    assert vae_loss(x, x, zeros, zeros - 0.5, 1.0).latent.item() > 0


@pytest.mark.parametrize(
    ("x_shape", "xh_shape", "mu_shape", "lv_shape", "match"),
    [
        ((2, 1, 4, 4), (2, 1, 4, 1), (2, 3), (2, 3), "x and x_hat"),
        ((2, 1, 4, 4), (2, 1, 4, 4), (2, 3), (2, 1), "mu and logvar"),
        ((2, 1, 4, 4), (2, 1, 4, 4), (3, 3), (3, 3), "batch size"),
        ((2, 1, 4, 4), (2, 1, 4, 4), (2, 3, 1), (2, 3, 1), "mu must have shape"),
    ],
)
def test_vae_loss_rejects_mismatched_shapes(x_shape, xh_shape, mu_shape, lv_shape, match):
    with pytest.raises(ValueError, match=match):
        vae_loss(
            torch.zeros(x_shape),
            torch.zeros(xh_shape),
            torch.zeros(mu_shape),
            torch.zeros(lv_shape),
            1.0,
        )


def test_vae_loss_rejects_bad_beta_and_nan():
    x, z = torch.zeros(2, 3), torch.zeros(2, 2)
    with pytest.raises(ValueError, match="beta"):
        vae_loss(x, x, z, z, -1.0)
    with pytest.raises(ValueError, match="x_hat"):
        vae_loss(x, x + float("nan"), z, z, 1.0)


# ---------------------------------------------------------------- eq 3 / eq 17


@given(
    batch=st.integers(1, 6),
    n=st.integers(1, 5),
    seed=st.integers(0, 10_000),
    prior_mu=st.floats(-2, 2),
    prior_sigma=st.floats(0.1, 3),
)
def test_batch_stat_kld_equals_batch_mean_squared_error(batch, n, seed, prior_mu, prior_sigma):
    """Eq 16 turns eq 15 (unit constants) into eq 17 exactly, with the population std."""
    mu, sigma = latents(batch, n, seed)
    eq15 = 0.0
    for b in range(batch):
        for k in range(n):
            eq15 += (float(sigma[b, k]) - prior_sigma) ** 2 + (float(mu[b, k]) - prior_mu) ** 2
    eq15 /= batch
    eq17 = 0.0
    for k in range(n):
        s, m = [float(v) for v in sigma[:, k]], [float(v) for v in mu[:, k]]
        eq17 += (
            (ref_mean(s) - prior_sigma) ** 2
            + ref_var(s)
            + (ref_mean(m) - prior_mu) ** 2
            + ref_var(m)
        )
    got = batch_stat_kld(mu, sigma, prior_mu, prior_sigma).item()
    assert got == pytest.approx(eq17, rel=1e-10, abs=1e-12)
    assert got == pytest.approx(eq15, rel=1e-10, abs=1e-12)


def test_batch_stat_kld_per_dim_prior_and_validation():
    mu, sigma = latents(4, 3, 1)
    p = torch.tensor([0.0, 1.0, -1.0], dtype=torch.float64)
    want = sum(float(((sigma[:, k] - 1.0) ** 2 + (mu[:, k] - p[k]) ** 2).mean()) for k in range(3))
    assert batch_stat_kld(mu, sigma, p).item() == pytest.approx(want, rel=1e-12)
    with pytest.raises(ValueError, match="prior_mu"):
        batch_stat_kld(mu, sigma, torch.zeros(2))
    with pytest.raises(ValueError, match="mu and sigma"):
        batch_stat_kld(mu, sigma[:, :2])


# ---------------------------------------------------------------- the all-ones finding


@pytest.mark.parametrize("n", [2, 3, 10, 200, 1000])
def test_all_ones_profile_is_derived_from_our_own_transform(n):
    """The "(1, ..., 1)" profile is the cosines of torch.ones(n) by eq 10: o_k = 1/sqrt(n-k+1)
    (o_1 = 1/sqrt(n), o_{n-1} = 1/sqrt(2)), not the 1/sqrt(k+1) printed in section 4.2."""
    _, cos = hyperspherical_cosines(torch.ones(1, n, dtype=torch.float64))
    torch.testing.assert_close(ANGLE_TARGETS["all_ones"](n), cos[0], rtol=1e-12, atol=0)
    torch.testing.assert_close(ones_cosines(n), cos[0], rtol=1e-12, atol=0)
    # a second, independent formula and the plain loop agree
    k = torch.arange(1, n, dtype=torch.float64)
    torch.testing.assert_close(cos[0], 1 / torch.sqrt(n - k + 1), rtol=1e-12, atol=0)
    if n <= 200:
        want = torch.tensor(ref_cosines([1.0] * n)[1], dtype=torch.float64)
        torch.testing.assert_close(ones_cosines(n), want, rtol=1e-12, atol=0)
    assert float(ones_cosines(n)[0]) == pytest.approx(1 / math.sqrt(n))
    assert float(ones_cosines(n)[-1]) == pytest.approx(1 / math.sqrt(2))
    # the printed profile is the same vector indexed from the other end, kept by name only
    torch.testing.assert_close(ANGLE_TARGETS["paper_printed"](n), cos[0].flip(0), rtol=1e-12, atol=0)
    if n >= 3:
        assert not torch.allclose(cos[0], ANGLE_TARGETS["paper_printed"](n))


def test_no_preset_uses_the_printed_profile():
    """Every preset (and the authors' loss by default) means o_k where the paper says "the
    direction of (1, ..., 1)": the reversed profile only exists by its own name."""
    for preset in PRESETS.values():
        assert "paper_printed" not in preset.values()
    for n in (3, 9):
        loss = AuthorsLatentLoss(n, compression="half").double()
        torch.testing.assert_close(loss.ones_target, ones_cosines(n), rtol=1e-7, atol=0)
        torch.testing.assert_close(loss.mu_angle_mean_target, ones_cosines(n), rtol=1e-7, atol=0)


# ---------------------------------------------------------------- presets


def test_presets_targets_are_exactly_as_specified():
    n = 6
    k = torch.arange(1, n, dtype=torch.float64)
    ones_paper = 1 / torch.sqrt(k + 1)  # the default gains 1/sqrt(k+1) (section 4.2)
    ones = torch.tensor(ref_cosines([1.0] * n)[1], dtype=torch.float64)  # o_k, plain loop
    uniform_std = 1 / torch.sqrt(n - k + 1)
    expected_mu = {
        "full": (torch.ones(n - 1, dtype=torch.float64), ones),
        "moderate": (ones, ones),
        "equator": (torch.zeros(n - 1, dtype=torch.float64), ones),
        "uniform": (torch.zeros(n - 1, dtype=torch.float64), uniform_std),
        "gaussian": (torch.zeros(n - 1, dtype=torch.float64), uniform_std),
    }
    assert set(PRESETS) == set(expected_mu)
    for name, (a, b) in expected_mu.items():
        loss = HypersphericalPriorLoss(n, name).double()
        torch.testing.assert_close(loss.mu_angle_mean_target, a, rtol=1e-7, atol=0)
        torch.testing.assert_close(loss.mu_angle_std_target, b, rtol=1e-7, atol=0)
        # shared sigma targets (the authors' code) and default gains scale/sqrt(k+1)
        torch.testing.assert_close(loss.sigma_angle_mean_target, ones, rtol=1e-7, atol=0)
        assert float(loss.sigma_angle_std_target.abs().max()) == 0.0
        assert float(loss.sigma_radius_mean_target) == pytest.approx(0.6 * math.sqrt(n - 0.5))
        assert float(loss.sigma_radius_std_target) == pytest.approx(math.sqrt(0.5))
        for key in ("mu_angle_mean_gain", "mu_angle_std_gain", "sigma_angle_std_gain"):
            torch.testing.assert_close(getattr(loss, key), ones_paper, rtol=1e-7, atol=0)
        if name != "gaussian":
            assert float(loss.mu_radius_mean_target) == pytest.approx(math.sqrt(n))  # eq 8
            assert float(loss.mu_radius_std_target) == 0.0


def test_gaussian_preset_radius_is_chi_moments():
    for n in (2, 7, 1000):
        assert chi_mean(n) == pytest.approx(scipy.stats.chi(n).mean(), rel=1e-10)
        assert chi_std(n) == pytest.approx(scipy.stats.chi(n).std(), rel=1e-7)
    loss = HypersphericalPriorLoss(7, "gaussian").double()
    assert float(loss.mu_radius_mean_target) == pytest.approx(scipy.stats.chi(7).mean())
    assert float(loss.mu_radius_std_target) == pytest.approx(scipy.stats.chi(7).std())


def test_uniform_std_matches_beta_distribution():
    """cos^2 phi_k of a uniform direction is Beta(1/2, (m-1)/2), m = n-k+1: mean 1/m."""
    n = 9
    b = ANGLE_TARGETS["uniform_std"](n)
    for k in range(1, n):
        m = n - k + 1
        assert float(b[k - 1]) ** 2 == pytest.approx(scipy.stats.beta(0.5, (m - 1) / 2).mean())


def test_gain_scale_and_explicit_overrides():
    n = 5
    k = torch.arange(1, n, dtype=torch.float64)
    loss = HypersphericalPriorLoss(
        n,
        "full",
        gain_scale=3.0,
        mu_angle_std_gain=0.5,
        mu_angle_mean_target=torch.linspace(0, 1, n - 1),
        sigma_radius_mean_target=2.0,
        mu_radius_mean_target="sqrt_n_minus_half",
    ).double()
    torch.testing.assert_close(loss.mu_angle_mean_gain, 3.0 / torch.sqrt(k + 1))
    torch.testing.assert_close(
        loss.mu_angle_std_gain, torch.full((n - 1,), 0.5, dtype=torch.float64)
    )
    torch.testing.assert_close(loss.mu_angle_mean_target, torch.linspace(0, 1, n - 1).double())
    assert float(loss.mu_radius_mean_gain) == 3.0
    assert float(loss.sigma_radius_mean_target) == 2.0
    assert float(loss.mu_radius_mean_target) == pytest.approx(math.sqrt(n - 0.5))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"preset": "nope"}, ValueError, r"preset must be one of \['equator', 'full', 'gaussian'"),
        (
            {"mu_angle_mean_target": torch.zeros(3)},
            ValueError,
            r"mu_angle_mean_target.*shape \(4,\)",
        ),
        ({"mu_angle_std_gain": torch.ones(5)}, ValueError, "mu_angle_std_gain"),
        ({"mu_angle_mean_target": float("nan")}, ValueError, "mu_angle_mean_target must be finite"),
        (
            {"sigma_radius_std_gain": float("inf")},
            ValueError,
            "sigma_radius_std_gain must be finite",
        ),
        ({"mu_angle_mean_target": "north"}, ValueError, r"one of \['all_ones', 'equator'"),
        ({"mu_radius_mean_target": "huge"}, ValueError, r"one of \['authors_sigma'"),
        (
            {"mu_angle_mean_target": 1.5},
            ValueError,
            r"mu_angle_mean_target must lie in \[-1.0, 1.0\]",
        ),
        ({"mu_angle_std_target": -0.1}, ValueError, "mu_angle_std_target must lie"),
        ({"mu_angle_mean_gain": -1.0}, ValueError, "mu_angle_mean_gain must lie"),
        (
            {"mu_radius_mean_target": torch.ones(2)},
            ValueError,
            "mu_radius_mean_target must be a scalar",
        ),
        ({"alpha": 1.0}, ValueError, r"override must be one of"),
        ({"gain_scale": -2.0}, ValueError, "gain_scale"),
        ({"use_mu_terms": 1}, TypeError, "use_mu_terms must be a bool"),
        ({"mu_angle_mean_target": [0.0] * 4}, TypeError, "mu_angle_mean_target must be a float"),
    ],
)
def test_override_validation_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        HypersphericalPriorLoss(5, **kwargs)


@pytest.mark.parametrize("bad", [1, 0, 2.0, True])
def test_latent_dim_validation(bad):
    with pytest.raises(ValueError, match="latent_dim"):
        HypersphericalPriorLoss(bad)
    with pytest.raises(ValueError, match="latent_dim"):
        AuthorsLatentLoss(bad)


# ---------------------------------------------------------------- eqs 4-5 against the reference


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize(("batch", "n"), [(2, 2), (5, 7), (3, 30)])
def test_prior_loss_matches_loop_reference(preset, batch, n):
    mu, sigma = latents(batch, n, seed=batch * 100 + n)
    loss = HypersphericalPriorLoss(n, preset).double()
    terms = loss.terms(mu, sigma)
    assert set(terms) == TERM_KEYS
    assert loss(mu, sigma).item() == pytest.approx(ref_prior_loss(mu, sigma, loss), rel=1e-10)
    assert sum(terms.values()).item() == pytest.approx(loss(mu, sigma).item(), rel=1e-12)


@pytest.mark.parametrize(
    "switches",
    [
        {"use_mu_terms": False},
        {"use_sigma_terms": False},
        {"use_radius_terms": False},
        {"use_mu_terms": False, "use_radius_terms": False},
    ],
)
def test_switches_drop_terms(switches):
    mu, sigma = latents(4, 6, seed=3)
    loss = HypersphericalPriorLoss(6, "moderate", **switches).double()
    terms = loss.terms(mu, sigma)
    for key in TERM_KEYS:
        group, part = key.split("_")[:2]
        on = switches.get(f"use_{group}_terms", True) and (
            part == "angle" or switches.get("use_radius_terms", True)
        )
        assert (key in terms) == on
    assert loss(mu, sigma).item() == pytest.approx(ref_prior_loss(mu, sigma, loss), rel=1e-10)


def test_all_terms_off_gives_zero():
    mu, sigma = latents(3, 4, seed=0)
    loss = HypersphericalPriorLoss(4, use_mu_terms=False, use_sigma_terms=False)
    assert loss(mu, sigma).item() == 0.0


@given(
    batch=st.integers(2, 6),
    n=st.integers(2, 8),
    seed=st.integers(0, 10_000),
    zero_rows=st.integers(0, 2),
    preset=st.sampled_from(sorted(PRESETS)),
)
def test_prior_loss_property_nonnegative_and_matches_reference(batch, n, seed, zero_rows, preset):
    mu, sigma = latents(batch, n, seed)
    mu[:zero_rows, n // 2 :] = 0.0  # trailing zeros: cos = 1 by convention
    loss = HypersphericalPriorLoss(n, preset, gain_scale=2.0).double()
    value = loss(mu, sigma).item()
    assert value >= 0
    assert value == pytest.approx(ref_prior_loss(mu, sigma, loss), rel=1e-9, abs=1e-12)


def test_float32_close_to_float64_and_buffers_follow_to():
    mu, sigma = latents(16, 50, seed=5)
    loss = HypersphericalPriorLoss(50, "full")
    v32 = loss(mu.float(), sigma.float()).item()
    loss64 = loss.double()
    assert loss64.mu_angle_mean_gain.dtype == torch.float64
    assert v32 == pytest.approx(loss64(mu, sigma).item(), rel=1e-4)


def test_half_precision_inputs_are_computed_in_float32():
    mu, sigma = latents(8, 10, seed=2)
    loss = HypersphericalPriorLoss(10)
    value = loss(mu.bfloat16(), sigma.bfloat16())
    assert value.dtype == torch.float32 and torch.isfinite(value)


def test_batch_of_one_raises():
    mu, sigma = latents(1, 4, seed=0)
    for loss in (HypersphericalPriorLoss(4), AuthorsLatentLoss(4)):
        with pytest.raises(ValueError, match="at least 2"):
            loss(mu, sigma)


def test_loss_rejects_wrong_latent_dim_and_shape_mismatch():
    mu, sigma = latents(3, 4, seed=0)
    with pytest.raises(ValueError, match=r"\(batch, 5\)"):
        HypersphericalPriorLoss(5)(mu, sigma)
    with pytest.raises(ValueError, match="mu and sigma"):
        HypersphericalPriorLoss(4)(mu, sigma[:2])
    with pytest.raises(ValueError, match="sigma must be finite"):
        HypersphericalPriorLoss(4)(mu, sigma + float("nan"))


# ---------------------------------------------------------------- gradients


def _grads(loss, mu, sigma):
    mu = mu.clone().requires_grad_(True)
    sigma = sigma.clone().requires_grad_(True)
    loss(mu, sigma).backward()
    return mu.grad, sigma.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_finite_gradients_at_zero_variance_and_poles(preset, dtype):
    n = 6
    row = torch.randn(n, generator=torch.Generator().manual_seed(0), dtype=dtype)
    identical = row.expand(4, n).clone()  # every batch variance is exactly 0
    pole = torch.zeros(4, n, dtype=dtype)
    pole[:, 0] = math.sqrt(n)  # cos phi_k = 1 for every k (trailing zeros)
    half_pole = torch.randn(4, n, generator=torch.Generator().manual_seed(1), dtype=dtype)
    half_pole[:, 3:] = 0.0
    loss = HypersphericalPriorLoss(n, preset).to(dtype)
    authors = AuthorsLatentLoss(n, "mnist").to(dtype)
    for mu in (identical, pole, half_pole):
        for module in (loss, authors):
            g_mu, g_sigma = _grads(module, mu, identical.abs() + 0.1)
            assert torch.isfinite(g_mu).all() and torch.isfinite(g_sigma).all()


def test_std_term_has_no_bias_on_normal_batches():
    """The clamp only acts below the dtype's tiny: a tiny but normal variance is untouched."""
    mu = torch.tensor([[1.0, 2.0], [1.0, 2.0 + 1e-12]], dtype=torch.float64)
    sigma = torch.ones(2, 2, dtype=torch.float64)
    loss = HypersphericalPriorLoss(2, use_sigma_terms=False, use_radius_terms=False).double()
    assert loss(mu, sigma).item() == pytest.approx(ref_prior_loss(mu, sigma, loss), rel=1e-12)


def test_gradient_matches_finite_differences():
    mu, sigma = latents(4, 5, seed=8)
    loss = HypersphericalPriorLoss(5, "moderate").double()
    assert torch.autograd.gradcheck(
        lambda m, s: loss(m, s), (mu.requires_grad_(), sigma.requires_grad_())
    )


# ---------------------------------------------------------------- what the loss does


def test_loss_decreases_as_mu_moves_toward_the_pole():
    """With a_mu,k = 1, shrinking every angle (cos phi_k -> 1) lowers the loss monotonically."""
    n = 8
    g = torch.Generator().manual_seed(4)
    phi0 = torch.rand(64, n - 1, generator=g, dtype=torch.float64) * math.pi
    sigma = torch.rand(64, n, generator=g, dtype=torch.float64) + 0.1
    loss = HypersphericalPriorLoss(n, "full", mu_angle_std_gain=0.0, use_sigma_terms=False).double()
    values = []
    for t in torch.linspace(1.0, 0.0, 11, dtype=torch.float64):
        mu = from_angles(math.sqrt(n), t * phi0)
        values.append(loss(mu, sigma).item())
    assert all(b < a for a, b in itertools.pairwise(values))
    assert values[-1] == pytest.approx(0.0, abs=1e-12)
    # and plain gradient descent on mu raises every E_b[cos phi_k]
    mu = from_angles(math.sqrt(n), phi0).requires_grad_(True)
    before = hyperspherical_cosines(mu.detach())[1].mean(0)
    for _ in range(20):
        mu.grad = None
        loss(mu, sigma).backward()
        with torch.no_grad():
            mu -= 0.05 * mu.grad
    after = hyperspherical_cosines(mu.detach())[1].mean(0)
    assert (after > before).all()


def test_uniform_preset_statistic_terms_vanish_for_uniform_samples():
    """Monte Carlo: for N uniform directions on the sphere of radius sqrt(n), E_b[cos phi_k]
    and std_b[cos phi_k] match the uniform preset within 5 standard errors."""
    n, batch = 12, 40_000
    g = torch.Generator().manual_seed(11)
    z = torch.randn(batch, n, generator=g, dtype=torch.float64)
    mu = math.sqrt(n) * z / z.norm(dim=1, keepdim=True)
    sigma = torch.ones(batch, n, dtype=torch.float64)
    loss = HypersphericalPriorLoss(n, "uniform", use_sigma_terms=False).double()
    stats = loss.batch_stats(mu, sigma)
    m = n - torch.arange(1, n, dtype=torch.float64) + 1
    se_mean = torch.sqrt(1 / m / batch)
    var_c2 = 3 / (m * (m + 2)) - 1 / m**2  # Var(c^2), from E c^4 = 3 / (m (m + 2))
    se_var = torch.sqrt(var_c2 / batch)
    assert (stats.mu_cos.mean.abs() < 5 * se_mean).all()
    assert ((stats.mu_cos.var() - 1 / m).abs() < 5 * se_var).all()
    terms = loss.terms(mu, sigma)
    # expected size of each term is sum_k gain_k * SE_k^2: allow 5x that
    gain = loss.mu_angle_mean_gain
    assert terms["mu_angle_mean"].item() < 5 * float((gain * se_mean**2).sum())
    se_std = se_var / (2 * torch.sqrt(1 / m))  # delta method
    assert terms["mu_angle_std"].item() < 5 * float((gain * se_std**2).sum())
    assert terms["mu_radius_mean"].item() < 1e-12 and terms["mu_radius_std"].item() < 1e-12


def test_gaussian_preset_radius_terms_vanish_for_gaussian_samples():
    n, batch = 20, 40_000
    z = torch.randn(batch, n, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    loss = HypersphericalPriorLoss(n, "gaussian", use_sigma_terms=False).double()
    terms = loss.terms(z, torch.ones_like(z))
    sd = chi_std(n)
    assert terms["mu_radius_mean"].item() < (5 * sd / math.sqrt(batch)) ** 2
    assert terms["mu_radius_std"].item() < (5 * sd / math.sqrt(2 * batch)) ** 2


# ---------------------------------------------------------------- DDP: merged statistics


def test_merged_stats_equal_whole_batch_loss_and_gradient():
    mu, sigma = latents(10, 6, seed=9)
    mu.requires_grad_(True)
    loss = HypersphericalPriorLoss(6, "full").double()
    whole = loss(mu, sigma)
    (g_whole,) = torch.autograd.grad(whole, mu)
    parts = [latent_batch_stats(mu[a:b], sigma[a:b]) for a, b in ((0, 3), (3, 4), (4, 10))]
    merged = merge_latent_stats(parts)
    assert merged.count == 10
    split = loss.from_stats(merged)
    (g_split,) = torch.autograd.grad(split, mu)
    assert split.item() == pytest.approx(whole.item(), rel=1e-12)
    torch.testing.assert_close(g_split, g_whole, rtol=1e-10, atol=1e-12)
    authors = AuthorsLatentLoss(6).double()
    assert authors.from_stats(merged).item() == pytest.approx(authors(mu, sigma).item(), rel=1e-12)


# ---------------------------------------------------------------- authors' released code


@pytest.mark.parametrize("dataset", sorted(AUTHORS_SIGMA_ANGLE_WEIGHTS))
@pytest.mark.parametrize("compression", ["full", "half"])
def test_authors_loss_matches_reference(dataset, compression):
    mu, sigma = latents(5, 7, seed=len(dataset))
    w = AUTHORS_SIGMA_ANGLE_WEIGHTS[dataset]
    loss = AuthorsLatentLoss(7, dataset, compression=compression).double()
    want = ref_authors(mu, sigma, w, full=compression == "full")
    # rel 1e-7: the targets 1/sqrt(k+1) are float32 buffers (portable), cast to float64
    assert loss(mu, sigma).item() == pytest.approx(want, rel=1e-7)
    terms = loss.terms(mu, sigma)
    assert set(terms) == TERM_KEYS
    assert sum(terms.values()).item() == pytest.approx(loss(mu, sigma).item(), rel=1e-12)


def test_authors_weights_registry_and_numeric_weight():
    assert AUTHORS_SIGMA_ANGLE_WEIGHTS == {
        "mnist": 50_000,
        "digits": 50_000,
        "fashion-mnist": 225_000,
        "cifar10": 500_000,
        "svhn": 500_000,
        "celeba64": 500_000,
    }
    mu, sigma = latents(4, 3, seed=1)
    loss = AuthorsLatentLoss(3, sigma_angle_weight=1234.0).double()
    assert loss(mu, sigma).item() == pytest.approx(ref_authors(mu, sigma, 1234.0, True), rel=1e-7)
    with pytest.raises(ValueError, match=r"sigma_angle_weight must be one of \['celeba64'"):
        AuthorsLatentLoss(3, "imagenet")
    with pytest.raises(ValueError, match="compression"):
        AuthorsLatentLoss(3, compression="quarter")
    with pytest.raises(ValueError, match="ones_profile"):
        AuthorsLatentLoss(3, ones_profile="ones")
    with pytest.raises(ValueError, match="tail_eps"):
        AuthorsLatentLoss(3, tail_eps=-1.0)


@pytest.mark.parametrize(
    "options",
    [
        {"sigma_radius_factor": 1.0},
        {"tail_eps": 1e-3},
        {"tail_eps": 1e-3, "compression": "half", "sigma_radius_factor": 1.0},
        {"ones_profile": "paper_printed", "compression": "half"},
    ],
)
def test_authors_loss_options_match_reference(options):
    """Each released-code variant, term by term, vs the plain-Python reference."""
    n = 6
    mu, sigma = latents(5, n, seed=3)
    mu[0, 3:] = 1e-3  # a small tail, where their +0.001 bias matters
    loss = AuthorsLatentLoss(n, "fashion-mnist", **options).double()
    ref_kw: dict = {"c": options.get("sigma_radius_factor", 0.6), "eps": options.get("tail_eps", 0.0)}
    if options.get("ones_profile") == "paper_printed":
        ref_kw["ones"] = [1 / math.sqrt(k + 1) for k in range(1, n)]
    want = ref_authors(mu, sigma, 225_000.0, options.get("compression", "full") == "full", **ref_kw)
    assert loss(mu, sigma).item() == pytest.approx(want, rel=1e-7)
    if options.get("tail_eps"):
        exact = AuthorsLatentLoss(n, "fashion-mnist").double()
        assert abs(exact(mu, sigma).item() - loss(mu, sigma).item()) > 1e-6 * abs(want)
    mu.requires_grad_(True)
    loss(mu, sigma).backward()
    assert torch.isfinite(mu.grad).all()


@given(batch=st.integers(2, 5), n=st.integers(2, 6), seed=st.integers(0, 10_000))
def test_authors_loss_property(batch, n, seed):
    mu, sigma = latents(batch, n, seed)
    loss = AuthorsLatentLoss(n, "mnist").double()
    assert loss(mu, sigma).item() == pytest.approx(ref_authors(mu, sigma, 50_000, True), rel=1e-7)


def test_large_n_float32_matches_float64():
    n = 1000
    mu, sigma = latents(8, n, seed=0)
    loss = HypersphericalPriorLoss(n, "full")
    value32 = loss(mu.float(), sigma.float()).item()
    assert value32 == pytest.approx(loss.double()(mu, sigma).item(), rel=1e-4)


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize(
    "switches",
    [{}, {"use_sigma_terms": False}, {"use_radius_terms": False}, {"use_mu_terms": False}],
)
def test_fused_forward_gradients_equal_autograd_of_the_terms(preset, switches):
    """The analytic backward of forward() against autograd through terms() (float64)."""
    mu, sigma = latents(6, 9, seed=11)
    mu[0, 5:] = 0.0  # trailing zeros
    loss = HypersphericalPriorLoss(9, preset, **switches).double()
    grads = []
    for fn in (lambda m, s: loss(m, s), lambda m, s: sum(loss.terms(m, s).values())):
        m, s = mu.clone().requires_grad_(), sigma.clone().requires_grad_()
        fn(m, s).backward()
        grads.append((m.grad, s.grad))
    for fused, ref in zip(grads[0], grads[1], strict=True):
        if ref is None:
            assert fused is None or torch.count_nonzero(fused) == 0
        else:
            torch.testing.assert_close(fused, ref, rtol=1e-9, atol=1e-12)


def test_fused_forward_gradcheck():
    mu, sigma = latents(5, 4, seed=12)
    loss = HypersphericalPriorLoss(4, "moderate").double()
    m, s = mu.clone().requires_grad_(), sigma.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: loss(a, b), (m, s))
