"""Tests for spherevae.distributions.esag: the ESAG (Paine et al. 2018) in any dimension.

References are independent of the code under test: scipy quadrature of ``M_p``, closed
forms of ``M_1`` and ``M_2`` (n = 2, 3), radial quadrature of the Gaussian density of
``y ~ N(mu, V)`` along ``x`` (the definition of the projected density), a quadrature over
S^2, and numpy draws of the defining construction.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.integrate as si
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import multivariate_normal, norm

from spherevae.distributions.esag import ESAG, log_esag_m
from spherevae.geometry.sphere import frame_with_first_column

F64 = torch.float64


def ref_log_m(p: int, a: float) -> float:
    """log int_0^inf u^p phi(u - a) du by scipy quad, scaled at the integrand's mode."""
    mode = (a + math.sqrt(a * a + 4 * p)) / 2 if p > 0 else max(a, 1e-3)
    top = p * math.log(mode) - 0.5 * (mode - a) ** 2
    width = 1 / math.sqrt(1 + p / mode**2)

    def f(u: float) -> float:
        return math.exp(p * math.log(u) - 0.5 * (u - a) ** 2 - top) if u > 0 else 0.0

    left = si.quad(f, 0, mode, limit=500, epsabs=0, epsrel=1e-13)[0]
    right = si.quad(f, mode, mode + 60 * width, limit=500, epsabs=0, epsrel=1e-13)[0]
    return math.log(left + right) + top - 0.5 * math.log(2 * math.pi)


def random_esag(n: int, seed: int, norm_mu: float = 2.0, spread: float = 1.0) -> ESAG:
    """An ESAG with a random direction and a random shape V (V mu = mu, det V = 1)."""
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(n, dtype=F64, generator=g)
    mu = norm_mu * mu / mu.norm()
    b = torch.randn(n - 1, n - 1, dtype=F64, generator=g) * spread
    vc = b @ b.T + 0.5 * torch.eye(n - 1, dtype=F64)
    vc = vc / torch.exp(torch.logdet(vc) / (n - 1))
    frame = frame_with_first_column(mu / mu.norm())
    v = frame @ torch.block_diag(torch.eye(1, dtype=F64), vc) @ frame.T
    return ESAG(mu, 0.5 * (v + v.T), dtype=F64)


# ---------------------------------------------------------------------------- M_p


@pytest.mark.parametrize("p", [0, 1, 2, 127, 999])
@pytest.mark.parametrize("a", [-200.0, -30.0, -3.0, -0.2, 0.0, 0.5, 4.0, 60.0])
def test_log_m_matches_quadrature(p: int, a: float) -> None:
    ours = float(log_esag_m(p, torch.tensor([a], dtype=F64)))
    assert ours == pytest.approx(ref_log_m(p, a), rel=1e-10, abs=1e-9)


def test_log_m_closed_forms_and_gradient() -> None:
    a = torch.linspace(-20, 20, 81, dtype=F64)
    phi, cdf = torch.from_numpy(norm.pdf(a.numpy())), torch.from_numpy(norm.cdf(a.numpy()))
    assert torch.allclose(log_esag_m(0, a), torch.log(cdf), rtol=1e-10)
    assert torch.allclose(log_esag_m(1, a), torch.log(a * cdf + phi), rtol=1e-8)
    assert torch.allclose(log_esag_m(2, a), torch.log((1 + a * a) * cdf + a * phi), rtol=1e-8)
    for p in (1, 5, 127):
        x = torch.tensor([-7.0, -0.3, 0.0, 0.4, 9.0], dtype=F64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda t, p=p: log_esag_m(p, t), (x,), atol=1e-6, rtol=1e-5)


@settings(max_examples=40, deadline=None)
@given(p=st.integers(1, 300), a=st.floats(-50.0, 50.0))
def test_log_m_satisfies_the_recurrence(p: int, a: float) -> None:
    # M_{p+1} = a M_p + p M_{p-1}: checked in log space, both branches of the code.
    t = torch.tensor([a], dtype=F64)
    lo, mid, hi = (float(log_esag_m(q, t)) for q in (p - 1, p, p + 1))
    rhs = math.log(a * math.exp(mid - hi) + p * math.exp(lo - hi))
    assert abs(rhs) < 1e-9


# ---------------------------------------------------------------------------- density


