"""The geometry behind the method (paper sec 1.1, 3 and appendices A.3-A.4, Figs 3-6).

Conventions as in :mod:`spherevae.geometry.coordinates`: angles ``phi_k``, ``k = 1..n-1``;
``phi_1..phi_{n-2}`` in ``[0, pi]``, ``phi_{n-1}`` in ``[0, 2 pi)``;
``cos phi_k = x_k / ||x_{k..n}||``.

Facts used throughout (all verified by Monte Carlo in ``tests/test_theory.py``):

* For ``x ~ N(0, I_n)`` (equivalently ``x`` uniform on a sphere) the tail
  ``x_{k..n} / ||x_{k..n}||`` is uniform on ``S^{m-1}`` with ``m = n - k + 1``, so
  ``cos phi_k`` is distributed as one coordinate of a uniform point on ``S^{m-1}``:
  density ``(1 - c^2)^{(m-3)/2} / B(1/2, (m-1)/2)``, mean 0, ``E[cos^2 phi_k] = 1/(n-k+1)``.
  The RMS of ``cos phi_k`` is therefore ``1/sqrt(n-k+1)``, *not* the ``1/sqrt(k+1)`` profile
  that the paper uses as a target (its "moderate" preset and the sigma targets): that
  profile is the Gaussian value read with the index reversed.
* ``x_1^2`` for ``x`` uniform on ``S^{n-1}`` is ``Beta(1/2, (n-1)/2)``, which gives the exact
  area of an equatorial band.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import special, stats

__all__ = [
    "angular_volume_fraction",
    "chi_mean",
    "cos_phi_cdf",
    "cos_phi_density",
    "cos_phi_distribution",
    "cos_phi_moments",
    "equatorial_band_fraction",
    "exact_angular_volume_fraction",
    "log_angular_volume_fraction",
    "log_radial_volume_fraction",
    "log_volume_element",
    "pairwise_angle_density",
    "paper_concentration_bound",
    "radial_volume_fraction",
    "volume_element",
]


def _check_n(n: int, name: str = "n", minimum: int = 2) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {n!r}")
    return int(n)


def _check_k(k: int, n: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n - 1:
        raise ValueError(f"k must be an integer in 1..n-1 = 1..{n - 1}, got {k!r}")
    return int(k)


def _check_unit_interval(t: np.ndarray | float, name: str) -> np.ndarray:
    arr = np.asarray(t, dtype=np.float64)
    if not np.all(np.isfinite(arr)) or np.any(arr < 0) or np.any(arr > 1):
        raise ValueError(f"{name} must lie in [0, 1], got values in [{arr.min()}, {arr.max()}]")
    return arr


# ------------------------------------------------------------------ A.3, eq 11


def log_volume_element(r: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
    """``log |dV / (dr dphi_1 .. dphi_{n-1})|`` in R^n (paper eq 11 times ``dr``).

    ``dV = r^{n-1} prod_{k=1}^{n-2} sin^{n-1-k}(phi_k) dr dphi_1 .. dphi_{n-1}``, the
    absolute Jacobian determinant of :func:`spherevae.geometry.coordinates.from_hyperspherical`;
    the same factor without ``dr`` is the area element of the sphere ``S_r^{n-1}``.

    Args:
        r: ``(...)``; phi: ``(..., n-1)``. Returns ``(...)``; ``-inf`` where a factor is 0.
        Log space, so it stays finite for ``n`` in the thousands.
    """
    if tuple(r.shape) != tuple(phi.shape[:-1]) or phi.dim() < 1 or phi.shape[-1] < 1:
        raise ValueError(
            f"r must have shape phi.shape[:-1] and phi (..., n-1) with n >= 2; got r "
            f"{tuple(r.shape)} and phi {tuple(phi.shape)}"
        )
    n = phi.shape[-1] + 1
    powers = torch.arange(n - 2, 0, -1, dtype=phi.dtype, device=phi.device)  # n-2 .. 1
    log_sin = torch.log(torch.sin(phi[..., : n - 2]).abs())
    return (n - 1) * torch.log(r.abs()) + (powers * log_sin).sum(-1)


def volume_element(r: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
    """``exp(log_volume_element(r, phi))``; see there."""
    return torch.exp(log_volume_element(r, phi))


# ------------------------------------------------------------------- Fig 3


def log_angular_volume_fraction(t: np.ndarray | float, n: int) -> np.ndarray:
    """``log v_t / v_0 = n(n-1)/2 * log(1 - t)``: every angular side of the small-angle
    cube ``[0, phi_0]^{n-1}`` shrunk to ``phi_0 (1 - t)`` at fixed radius (A.3)."""
    n = _check_n(n)
    t = _check_unit_interval(t, "t")
    with np.errstate(divide="ignore"):
        return n * (n - 1) / 2 * np.log1p(-t)


def log_radial_volume_fraction(t: np.ndarray | float, n: int) -> np.ndarray:
    """``log v_t / v_0 = (n-1) log(1 - t)``: the radius (equivalently every Cartesian
    coordinate) shrunk to ``R (1 - t)`` at fixed angles (A.3)."""
    n = _check_n(n)
    t = _check_unit_interval(t, "t")
    with np.errstate(divide="ignore"):
        return (n - 1) * np.log1p(-t)


def angular_volume_fraction(t: np.ndarray | float, n: int) -> np.ndarray:
    """``(1 - t)^{n(n-1)/2}`` (Fig 3, angular curve)."""
    return np.exp(log_angular_volume_fraction(t, n))


def radial_volume_fraction(t: np.ndarray | float, n: int) -> np.ndarray:
    """``(1 - t)^{n-1}`` (Fig 3, radial/Cartesian curve)."""
    return np.exp(log_radial_volume_fraction(t, n))


def exact_angular_volume_fraction(t: float, n: int, phi0: float) -> float:
    """The angular fraction without the small-angle approximation ``sin phi ~ phi``:
    ``prod_{k=1}^{n-2} (int_0^{phi_t} sin^{n-1-k}) / (int_0^{phi_0} sin^{n-1-k}) * (1 - t)``
    with ``phi_t = phi_0 (1 - t)``, ``0 < phi_0 <= pi/2``. Tends to
    :func:`angular_volume_fraction` as ``phi_0 -> 0``."""
    n = _check_n(n)
    t = float(_check_unit_interval(t, "t"))
    if not 0 < phi0 <= math.pi / 2:
        raise ValueError(f"phi0 must lie in (0, pi/2], got {phi0!r}")
    from scipy.integrate import quad

    log_frac = math.log1p(-t) if t < 1 else -math.inf
    for p in range(1, n - 1):
        full = quad(lambda a, p=p: math.sin(a) ** p, 0, phi0)[0]
        part = quad(lambda a, p=p: math.sin(a) ** p, 0, phi0 * (1 - t))[0]
        log_frac += math.log(part / full) if part > 0 else -math.inf
    return math.exp(log_frac)


# --------------------------------------------------------------- Figs 4-5, eq 12


def chi_mean(n: int) -> float:
    """``E ||x||`` for ``x ~ N(0, I_n)``: ``sqrt(2) Gamma((n+1)/2) / Gamma(n/2)``, close to
    ``sqrt(n)`` (Fig 4: Gaussian samples concentrate on the sphere of radius ``sqrt(n)``)."""
    n = _check_n(n, minimum=1)
    return math.sqrt(2.0) * math.exp(math.lgamma((n + 1) / 2) - math.lgamma(n / 2))


def pairwise_angle_density(theta: np.ndarray | float, n: int) -> np.ndarray:
    """Density of the angle between two independent ``N(0, I_n)`` samples on ``[0, pi]``:
    ``sin^{n-2}(theta) / B(1/2, (n-1)/2)`` (Fig 5a: near-orthogonality for large n)."""
    n = _check_n(n)
    theta = np.asarray(theta, dtype=np.float64)
    log_norm = special.betaln(0.5, (n - 1) / 2)
    with np.errstate(divide="ignore"):
        out = np.exp((n - 2) * np.log(np.abs(np.sin(theta))) - log_norm) if n > 2 else np.full_like(
            theta, 1 / math.pi
        )
    return np.where((theta >= 0) & (theta <= math.pi), out, 0.0)


def equatorial_band_fraction(half_width: np.ndarray | float, n: int) -> np.ndarray:
    """Exact fraction of the area of ``S^{n-1}`` with ``|<z, y>| <= half_width`` for a unit
    ``y``: ``I_{h^2}(1/2, (n-1)/2)``, since ``<z, y>^2 ~ Beta(1/2, (n-1)/2)`` (Figs 4-5)."""
    n = _check_n(n)
    h = _check_unit_interval(half_width, "half_width")
    return special.betainc(0.5, (n - 1) / 2, h * h)


def paper_concentration_bound(eps: np.ndarray | float, n: int) -> np.ndarray:
    """The paper's eq 12 as printed: ``P[|<z, y>| <= eps/2] >= 1 - sqrt(2 pi) exp(-n eps^2 / 2)``.

    As printed (band half-width ``eps/2``) it does not hold: at ``n = 100, eps = 0.3`` the
    exact band fraction is 0.87 (:func:`equatorial_band_fraction` ``(0.15, 100)``) but the
    bound claims >= 0.97. With half-width ``eps`` (Wainwright's statement) it holds; see
    ``tests/test_theory.py``. Returned as printed, for the figure.
    """
    n = _check_n(n)
    eps = np.asarray(eps, dtype=np.float64)
    return 1.0 - math.sqrt(2 * math.pi) * np.exp(-n * eps * eps / 2)


# ------------------------------------------------------------------- Fig 6


def _tail_dim(k: int, n: int) -> int:
    n = _check_n(n)
    return n - _check_k(k, n) + 1


def cos_phi_density(c: np.ndarray | float, k: int, n: int) -> np.ndarray:
    """Density of ``cos phi_k`` for ``x ~ N(0, I_n)`` (or uniform on a sphere):
    ``(1 - c^2)^{(m-3)/2} / B(1/2, (m-1)/2)`` on ``(-1, 1)``, ``m = n - k + 1``. For the last
    angle (``m = 2``) this is the arcsine density ``1 / (pi sqrt(1 - c^2))``."""
    m = _tail_dim(k, n)
    c = np.asarray(c, dtype=np.float64)
    inside = np.abs(c) < 1
    safe = np.where(inside, c, 0.0)
    log_pdf = (m - 3) / 2 * np.log1p(-safe * safe) - special.betaln(0.5, (m - 1) / 2)
    return np.where(inside, np.exp(log_pdf), 0.0)


def cos_phi_cdf(c: np.ndarray | float, k: int, n: int) -> np.ndarray:
    """CDF of ``cos phi_k`` (see :func:`cos_phi_density`):
    ``1/2 + sign(c)/2 * I_{c^2}(1/2, (m-1)/2)``."""
    m = _tail_dim(k, n)
    c = np.clip(np.asarray(c, dtype=np.float64), -1.0, 1.0)
    return 0.5 + 0.5 * np.sign(c) * special.betainc(0.5, (m - 1) / 2, c * c)


def cos_phi_moments(k: int, n: int) -> tuple[float, float]:
    """``(E[cos phi_k], std[cos phi_k]) = (0, 1/sqrt(n-k+1))`` for Gaussian latents."""
    return 0.0, 1.0 / math.sqrt(_tail_dim(k, n))


def cos_phi_distribution(k: int, n: int) -> stats.rv_continuous:
    """``cos phi_k`` as a frozen scipy distribution: ``2 B - 1`` with
    ``B ~ Beta((m-1)/2, (m-1)/2)``, ``m = n - k + 1`` (same density as above)."""
    a = (_tail_dim(k, n) - 1) / 2
    return stats.beta(a, a, loc=-1.0, scale=2.0)
