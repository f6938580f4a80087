"""Tests for spherevae.distributions.samplers.

References are independent of the code under test: a positive-term Bessel series summed
in log space (no cancellation, valid at every order and argument), the closed form of the
n = 3 normaliser, scipy.stats.vonmises_fisher where scipy is accurate, Monte Carlo
integrals, and scikit-learn's GaussianMixture.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.special as sp
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import vonmises_fisher
from torch import nn

from spherevae.distributions.bessel import bessel_ratio, log_bessel_iv
from spherevae.distributions.gaussians import FittedGaussian, GaussianMixture
from spherevae.distributions.samplers import (
    SAMPLERS,
    fit_sampler,
    sampler_from_state,
    sampler_to_state,
)
from spherevae.distributions.vmf import VonMisesFisher, mean_resultant_length_to_concentration
from spherevae.geometry.coordinates import project_to_sphere
from spherevae.models.inference import decode_samples

DIMS = [2, 3, 128, 1000, 4096]
KAPPAS = [0.0, 1e-3, 1.0, 100.0, 1e5]


def ref_log_iv(v: float, x: float) -> float:
    """log I_v(x) from its power series, every term positive, summed in log space."""
    terms = int(x + 60 * math.sqrt(x + 1) + 200)  # the terms peak near j ~ x/2
    j = np.arange(terms, dtype=np.float64)
    t = (2 * j + v) * math.log(x / 2) - sp.gammaln(j + 1) - sp.gammaln(j + v + 1)
    top = t.max()
    return float(top + math.log(np.exp(t - top).sum()))


def ref_log_area(n: int) -> float:
    """log |S^{n-1}| = log(2 pi^{n/2} / Gamma(n/2))."""
    return math.log(2) + n / 2 * math.log(math.pi) - math.lgamma(n / 2)


def unit(n: int, seed: int = 0) -> torch.Tensor:
    x = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return x / x.norm()


# ---------------------------------------------------------------------------- Bessel


@pytest.mark.parametrize("v", [0.0, 0.5, 1.0, 9.5, 49.5, 50.0, 63.0, 499.0, 2047.0])
def test_log_bessel_iv_matches_positive_series(v: float) -> None:
    xs = [1e-3, 0.1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5]
    got = log_bessel_iv(v, torch.tensor(xs, dtype=torch.float64))
    ref = torch.tensor([ref_log_iv(v, x) for x in xs], dtype=torch.float64)
    assert torch.allclose(got, ref, rtol=1e-11, atol=1e-11)


def test_log_bessel_iv_matches_scipy_where_scipy_is_representable() -> None:
    v, x = 2.5, torch.tensor([0.3, 7.0, 700.0], dtype=torch.float64)
    ref = torch.log(torch.from_numpy(sp.ive(v, x.numpy()))) + x
    assert torch.allclose(log_bessel_iv(v, x), ref, rtol=1e-12)


def test_log_bessel_iv_at_zero() -> None:
    x = torch.zeros(2, dtype=torch.float64)
    assert torch.equal(log_bessel_iv(0.0, x), torch.zeros(2, dtype=torch.float64))
    assert torch.isneginf(log_bessel_iv(3.0, x)).all()


@pytest.mark.parametrize("v", [0.0, 1.5, 63.0, 2047.0])
def test_bessel_ratio_matches_series_and_lies_in_unit_interval(v: float) -> None:
    xs = [1e-3, 1.0, 50.0, 1e3, 1e5]
    got = bessel_ratio(v, torch.tensor(xs, dtype=torch.float64))
    ref = torch.tensor([math.exp(ref_log_iv(v + 1, x) - ref_log_iv(v, x)) for x in xs], dtype=torch.float64)
    assert torch.allclose(got, ref, rtol=1e-10)
    assert ((got > 0) & (got < 1)).all()
    assert bessel_ratio(v, torch.zeros(1, dtype=torch.float64)).item() == 0.0


@pytest.mark.parametrize("v", [0.0, 0.5, 1.0, 31.0, 63.0, 499.0])
def test_one_minus_bessel_ratio_keeps_its_digits_at_large_x(v: float) -> None:
    # 1 - I_{v+1}/I_v ~ (2v+1)/(2x) is what the vMF concentration solver inverts: a
    # ratio taken as exp(log I_{v+1} - log I_v) keeps only ~5 of its digits at x = 1e5
    # (found by hypothesis: kappa 1e5, n = 2 came back as 100000.5). Reference: scipy's
    # exponentially scaled ive, whose ratio is free of that cancellation.
    xs = np.array([1e3, 1e4, 3e4, 1e5])  # scipy's ive underflows at order 499, x = 100
    got = 1.0 - bessel_ratio(v, torch.from_numpy(xs)).numpy()
    ref = 1.0 - sp.ive(v + 1, xs) / sp.ive(v, xs)
    np.testing.assert_allclose(got, ref, rtol=1e-9)


@pytest.mark.parametrize("v", [0.5, 20.0, 511.0])
def test_log_bessel_gradient_is_the_bessel_identity(v: float) -> None:
    # d/dx log I_v(x) = I_{v+1}(x)/I_v(x) + v/x  (DLMF 10.29.2)
    x = torch.tensor([0.01, 3.0, 300.0, 3e4], dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(log_bessel_iv(v, x).sum(), x)
    expected = bessel_ratio(v, x.detach()) + v / x.detach()
    assert torch.allclose(grad, expected, rtol=1e-9)


@given(
    n=st.integers(2, 4096),
    log_kappa=st.floats(-3.0, 5.0),
)
def test_concentration_solver_inverts_the_bessel_ratio(n: int, log_kappa: float) -> None:
    kappa = torch.tensor(10.0**log_kappa, dtype=torch.float64)
    r = bessel_ratio(n / 2 - 1, kappa)
    solved = mean_resultant_length_to_concentration(r, n)
    assert torch.isfinite(solved)
    assert torch.allclose(solved, kappa, rtol=1e-6)


def test_concentration_solver_edges() -> None:
    assert mean_resultant_length_to_concentration(torch.tensor(0.0), 10).item() == 0.0
    huge = mean_resultant_length_to_concentration(torch.tensor(1.0), 10)
    assert torch.isfinite(huge) and huge > 1e12


@pytest.mark.parametrize("n", [2, 3, 16, 128, 1000])
@pytest.mark.parametrize("kappa", [1e4, 1e6, 1e8, 1e9])
def test_concentration_solver_at_large_kappa(n: int, kappa: float) -> None:
    """Far above the Newton range (kappa > 100 n) the solver inverts 1 - A_n exactly
    computed by scipy (ive ratio, no cancellation) to 1e-6, finite, never 1e300."""
    v = n / 2 - 1
    one_minus_a = (sp.ive(v, kappa) - sp.ive(v + 1, kappa)) / sp.ive(v, kappa)
    r = torch.tensor(1.0 - one_minus_a, dtype=torch.float64)
    solved = mean_resultant_length_to_concentration(r, n)
    # r itself is rounded to 1e-16, which moves kappa by kappa * 1e-16 / (1 - r).
    rtol = 1e-6 + 4e-16 / one_minus_a
    assert torch.isfinite(solved) and abs(float(solved) / kappa - 1) < rtol


def test_vmf_fit_of_nearly_identical_latents_is_finite_and_concentrated() -> None:
    """Tightly concentrated latents (1 - R ~ 5e-7, the evaluate failure) and identical
    ones (R = 1) fit a finite, huge kappa, and sampling it gives finite points next to
    the mean direction on the model's sphere."""
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(1, 16, generator=gen)
    near = project_to_sphere(base + 1e-3 * torch.randn(17, 16, generator=gen), 4.0)
    for z in (near, base.expand(5, 16).clone()):
        vmf = VonMisesFisher.fit(z)
        assert torch.isfinite(vmf.concentration) and float(vmf.concentration) > 1e6
        x = fit_sampler("vmf", z, radius=4.0).sample(500, generator=gen)
        assert torch.isfinite(x).all()
        torch.testing.assert_close(x.norm(dim=-1), torch.full((500,), 4.0), rtol=1e-5, atol=0)
        cos = (x / 4.0) @ vmf.loc
        assert float(cos.min()) > 1 - 1e-5


