"""Geometry of latents on the sphere: replica angles (A.8-A.9), the tangent spectrum and
effective dimension of a cap, isotropic tangent noise, orthonormal frames and
reflections, and linear / great-circle interpolation. Shapes: latents ``(N, n)``.
"""

from __future__ import annotations

import torch

from spherevae._utils.validation import check_latents

__all__ = [
    "frame_with_first_column",
    "interpolate_linear",
    "interpolate_sphere",
    "perturb_tangent",
    "replica_angles",
    "rotate_e1_to",
    "tangent_effective_dim",
    "tangent_spectrum",
    "unit_directions",
]


def replica_angles(z: torch.Tensor) -> torch.Tensor:
    """Angles (radians) between each latent and the mean latent (A.8-A.9)."""
    z = z.double()
    mean = z.mean(0)
    cos = (z @ mean) / (z.norm(dim=1) * mean.norm()).clamp_min(1e-300)
    return torch.arccos(cos.clamp(-1.0, 1.0))


def tangent_effective_dim(z: torch.Tensor) -> dict[str, float]:
    """How many directions the latents' spread around their mean direction really uses.

    ``z`` (N, n) is normalised to unit directions u, which are projected onto the tangent
    space of the mean direction m (u - (u.m) m); returns the participation ratio
    ``effective_dim = (sum lambda)^2 / sum lambda^2`` of that projection's covariance
    eigenvalues lambda (1 when all spread lies along one direction, n - 1 when it is
    isotropic), ``max_dim = n - 1``, and ``top_fraction`` = lambda_max / sum lambda.

    Why it matters: a von Mises-Fisher distribution is isotropic around its mean
    direction, so its samples have ``effective_dim`` close to n - 1 whatever the data's.
    When the latents' is much smaller, vMF samples put their spread in directions the
    decoder never saw, and a full-covariance fit (``gaussian_sphere``) is the better sampler.
    The eigenvalues come from the (n, n) covariance: O(N n^2 + n^3), fine for n <= a few
    thousand and run once per evaluation.
    """
    lam = tangent_spectrum(z)
    total = float(lam.sum())
    # Variances of unit vectors: identical rows leave only rounding (~1e-32).
    if total <= 1e-24:
        return {"effective_dim": 0.0, "max_dim": float(z.shape[1] - 1), "top_fraction": 0.0}
    return {
        "effective_dim": total**2 / float((lam**2).sum()),
        "max_dim": float(z.shape[1] - 1),
        "top_fraction": float(lam.max()) / total,
    }


def tangent_spectrum(z: torch.Tensor) -> torch.Tensor:
    """Eigenvalues, largest first, of the covariance of the latents' tangent components.

    ``z`` (N, n), N >= 2, n >= 2, is normalised to unit directions u; with m the unit
    mean direction, the tangent components are the coordinates of ``u - (u.m) m`` in an
    orthonormal basis of ``m^perp``, and their (unbiased) covariance is ``(n-1, n-1)``.
    Returns the ``n - 1`` eigenvalues (float64, clamped at 0). Its participation ratio
    is :func:`tangent_effective_dim`; a vMF's spectrum is flat (``A_n(kappa)/kappa`` each,
    see ``spherevae.distributions.vmf.vmf_tangent_std``).
    """
    from spherevae.geometry.sphere import frame_with_first_column

    if z.ndim != 2 or z.shape[1] < 2 or z.shape[0] < 2:
        raise ValueError(f"tangent_spectrum: expected z of shape (N >= 2, n >= 2), got {tuple(z.shape)}")
    u = z.double()
    u = u / u.norm(dim=1, keepdim=True).clamp_min(1e-300)
    m = u.mean(0)
    norm = m.norm()
    m = m / norm if bool(norm > 0) else torch.eye(u.shape[1], dtype=u.dtype)[0]
    tangent = (u @ frame_with_first_column(m))[:, 1:]
    return torch.linalg.eigvalsh(torch.cov(tangent.T).reshape(u.shape[1] - 1, -1)).clamp_min(0.0).flip(0)