@pytest.mark.parametrize(("n", "seed"), [(2, 0), (3, 1), (5, 2)])
def test_log_prob_matches_the_radial_integral_of_the_gaussian(n: int, seed: int) -> None:
    # f(x) = int_0^inf r^{n-1} N(r x; mu, V) dr: the definition of a projected normal.
    d = random_esag(n, seed)
    gauss = multivariate_normal(d.mu.numpy(), d.covariance.numpy())
    xs = torch.randn(6, n, dtype=F64, generator=torch.Generator().manual_seed(seed + 10))
    xs = torch.cat([xs / xs.norm(dim=1, keepdim=True), d.mu[None] / d.mu.norm(), -d.mu[None] / d.mu.norm()])
    ours = d.log_prob(xs)
    for x, lp in zip(xs.numpy(), ours.tolist(), strict=True):
        val = si.quad(lambda r, x=x: r ** (n - 1) * gauss.pdf(r * x), 0, np.inf, epsabs=0, epsrel=1e-11, limit=400)[0]
        assert lp == pytest.approx(math.log(val), abs=1e-7)


def test_isotropic_case_is_the_isotropic_angular_gaussian() -> None:
    # V = I: f(x) = (2 pi)^{-(n-1)/2} exp((t^2 - |mu|^2)/2) M_{n-1}(t), t = x . mu, with
    # the closed forms M_1 = a Phi + phi (circle) and M_2 = (1 + a^2) Phi + a phi (S^2).
    for n, m in ((2, lambda a: a * norm.cdf(a) + norm.pdf(a)),
                 (3, lambda a: (1 + a * a) * norm.cdf(a) + a * norm.pdf(a))):
        mu = torch.tensor([1.5, -0.7, 0.3][:n], dtype=F64)
        d = ESAG(mu, torch.eye(n, dtype=F64))
        x = torch.randn(50, n, dtype=F64, generator=torch.Generator().manual_seed(n))
        x = x / x.norm(dim=1, keepdim=True)
        t = (x @ mu).numpy()
        ref = -(n - 1) / 2 * math.log(2 * math.pi) + 0.5 * (t * t - float(mu @ mu)) + np.log(m(t))
        assert np.allclose(d.log_prob(x).numpy(), ref, rtol=1e-10, atol=1e-10)


def _sphere_grid(points: int = 120) -> tuple[torch.Tensor, torch.Tensor]:
    """Gauss-Legendre in cos(theta) x uniform in phi: nodes (M, 3) and weights (M,)."""
    c, w = np.polynomial.legendre.leggauss(points)
    phi = np.linspace(0, 2 * np.pi, 2 * points, endpoint=False)
    cc, pp = np.meshgrid(c, phi, indexing="ij")
    s = np.sqrt(1 - cc**2)
    x = np.stack([s * np.cos(pp), s * np.sin(pp), cc], -1).reshape(-1, 3)
    weights = np.repeat(w, phi.size) * (2 * np.pi / phi.size)
    return torch.from_numpy(x), torch.from_numpy(weights)


def test_density_integrates_to_one_on_s2_and_matches_sample_moments() -> None:
    d = random_esag(3, 4, norm_mu=3.0)
    x, w = _sphere_grid()
    dens = torch.exp(d.log_prob(x)) * w
    assert float(dens.sum()) == pytest.approx(1.0, abs=1e-9)
    mean_q = dens @ x
    second_q = (x * dens[:, None]).T @ x
    s = d.sample(200_000, generator=torch.Generator().manual_seed(0))
    # Monte Carlo standard errors are below 0.0023 here; 5 of them.
    assert torch.allclose(s.mean(0), mean_q, atol=0.012)
    assert torch.allclose(s.T @ s / s.shape[0], second_q, atol=0.012)


def test_sampling_matches_numpy_draws_of_the_definition() -> None:
    d = random_esag(4, 5, norm_mu=1.5)
    rng = np.random.default_rng(0)
    y = rng.multivariate_normal(d.mu.numpy(), d.covariance.numpy(), size=200_000)
    ref = y / np.linalg.norm(y, axis=1, keepdims=True)
    ours = d.sample(200_000, generator=torch.Generator().manual_seed(1)).numpy()
    assert np.allclose(ours.mean(0), ref.mean(0), atol=0.012)
    assert np.allclose(ours.T @ ours / len(ours), ref.T @ ref / len(ref), atol=0.012)
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0)


# ---------------------------------------------------------------------------- fit