# ---------------------------------------------------------------------------- vMF density


@pytest.mark.parametrize("n", [2, 3, 10, 128])
@pytest.mark.parametrize("kappa", [0.5, 10.0, 100.0])
def test_log_prob_and_entropy_match_scipy(n: int, kappa: float) -> None:
    loc = unit(n, seed=n)
    dist = VonMisesFisher(loc, kappa)
    ref = vonmises_fisher(loc.numpy(), kappa)
    x = torch.from_numpy(ref.rvs(5, random_state=1))
    assert torch.allclose(dist.log_prob(x), torch.from_numpy(ref.logpdf(x.numpy())), atol=1e-9, rtol=1e-12)
    assert math.isclose(dist.entropy().item(), float(ref.entropy()), rel_tol=1e-10, abs_tol=1e-9)


@pytest.mark.parametrize("kappa", [1e-3, 0.5, 30.0, 700.0, 1e5])
def test_log_prob_n3_matches_closed_form(kappa: float) -> None:
    # C_3 = kappa / (4 pi sinh kappa), written with exp(-2 kappa) so it never overflows.
    log_c3 = math.log(kappa) - math.log(2 * math.pi) - kappa - math.log1p(-math.exp(-2 * kappa))
    dist = VonMisesFisher(torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64), kappa)
    assert math.isclose(dist.log_normalizer().item(), log_c3, rel_tol=1e-12, abs_tol=1e-10)