def perturb_tangent(z: torch.Tensor, std: float | torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Isotropic noise in each latent's tangent space, then back onto its sphere.

    For each row ``z_i`` (N, n), draws ``e ~ N(0, (std |z_i|)^2 I_n)``, removes its
    component along ``z_i`` (so the noise is isotropic with per-direction std
    ``std |z_i|`` in the ``n - 1`` tangent directions) and returns
    ``|z_i| (z_i + e_t) / |z_i + e_t|``: the same norms, directions moved by angles of
    about ``std * sqrt(n - 1)``. ``std`` is relative to the unit sphere (e.g. a vMF's
    per-direction std ``sqrt(A_n(kappa)/kappa)``); a tensor broadcasts over rows.
    """
    if z.ndim != 2 or z.shape[1] < 2:
        raise ValueError(f"perturb_tangent: expected z of shape (N, n >= 2), got {tuple(z.shape)}")
    z64 = z.double()
    radius = z64.norm(dim=1, keepdim=True)
    if bool((radius == 0).any()):
        raise ValueError("perturb_tangent: z has zero rows (no tangent space)")
    u = z64 / radius
    noise = torch.randn(z64.shape, dtype=torch.float64, generator=generator) * torch.as_tensor(std, dtype=torch.float64)
    noise = noise - (noise * u).sum(1, keepdim=True) * u
    moved = u + noise
    return (radius * moved / moved.norm(dim=1, keepdim=True)).to(z.dtype)


def rotate_e1_to(y: torch.Tensor, loc: torch.Tensor) -> torch.Tensor:
    """Apply an orthogonal map sending ``e_1`` to ``loc`` to ``y``; shapes broadcast ``(..., n)``.

    Householder with ``u = e_1 - loc`` when ``loc_1 <= 0`` and ``-(reflection with
    u = e_1 + loc)`` otherwise, so ``|u|^2 >= 2`` and nothing cancels; the vMF is
    symmetric about ``e_1``, so which orthogonal map is used does not matter.
    ``loc`` rows must be unit vectors.
    """
    sign = torch.where(loc[..., :1] > 0, 1.0, -1.0).to(loc.dtype)  # (..., 1)
    u = sign * loc
    u[..., 0] += 1.0  # u = e1 + sign * loc ; |u|^2 = 2 (1 + |loc_1|)
    coef = (y * u).sum(-1, keepdim=True) * (2.0 / (u * u).sum(-1, keepdim=True))
    return (coef * u - y) * sign  # = -sign * (reflection of y), maps e1 to loc


def unit_directions(z: torch.Tensor, name: str = "z", *, validate: bool = True) -> torch.Tensor:
    """Rows of ``z`` ``(N, n)`` (``N >= 1``, ``n >= 2``) normalised to unit length, float64.

    Raises ``ValueError`` (one line) for NaN/inf entries or zero rows (no direction).
    """
    check_latents(z, name, ndim=2, validate=validate)
    if z.shape[0] < 1:
        raise ValueError(f"{name} must hold at least one row, got shape {tuple(z.shape)}")
    z64 = z.detach().to(torch.float64)
    norms = torch.linalg.vector_norm(z64, dim=-1, keepdim=True)
    if bool((norms == 0).any()):
        raise ValueError(f"{name} must not contain zero rows (their direction is undefined)")
    return z64 / norms


def frame_with_first_column(m: torch.Tensor) -> torch.Tensor:
    """An orthogonal ``(n, n)`` matrix whose first column is the unit vector ``m`` ``(n,)``;
    the other columns are an orthonormal basis of the tangent space ``m^perp``."""
    eye = torch.eye(m.shape[-1], dtype=m.dtype, device=m.device)
    # rotate_e1_to maps each row e_i to F e_i, i.e. it returns F^T.
    return rotate_e1_to(eye, m.expand_as(eye).clone()).T


def interpolate_linear(z0: torch.Tensor, z1: torch.Tensor, steps: int) -> torch.Tensor:
    """``steps`` points on the straight line from ``z0`` to ``z1`` (``(n,)`` each), endpoints
    included: ``(steps, n)``. Compare :func:`interpolate_sphere`, which keeps the radius."""
    t = torch.linspace(0, 1, steps, dtype=z0.dtype)[:, None]
    return (1 - t) * z0 + t * z1


def interpolate_sphere(z0: torch.Tensor, z1: torch.Tensor, steps: int) -> torch.Tensor:
    """Great-circle interpolation (slerp) with the radius interpolated linearly.

    Nearly parallel vectors fall back to normalised linear interpolation; exactly
    antipodal ones go through a fixed orthogonal direction."""
    r0, r1 = z0.norm(), z1.norm()
    u0, u1 = z0 / r0, z1 / r1
    t = torch.linspace(0, 1, steps, dtype=z0.dtype)[:, None]
    cos = torch.clamp(u0 @ u1, -1.0, 1.0)
    omega = torch.arccos(cos)
    if omega < 1e-6:
        d = (1 - t) * u0 + t * u1
        d = d / d.norm(dim=1, keepdim=True)
    else:
        if torch.pi - omega < 1e-6:  # antipodal: any orthogonal direction is a geodesic
            e = torch.zeros_like(u0)
            e[int(torch.argmin(u0.abs()))] = 1.0
            w = e - (e @ u0) * u0
            u1_perp = w / w.norm()
        else:
            u1_perp = (u1 - cos * u0) / torch.sin(omega)
        d = torch.cos(t * omega) * u0 + torch.sin(t * omega) * u1_perp
    return d * ((1 - t) * r0 + t * r1)