def test_fit_recovers_known_parameters_n3() -> None:
    d = random_esag(3, 6, norm_mu=3.0)
    x = d.sample(20_000, generator=torch.Generator().manual_seed(2))
    f = ESAG.fit(x * 5.0)  # the fit uses directions only
    assert torch.allclose(f.mu, d.mu, atol=0.1)
    assert torch.allclose(f.covariance, d.covariance, atol=0.1)
    # Maximum likelihood: at least as likely as the true parameters on the same data.
    assert f.log_likelihood >= float(d.log_prob(x).mean()) - 1e-9
    assert torch.allclose(f.covariance @ f.mu, f.mu, atol=1e-8)
    assert float(torch.logdet(f.covariance)) == pytest.approx(0.0, abs=1e-8)


def test_fit_recovers_an_anisotropic_shape_in_16_dims() -> None:
    d = random_esag(16, 7, norm_mu=6.0, spread=0.6)
    x = d.sample(8000, generator=torch.Generator().manual_seed(3))
    f = ESAG.fit(x, max_iter=40)
    assert float((f.mu - d.mu).norm() / d.mu.norm()) < 0.05
    assert float((f.covariance - d.covariance).norm() / d.covariance.norm()) < 0.1
    assert f.log_likelihood >= float(d.log_prob(x).mean()) - 1e-9


def test_fit_edge_cases() -> None:
    # n = 2: the shape on the 1-dim complement is forced to 1, so V = I.
    x = ESAG(torch.tensor([2.0, 1.0], dtype=F64), torch.eye(2, dtype=F64)).sample(
        3000, generator=torch.Generator().manual_seed(0))
    f = ESAG.fit(x)
    assert torch.allclose(f.covariance, torch.eye(2, dtype=F64), atol=1e-9)
    assert torch.allclose(f.mu, torch.tensor([2.0, 1.0], dtype=F64), atol=0.15)
    # Fewer rows than dimensions: the likelihood is unbounded along the empty directions;
    # the fit stays a valid, finite ESAG (V's anisotropy is bounded).
    few = torch.randn(20, 40, dtype=F64, generator=torch.Generator().manual_seed(1)) + 2.0
    f = ESAG.fit(few)
    assert math.isfinite(f.log_likelihood) and torch.isfinite(f.log_prob(few / few.norm(dim=1, keepdim=True))).all()
    assert float(torch.linalg.cond(f.covariance)) < 1e10
    with pytest.raises(ValueError, match="same direction"):
        ESAG.fit(torch.tensor([[1.0, 2.0, 3.0]] * 5))
    with pytest.raises(ValueError, match="finite"):
        ESAG.fit(torch.tensor([[1.0, float("nan"), 3.0], [1.0, 2.0, 3.0]]))
    with pytest.raises(ValueError, match="at least 2 rows"):
        ESAG.fit(torch.ones(1, 3))


def test_huge_dimension() -> None:
    n = 1000
    d = ESAG(torch.full((n,), 0.5, dtype=F64), torch.eye(n, dtype=F64))
    x = d.sample(500, generator=torch.Generator().manual_seed(0))
    lp = d.log_prob(x)
    assert torch.isfinite(lp).all()
    # The mode direction is the most likely point; its antipode the least.
    m = d.mean_direction[None]
    assert bool(d.log_prob(m) > lp.max()) and bool(d.log_prob(-m) < lp.min())
    # (A fit at n = 1000 works too but takes ~10-20 s on 2 shared cores: not run here.)


def test_constructor_validates() -> None:
    mu = torch.tensor([1.0, 0.0, 0.0], dtype=F64)
    with pytest.raises(ValueError, match="V mu = mu"):
        ESAG(mu, torch.diag(torch.tensor([2.0, 0.5, 1.0], dtype=F64)))
    with pytest.raises(ValueError, match="determinant 1"):
        ESAG(mu, torch.diag(torch.tensor([1.0, 2.0, 1.0], dtype=F64)))
    with pytest.raises(ValueError, match="symmetric"):
        ESAG(mu, torch.tensor([[1.0, 0, 0], [0, 1, 0.5], [0, 0, 1]], dtype=F64))
    with pytest.raises(ValueError, match="non-zero"):
        ESAG(torch.zeros(3, dtype=F64), torch.eye(3, dtype=F64))
    with pytest.raises(ValueError, match="finite"):
        ESAG(torch.tensor([float("nan"), 0, 0], dtype=F64), torch.eye(3, dtype=F64))
    ok = ESAG(mu, torch.diag(torch.tensor([1.0, 2.0, 0.5], dtype=F64)))
    tensors, hparams = ok.to_state()
    again = ESAG.from_state(tensors, hparams)
    x = ok.sample(5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.log_prob(x), ok.log_prob(x))