@pytest.mark.parametrize("n", DIMS)
def test_zero_concentration_is_uniform(n: int) -> None:
    dist = VonMisesFisher(unit(n), 0.0)
    assert math.isclose(dist.log_normalizer().item(), -ref_log_area(n), rel_tol=1e-12)
    assert math.isclose(dist.entropy().item(), ref_log_area(n), rel_tol=1e-12)


@pytest.mark.parametrize("kappa", [0.0, 1.0, 4.0])
def test_log_prob_integrates_to_one_on_s2(kappa: float) -> None:
    # Monte Carlo: E_uniform[p(x)] * |S^2| = 1.
    g = torch.Generator().manual_seed(0)
    u = torch.randn(200_000, 3, dtype=torch.float64, generator=g)
    u = u / u.norm(dim=-1, keepdim=True)
    p = VonMisesFisher(unit(3), kappa).log_prob(u).exp() * 4 * math.pi
    stderr = p.std().item() / math.sqrt(p.numel())
    assert abs(p.mean().item() - 1.0) < 5 * stderr + 1e-12


def test_log_prob_and_entropy_are_differentiable() -> None:
    kappa = torch.tensor([1e-4, 2.0, 500.0], dtype=torch.float64, requires_grad=True)
    loc = unit(64).expand(3, 64)
    dist = VonMisesFisher(loc, kappa)
    (g_ent,) = torch.autograd.grad(dist.entropy().sum(), kappa)
    # dH/dkappa = -kappa A'(kappa) <= 0 and finite
    assert torch.isfinite(g_ent).all() and (g_ent <= 0).all()


# ---------------------------------------------------------------------------- vMF sampling


@pytest.mark.parametrize("n", DIMS)
def test_samples_and_log_probs_finite_on_the_sphere(n: int) -> None:
    g = torch.Generator().manual_seed(n)
    loc = unit(n, seed=1).float()
    for kappa in KAPPAS:
        dist = VonMisesFisher(loc, kappa)
        x = dist.sample(64, generator=g)
        assert x.shape == (64, n) and x.dtype == torch.float32
        assert torch.isfinite(x).all()
        assert torch.allclose(x.norm(dim=-1), torch.ones(64), atol=1e-5)
        assert torch.isfinite(dist.log_prob(x)).all()
        assert torch.isfinite(dist.entropy()) and torch.isfinite(dist.mean).all()
        scaled = fit_sampler("vmf", x.double() * 3.0, radius=7.0).sample(8, generator=g)
        assert torch.allclose(scaled.norm(dim=-1), torch.full((8,), 7.0, dtype=torch.float64))


