"""Theory functions against Monte Carlo, scipy, numerical integration and closed forms.

Monte Carlo draws are seeded; tolerances are 5 standard errors of the estimate.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import integrate, stats

from spherevae.geometry.coordinates import from_hyperspherical
from spherevae.geometry.theory import (
    angular_volume_fraction,
    chi_mean,
    cos_phi_cdf,
    cos_phi_density,
    cos_phi_distribution,
    cos_phi_moments,
    equatorial_band_fraction,
    exact_angular_volume_fraction,
    log_angular_volume_fraction,
    log_volume_element,
    pairwise_angle_density,
    paper_concentration_bound,
    radial_volume_fraction,
)

RNG_SEED = 20261124


def gaussian(num: int, n: int, seed: int = RNG_SEED) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((num, n))


def cosines_numpy(x: np.ndarray) -> np.ndarray:
    """cos phi_k = x_k / ||x_{k..n}||, with a plain reversed cumulative sum (independent code)."""
    tails = np.sqrt(np.cumsum((x * x)[:, ::-1], axis=1)[:, ::-1])
    return (x / tails)[:, :-1]


# ----------------------------------------------------------- volume element


@pytest.mark.parametrize("n", [2, 3, 4, 6])
def test_volume_element_is_the_jacobian_determinant(n: int) -> None:
    g = torch.Generator().manual_seed(n)
    for _ in range(5):
        r = torch.rand((), generator=g, dtype=torch.float64) * 2 + 0.1
        phi = torch.rand(n - 1, generator=g, dtype=torch.float64) * math.pi
        jac = torch.autograd.functional.jacobian(
            lambda v: from_hyperspherical(v[0], v[1:]), torch.cat([r.reshape(1), phi])
        )
        det = abs(torch.linalg.det(jac).item())
        assert math.exp(log_volume_element(r, phi).item()) == pytest.approx(det, rel=1e-10)


def test_volume_element_integrates_to_the_ball_volume() -> None:
    # Monte Carlo over the coordinate box [0,1] x [0,pi]^{n-2} x [0,2pi): the mean of
    # the element times the box volume is the unit ball's volume pi^{n/2}/Gamma(n/2+1).
    n, num = 5, 400_000
    rng = np.random.default_rng(RNG_SEED)
    r = torch.from_numpy(rng.random(num))
    phi = torch.from_numpy(np.concatenate(
        [rng.random((num, n - 2)) * math.pi, rng.random((num, 1)) * 2 * math.pi], axis=1
    ))
    w = torch.exp(log_volume_element(r, phi)).numpy() * math.pi ** (n - 2) * 2 * math.pi
    exact = math.pi ** (n / 2) / math.gamma(n / 2 + 1)
    assert abs(w.mean() - exact) < 5 * w.std() / math.sqrt(num)


def test_volume_element_huge_n_finite_in_log_space() -> None:
    phi = torch.full((4095,), 1.0, dtype=torch.float64)
    v = log_volume_element(torch.tensor(64.0, dtype=torch.float64), phi)
    assert torch.isfinite(v)
    with pytest.raises(ValueError, match="shape"):
        log_volume_element(torch.ones(3), torch.ones(2, 4))


# --------------------------------------------------------------- Fig 3


def test_volume_fractions_closed_forms_and_edges() -> None:
    t = np.array([0.0, 0.1, 0.5, 1.0])
    np.testing.assert_allclose(angular_volume_fraction(t, 3), (1 - t) ** 3)
    np.testing.assert_allclose(radial_volume_fraction(t, 3), (1 - t) ** 2)
    assert angular_volume_fraction(0.0, 20) == 1.0 and angular_volume_fraction(1.0, 20) == 0.0
    assert np.isfinite(log_angular_volume_fraction(0.01, 4096))
    assert log_angular_volume_fraction(0.01, 4096) == pytest.approx(4096 * 4095 / 2 * math.log(0.99))
    # n = 20: a 5% angular shrink removes far more volume than a 5% radial one.
    assert angular_volume_fraction(0.05, 20) < 1e-3 < 0.3 < radial_volume_fraction(0.05, 20)
    with pytest.raises(ValueError, match="t must lie in"):
        angular_volume_fraction(1.5, 3)
    with pytest.raises(ValueError, match="n must be an integer >= 2"):
        radial_volume_fraction(0.5, 1)


@pytest.mark.parametrize("n", [3, 5, 8])
def test_angular_fraction_by_monte_carlo(n: int) -> None:
    """Weight uniform angles in [0, phi0]^{n-1} by the volume element: the share of the
    weight inside [0, phi0 (1-t)]^{n-1} is the volume fraction; small phi0 matches Fig 3."""
    phi0, t, num = 0.05, 0.2, 400_000
    rng = np.random.default_rng(RNG_SEED + n)
    phi = torch.from_numpy(rng.random((num, n - 1)) * phi0)
    w = torch.exp(log_volume_element(torch.ones(num, dtype=torch.float64), phi)).numpy()
    inside = (phi.numpy() <= phi0 * (1 - t)).all(axis=1)
    frac = (w * inside).sum() / w.sum()
    se = math.sqrt(np.mean((w * inside / w.mean() - frac) ** 2) / num)
    exact = exact_angular_volume_fraction(t, n, phi0)
    assert abs(frac - exact) < 5 * se
    assert exact == pytest.approx(angular_volume_fraction(t, n), rel=1e-2)


def test_radial_fraction_by_monte_carlo() -> None:
    """Area of the sphere of radius rho is proportional to the density of |x| at rho for
    x uniform in the ball: the density ratio of two thin shells is (rho_1/rho_2)^{n-1}."""
    n, num, half = 6, 2_000_000, 0.002
    x = gaussian(num, n)
    direction = x / np.linalg.norm(x, axis=1, keepdims=True)
    points = direction * np.random.default_rng(1).random((num, 1)) ** (1 / n)  # uniform in the ball
    radius = np.linalg.norm(points, axis=1)
    inner, outer = 0.81, 0.99
    a = (np.abs(radius - inner) < half).sum()
    b = (np.abs(radius - outer) < half).sum()
    t = 1 - inner / outer
    expected = float(radial_volume_fraction(t, n))
    assert abs(a / b - expected) < 5 * expected * math.sqrt(1 / a + 1 / b)


# ------------------------------------------------------------- Figs 4-5


@pytest.mark.parametrize("n", [2, 3, 10, 100])
def test_chi_mean_and_pairwise_angles_by_monte_carlo(n: int) -> None:
    x = gaussian(100_000, n)
    norms = np.linalg.norm(x, axis=1)
    assert abs(norms.mean() - chi_mean(n)) < 5 * norms.std() / math.sqrt(norms.size)
    assert chi_mean(n) == pytest.approx(stats.chi(n).mean(), rel=1e-12)
    y = gaussian(100_000, n, seed=RNG_SEED + 1)
    cos = (x * y).sum(1) / (norms * np.linalg.norm(y, axis=1))
    theta = np.arccos(np.clip(cos, -1, 1))
    total = integrate.quad(lambda a: pairwise_angle_density(a, n), 0, math.pi)[0]
    assert total == pytest.approx(1.0, abs=1e-6)
    for lo, hi in [(0.0, 1.0), (1.2, 1.9)]:
        p = integrate.quad(lambda a: pairwise_angle_density(a, n), lo, hi)[0]
        hits = ((theta >= lo) & (theta < hi)).mean()
        assert abs(hits - p) < 5 * math.sqrt(p * (1 - p) / theta.size) + 1e-9


@pytest.mark.parametrize("n", [2, 3, 20, 300])
def test_band_fraction_by_monte_carlo_and_closed_forms(n: int) -> None:
    x = gaussian(200_000, n)
    z1 = x[:, 0] / np.linalg.norm(x, axis=1)
    for h in (0.05, 0.2, 0.5):
        p = float(equatorial_band_fraction(h, n))
        hits = (np.abs(z1) <= h).mean()
        assert abs(hits - p) < 5 * math.sqrt(p * (1 - p) / z1.size) + 1e-9
    # Closed forms: n = 3 (Archimedes: uniform z), n = 2 (arcsine).
    if n == 3:
        assert float(equatorial_band_fraction(0.3, 3)) == pytest.approx(0.3)
    if n == 2:
        assert float(equatorial_band_fraction(0.5, 2)) == pytest.approx(2 * math.asin(0.5) / math.pi)


def test_paper_eq12_as_printed_fails_but_holds_with_half_width_eps() -> None:
    """Finding: eq 12 with a band of half-width eps/2 is violated; with half-width eps it holds."""
    violations = 0
    for n in (10, 100, 1000, 4096):
        for eps in np.linspace(0.01, 1.0, 50):
            bound = float(paper_concentration_bound(eps, n))
            assert float(equatorial_band_fraction(eps, n)) >= bound - 1e-12
            violations += float(equatorial_band_fraction(eps / 2, n)) < bound
    assert violations > 0
    assert float(equatorial_band_fraction(0.15, 100)) == pytest.approx(0.866, abs=1e-3)
    assert float(paper_concentration_bound(0.3, 100)) == pytest.approx(0.972, abs=1e-3)


@given(st.integers(2, 2000), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_band_fraction_properties(n: int, a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    f_lo, f_hi = float(equatorial_band_fraction(lo, n)), float(equatorial_band_fraction(hi, n))
    assert 0.0 <= f_lo <= f_hi <= 1.0
    # Concentration: a fixed band holds more of the sphere in higher dimension.
    assert float(equatorial_band_fraction(hi, n + 1)) >= f_hi - 1e-12


# ------------------------------------------------------------------ Fig 6


@pytest.mark.parametrize("n", [2, 3, 10, 40, 256])
def test_cos_phi_distribution_by_monte_carlo(n: int) -> None:
    cos = cosines_numpy(gaussian(100_000, n))
    for k in sorted({1, max(1, n // 2), n - 1}):
        c = cos[:, k - 1]
        mean, std = cos_phi_moments(k, n)
        assert abs(c.mean() - mean) < 5 * c.std() / math.sqrt(c.size)
        assert (c * c).mean() == pytest.approx(1 / (n - k + 1), rel=0.03)
        assert std == pytest.approx(1 / math.sqrt(n - k + 1))
        # Kolmogorov-Smirnov against our CDF, and our CDF against scipy's Beta.
        assert stats.kstest(c, lambda v, k=k: cos_phi_cdf(v, k, n)).pvalue > 1e-4
        grid = np.linspace(-0.99, 0.99, 23)
        np.testing.assert_allclose(cos_phi_cdf(grid, k, n), cos_phi_distribution(k, n).cdf(grid), atol=1e-12)
        np.testing.assert_allclose(cos_phi_density(grid, k, n), cos_phi_distribution(k, n).pdf(grid), rtol=1e-10)


@pytest.mark.parametrize(("k", "n"), [(1, 2), (1, 3), (2, 5), (7, 40), (1, 4096)])
def test_cos_phi_density_normalised_and_cdf_consistent(k: int, n: int) -> None:
    total = integrate.quad(lambda c: cos_phi_density(c, k, n), -1, 1, limit=200)[0]
    assert total == pytest.approx(1.0, abs=1e-6)
    part = integrate.quad(lambda c: cos_phi_density(c, k, n), -0.3, 0.1, limit=200)[0]
    assert part == pytest.approx(float(cos_phi_cdf(0.1, k, n) - cos_phi_cdf(-0.3, k, n)), abs=1e-8)


def test_cos_phi_closed_forms_and_errors() -> None:
    # m = 3 (k = n - 2): uniform on [-1, 1] (Archimedes); m = 2: arcsine.
    np.testing.assert_allclose(cos_phi_density([-0.5, 0.0, 0.7], 3, 5), 0.5)
    np.testing.assert_allclose(cos_phi_density(0.6, 1, 2), 1 / (math.pi * 0.8))
    with pytest.raises(ValueError, match=r"k must be an integer in 1\.\.n-1"):
        cos_phi_density(0.0, 5, 5)
    with pytest.raises(ValueError, match=r"k must be an integer in 1\.\.n-1"):
        cos_phi_moments(0, 5)


def test_paper_profile_is_not_the_gaussian_rms() -> None:
    """The 1/sqrt(k+1) profile is the Gaussian RMS read backwards: 1/sqrt(n-k+1)."""
    n = 64
    cos = cosines_numpy(gaussian(50_000, n))
    rms = np.sqrt((cos**2).mean(0))
    k = np.arange(1, n)
    assert np.abs(rms - 1 / np.sqrt(n - k + 1)).max() < 0.02
    assert np.abs(rms - 1 / np.sqrt(k + 1)).max() > 0.5