@pytest.mark.parametrize(
    ("n", "kappa"),
    [(3, 1e5), (128, 300.0), (1000, 500.0), (4096, 50.0), (2, 2.0)],
)
def test_mean_resultant_length_of_samples_is_the_bessel_ratio(n: int, kappa: float) -> None:
    # scipy's fit gives kappa = 0 at n = 128 and breaks near kappa = 300; we check the
    # sample statistic against A_n(kappa) from the positive series instead.
    loc = unit(n, seed=3)
    x = VonMisesFisher(loc, kappa).sample(4000, generator=torch.Generator().manual_seed(7))
    w = x @ loc
    expected = math.exp(ref_log_iv(n / 2, kappa) - ref_log_iv(n / 2 - 1, kappa))
    assert abs(w.mean().item() - expected) < 5 * w.std().item() / math.sqrt(4000) + 1e-12
    # The component orthogonal to loc averages to zero: the rotation hits loc.
    assert (x.mean(0) - w.mean() * loc).norm() < 5 * math.sqrt((1 - w.pow(2).mean().item()) / 4000) + 1e-9


@pytest.mark.parametrize(
    ("n", "kappa"), [(3, 10.0), (128, 300.0), (1000, 1000.0), (4096, 1e4), (2, 1e5), (64, 20.0)]
)
def test_fit_recovers_its_own_parameters(n: int, kappa: float) -> None:
    loc = unit(n, seed=11)
    x = VonMisesFisher(loc, kappa).sample(3000, generator=torch.Generator().manual_seed(5))
    fitted = VonMisesFisher.fit(x * 2.5)  # rows are normalised, the radius does not matter
    assert abs(fitted.concentration.item() / kappa - 1) < 0.08
    assert fitted.loc @ loc > 1 - 10 / kappa


def test_fit_matches_scipy_where_scipy_works() -> None:
    x = vonmises_fisher(unit(3).numpy(), 10.0).rvs(2000, random_state=3)
    mu_ref, kappa_ref = vonmises_fisher.fit(x)
    fitted = VonMisesFisher.fit(torch.from_numpy(x))
    assert math.isclose(fitted.concentration.item(), kappa_ref, rel_tol=1e-6)
    assert torch.allclose(fitted.loc, torch.from_numpy(mu_ref), atol=1e-8)


def test_entropy_matches_monte_carlo_where_scipy_cannot_sample_fast() -> None:
    dist = VonMisesFisher(unit(1000), 500.0)
    lp = dist.log_prob(dist.sample(4000, generator=torch.Generator().manual_seed(2)))
    assert abs(-lp.mean().item() - dist.entropy().item()) < 5 * lp.std().item() / math.sqrt(4000)


@pytest.mark.parametrize("pole", [1.0, -1.0])
def test_rotation_is_exact_at_both_poles(pole: float) -> None:
    loc = torch.zeros(5, dtype=torch.float64)
    loc[0] = pole
    x = VonMisesFisher(loc, 1e5).sample(100, generator=torch.Generator().manual_seed(0))
    assert (x @ loc > 0.999).all()


@pytest.mark.parametrize(("n", "kappa"), [(2, 1e5), (2, 0.0), (4096, 1e5), (4096, 1e-3)])
def test_sampler_at_extremes_gives_unit_vectors_with_the_right_mean_cosine(n, kappa) -> None:
    """Wood's rejection sampler at extreme (n, kappa): finite unit vectors whose mean cosine
    to the mean direction matches the vMF's mean resultant length A_n(kappa)."""
    loc = unit(n)
    dist = VonMisesFisher(loc, kappa)
    x = dist.sample(2000, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(x).all()
    torch.testing.assert_close(x.norm(dim=-1), torch.ones(2000, dtype=x.dtype), rtol=0, atol=1e-9)
    cos = x @ loc
    want = float(dist.mean_resultant_length)
    assert abs(float(cos.mean()) - want) < 5 * float(cos.std()) / math.sqrt(2000) + 1e-6


def test_batched_parameters_and_seeding() -> None:
    loc = torch.randn(2, 3, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    kappa = torch.tensor([0.0, 5.0, 1e4], dtype=torch.float64)
    dist = VonMisesFisher(loc, kappa)
    assert dist.batch_shape == (2, 3) and dist.event_shape == (16,)
    a = dist.sample((4,), generator=torch.Generator().manual_seed(9))
    b = dist.sample((4,), generator=torch.Generator().manual_seed(9))
    c = dist.sample((4,), generator=torch.Generator().manual_seed(10))
    assert a.shape == (4, 2, 3, 16) and torch.equal(a, b) and not torch.equal(a, c)
    assert dist.log_prob(a).shape == (4, 2, 3)
    assert ((a[:, :, 2] * dist.loc[:, 2]).sum(-1) > 0.99).all()  # kappa = 1e4 sits on its loc


def test_vmf_validation_errors() -> None:
    with pytest.raises(ValueError, match="concentration"):
        VonMisesFisher(unit(4), -1.0)
    with pytest.raises(ValueError, match="non-zero"):
        VonMisesFisher(torch.zeros(4), 1.0)
    with pytest.raises(TypeError, match="loc"):
        VonMisesFisher(torch.ones(4, dtype=torch.int64), 1.0)
    with pytest.raises(ValueError, match="zero rows"):
        VonMisesFisher.fit(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="z must have shape"):
        VonMisesFisher.fit(torch.ones(4))
    with pytest.raises(ValueError):
        VonMisesFisher(unit(4), 1.0, validate_args=True).log_prob(2 * unit(4))


# ---------------------------------------------------------------------------- Gaussian fits


def test_fitted_gaussian_recovers_mean_and_covariance() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(6, 6, dtype=torch.float64, generator=g)
    cov = a @ a.T + 0.1 * torch.eye(6, dtype=torch.float64)
    mean = torch.arange(6, dtype=torch.float64)
    z = mean + torch.randn(50_000, 6, dtype=torch.float64, generator=g) @ torch.linalg.cholesky(cov).T
    fitted = FittedGaussian.fit(z)
    assert torch.allclose(fitted.mean, mean, atol=0.05)
    assert torch.allclose(fitted.covariance, cov, atol=0.15)
    again = FittedGaussian.fit(fitted.sample(50_000, generator=g))
    assert torch.allclose(again.covariance, fitted.covariance, atol=0.15)


def test_fitted_gaussian_handles_singular_covariance() -> None:
    z = torch.randn(100, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    z = torch.cat([z, z[:, :1]], 1)  # rank 2 in R^3
    x = FittedGaussian.fit(z).sample(10, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(x).all()


def _two_blobs(num: int, g: torch.Generator) -> torch.Tensor:
    first = torch.randn(num // 4, 3, dtype=torch.float64, generator=g) * 0.5 + 5.0
    second = torch.randn(num - num // 4, 3, dtype=torch.float64, generator=g) @ torch.diag(
        torch.tensor([1.0, 0.3, 2.0], dtype=torch.float64)
    )
    return torch.cat([first, second])


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_gmm_recovers_a_two_component_mixture(covariance_type: str) -> None:
    z = _two_blobs(8000, torch.Generator().manual_seed(0))
    gmm = GaussianMixture.fit(z, 2, covariance_type=covariance_type, seed=1)
    order = gmm.means[:, 0].argsort()
    assert torch.allclose(gmm.weights[order], torch.tensor([0.75, 0.25], dtype=torch.float64), atol=0.02)
    assert torch.allclose(gmm.means[order][1], torch.full((3,), 5.0, dtype=torch.float64), atol=0.05)
    x = gmm.sample(8000, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(x.mean(0), z.mean(0), atol=0.1)
    assert torch.allclose(torch.cov(x.T), torch.cov(z.T), rtol=0.1, atol=0.15)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_gmm_likelihood_matches_sklearn(covariance_type: str) -> None:
    skm = pytest.importorskip("sklearn.mixture")
    z = _two_blobs(3000, torch.Generator().manual_seed(4))
    ours = GaussianMixture.fit(z, 2, covariance_type=covariance_type, seed=0)
    ref = skm.GaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(z.numpy())
    assert math.isclose(ours.score(z), ref.score(z.numpy()), abs_tol=2e-3)


def test_gmm_is_seeded() -> None:
    z = torch.randn(300, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    a = GaussianMixture.fit(z, 3, seed=5).means
    b = GaussianMixture.fit(z, 3, seed=5).means
    assert torch.equal(a, b)


# ---------------------------------------------------------------------------- registry


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_fit_sampler_every_name(name: str) -> None:
    n = 8
    g = torch.Generator().manual_seed(0)
    z = VonMisesFisher(unit(n).float(), 20.0).sample(500, generator=g) * math.sqrt(n)
    sampler = fit_sampler(name, z, seed=0)
    x = sampler.sample(100, generator=torch.Generator().manual_seed(1))
    y = sampler.sample(100, generator=torch.Generator().manual_seed(1))
    assert x.shape == (100, n) and x.dtype == z.dtype and torch.isfinite(x).all() and torch.equal(x, y)
    if SAMPLERS[name].support == "sphere":
        assert torch.allclose(x.norm(dim=-1), torch.full((100,), math.sqrt(n)), rtol=1e-5)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_checks_its_sample_shape_in_one_line(name: str) -> None:
    """A non-negative int or a tuple of them (0 gives no rows); anything else is one
    ValueError/TypeError naming sample_shape, never torch's low-level errors."""
    z = torch.randn(40, 5, generator=torch.Generator().manual_seed(0))
    sampler = fit_sampler(name, z, seed=0)
    for shape, want in ((0, (0, 5)), ((2, 3), (2, 3, 5)), (np.int64(2), (2, 5)), ([1, 0], (1, 0, 5))):
        assert sampler.sample(shape).shape == want
    for bad, error in ((-1, ValueError), ((2, -1), ValueError), (2.5, TypeError), ((2.0,), TypeError),
                       (True, TypeError), ("3", TypeError), (None, TypeError)):
        with pytest.raises(error, match=r"^sample_shape must be a non-negative int or a tuple of them, got"):
            sampler.sample(bad)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_round_trips_through_plain_tensors(name: str) -> None:
    n = 6
    z = VonMisesFisher(unit(n).float(), 30.0).sample(300, generator=torch.Generator().manual_seed(0)) * 2.0
    sampler = fit_sampler(name, z, radius=2.0, seed=0)
    tensors, meta = sampler_to_state(sampler)
    assert all(type(v) is torch.Tensor for v in tensors.values())
    meta = json.loads(json.dumps(meta))  # JSON-able, nothing else
    back = sampler_from_state({k: v.clone() for k, v in tensors.items()}, meta)
    a = sampler.sample(50, generator=torch.Generator().manual_seed(3))
    b = back.sample(50, generator=torch.Generator().manual_seed(3))
    assert a.shape == b.shape == (50, n) and torch.allclose(a, b, atol=1e-6)
    with pytest.raises(ValueError, match="sampler state type"):
        sampler_from_state(tensors, {**meta, "type": "os.system"})


def test_registry_entries_declare_their_support() -> None:
    for name, spec in SAMPLERS.items():
        assert spec.support in {"sphere", "euclidean"} and spec.summary, name
    assert {n for n, s in SAMPLERS.items() if not s.fitted} == {"prior", "prior_sphere"}


def test_gaussian_sphere_keeps_mean_direction_and_vmf_keeps_concentration() -> None:
    n = 16
    z = VonMisesFisher(unit(n), 50.0).sample(4000, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    for name in ("vmf", "gaussian_sphere"):
        x = fit_sampler(name, z, radius=1.0).sample(4000, generator=g)
        fitted = VonMisesFisher.fit(x)
        assert fitted.loc @ unit(n) > 0.99
    x = fit_sampler("vmf", z, radius=1.0).sample(4000, generator=g)
    assert abs(VonMisesFisher.fit(x).concentration.item() / 50.0 - 1) < 0.1


def test_fit_sampler_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match=r"one of \['esag', 'gaussian', 'gaussian_sphere', 'gmm'"):
        fit_sampler("flow", torch.randn(10, 3))
    with pytest.raises(ValueError, match="radius"):
        fit_sampler("vmf", torch.randn(10, 3), radius=-1.0)


# ---------------------------------------------------------------------------- decoding


class _TinyDecoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 12), nn.BatchNorm1d(12), nn.Sigmoid())

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).reshape(-1, 1, 3, 4)


def test_decode_samples_batches_in_eval_mode_without_grad() -> None:
    torch.manual_seed(0)  # only for the weights of the test network
    model = _TinyDecoder().train()
    z = torch.randn(23, 4, generator=torch.Generator().manual_seed(0))
    images = decode_samples(model, z, batch_size=5)
    assert model.training  # restored
    model.eval()
    with torch.no_grad():
        expected = model.decode(z)
    assert images.shape == (23, 1, 3, 4) and not images.requires_grad
    assert torch.allclose(images, expected)
    with pytest.raises(TypeError, match="decode"):
        decode_samples(nn.Linear(2, 2), z)


@given(
    n=st.sampled_from([2, 3, 17, 128, 1000, 4096]),
    log_kappa=st.floats(-3.0, 5.0),
    seed=st.integers(0, 2**16),
)
def test_vmf_density_properties(n: int, log_kappa: float, seed: int) -> None:
    # Mode at loc; entropy below the uniform's log|S^{n-1}| and decreasing in kappa.
    kappa = 10.0**log_kappa
    dist = VonMisesFisher(unit(n, seed), kappa)
    other = unit(n, seed + 1)
    assert dist.log_prob(dist.loc) >= dist.log_prob(other)
    h = dist.entropy().item()
    assert math.isfinite(h) and h <= ref_log_area(n) + 1e-9
    assert VonMisesFisher(unit(n, seed), 2 * kappa).entropy().item() <= h + 1e-9


class _Shifted:
    """A toy fitted sampler with a saved form (docs/design.md "Adding a sampler")."""

    def __init__(self, loc: torch.Tensor) -> None:
        self.loc = loc

    def sample(self, num: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.loc + torch.randn(num, self.loc.shape[0], generator=generator)

    def to_state(self):
        return {"loc": self.loc}, {"note": "toy"}

    @classmethod
    def from_state(cls, tensors, hparams):
        assert hparams == {"note": "toy"}
        return cls(tensors["loc"])


def test_a_sampler_registered_with_state_types_saves_and_loads(monkeypatch) -> None:
    from spherevae.distributions.samplers import (
        SAMPLERS,
        SamplerSpec,
        sampler_from_state,
        sampler_to_state,
    )

    toy = _Shifted(torch.arange(4.0))
    with pytest.raises(TypeError, match="cannot serialise a _Shifted"):
        sampler_to_state(toy)  # not registered: refused, never pickled
    monkeypatch.setitem(SAMPLERS, "shifted", SamplerSpec(
        lambda z, radius, seed: _Shifted(z.mean(0)), "euclidean", True, "toy", (_Shifted,)))
    tensors, meta = sampler_to_state(toy)
    assert meta == {"type": "_Shifted", "hparams": {"note": "toy"}}
    back = sampler_from_state(tensors, meta)
    assert isinstance(back, _Shifted) and torch.equal(back.loc, toy.loc)
    monkeypatch.delitem(SAMPLERS, "shifted")
    with pytest.raises(ValueError, match="sampler state type"):
        sampler_from_state(tensors, meta)  # a file may only name a registered class
