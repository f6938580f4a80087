"""Latent samplers for generation: priors, a von Mises-Fisher and Gaussian fits to latents.

Which sampler reproduces which claim of the paper (section 4.4, A.8):

- ``"prior"``: N(0, I_n), the standard VAE prior ("sampling from the prior", Fig 1a left).
- ``"prior_sphere"``: uniform on the sphere of radius ``sqrt(n)`` (the compressed model's
  prior support).
- ``"vmf"``: a von Mises-Fisher fitted by maximum likelihood to the latents with each row
  normalised. A vMF has only a mean *direction* and a scalar concentration, so it matches
  the direction of the latents' mean and their mean resultant length
  ``R = |mean(z_i / |z_i|)|`` (through ``A_n(kappa) = R``), *not* their covariance. This is
  the distribution the paper names for Fig 1a (right).
- ``"gaussian_sphere"``: a Gaussian with the latents' mean and full covariance, projected
  to the sphere of the model's radius. This is the sampler "with the same mean and
  covariance as the ones empirically calculated from the latent embedding" of section 4.4
  (up to the projection, which the compressed model's latents also undergo).
- ``"gaussian"``: the same Gaussian without the projection.
- ``"gmm"``: a Gaussian mixture fitted by EM (our own, in torch), a stronger baseline.

Numerics of the vMF: ``log I_v(x)`` comes from the uniform (Debye) asymptotic expansion
at orders ``>= 50`` and from the stable backward recurrence below that, in float64 and
pure torch, so ``log_prob``/``entropy`` are differentiable, finite for ``n`` in
``[2, 4096]`` and ``kappa`` in ``[0, 1e5]`` and beyond, with no overflow or underflow.
Sampling uses Wood's (1994) rejection for the component along ``loc`` with the
cancellation-free forms of ``b``, ``1 - w`` and ``1 - w^2``, vectorised with a bounded
number of rounds, and a Householder reflection to rotate ``e_1`` onto ``loc``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import ClassVar, Protocol

import torch
from torch import nn
from torch.distributions import Distribution, constraints

from spherevae._validation import check_choice, check_floating, check_latents, check_positive

__all__ = [
    "SAMPLERS",
    "FittedGaussian",
    "GaussianMixture",
    "Sampler",
    "SphereProjected",
    "StandardNormal",
    "VonMisesFisher",
    "bessel_ratio",
    "decode_samples",
    "fit_sampler",
    "log_bessel_iv",
    "mean_resultant_length_to_concentration",
]

# Orders >= this use the Debye expansion directly; lower ones recur down from it. At
# order 50 the first omitted term of the expansion is below ~1e-9 relative.
_DEBYE_MIN_ORDER = 50.0
# Below this kappa the normaliser uses its Taylor series (next term < 1e-18).
_SMALL_KAPPA = 1e-3
# Wood's acceptance rate is above 0.5 for every (n, kappa), so 64 rounds leave a
# sample unaccepted with probability < 2**-64; such a sample keeps its last proposal.
_MAX_REJECTION_ROUNDS = 64

SampleShape = int | Sequence[int] | torch.Size
_SCALAR = torch.Size()  # default sample_shape: one draw


class Sampler(Protocol):
    """Anything ``fit_sampler`` returns: draws latents of shape ``(*sample_shape, n)``."""

    def sample(
        self, sample_shape: SampleShape = ..., generator: torch.Generator | None = None
    ) -> torch.Tensor: ...


def _as_shape(sample_shape: SampleShape) -> torch.Size:
    if isinstance(sample_shape, int):
        return torch.Size((sample_shape,))
    return torch.Size(sample_shape)


# ---------------------------------------------------------------------------------------
# Modified Bessel functions of the first kind, in log space
# ---------------------------------------------------------------------------------------


def _log_iv_debye(order: float, x: torch.Tensor) -> torch.Tensor:
    """Uniform asymptotic expansion of ``log I_order(x)`` (A&S 9.7.7 with 9.3.9, 5 terms).

    Written with ``s = sqrt(order^2 + x^2)`` so that nothing overflows for large ``x``
    or underflows for small ``x``.
    """
    v = order
    s = torch.sqrt(v * v + x * x)
    t = v / s  # = 1 / sqrt(1 + (x/v)^2), in (0, 1]
    t2 = t * t
    u1 = t * (3.0 - 5.0 * t2) / 24.0
    u2 = t2 * (81.0 + t2 * (-462.0 + t2 * 385.0)) / 1152.0
    u3 = t * t2 * (30375.0 + t2 * (-369603.0 + t2 * (765765.0 - t2 * 425425.0))) / 414720.0
    u4 = (
        t2
        * t2
        * (4465125.0 + t2 * (-94121676.0 + t2 * (349922430.0 + t2 * (-446185740.0 + t2 * 185910725.0))))
        / 39813120.0
    )
    series = 1.0 + (u1 + (u2 + (u3 + u4 / v) / v) / v) / v
    return s + v * torch.log(x / (v + s)) - 0.5 * math.log(2 * math.pi) - 0.25 * torch.log(s * s) + torch.log(series)


def _log_iv_and_ratio(order: float, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log I_order(x), I_{order+1}(x) / I_order(x))`` for ``x > 0`` (float64 advised).

    Low orders recur down from order ``>= 50`` with ``I_j/I_{j+1} = 2(j+1)/x + I_{j+2}/I_{j+1}``,
    the direction in which the recurrence is stable for ``I`` (its minimal solution).
    """
    steps = max(0, math.ceil(_DEBYE_MIN_ORDER - order))
    top = order + steps
    log_i = _log_iv_debye(top, x)
    ratio = torch.exp(_log_iv_debye(top + 1.0, x) - log_i)
    for j in range(steps - 1, -1, -1):
        inverse = 2.0 * (order + j + 1.0) / x + ratio  # I_{order+j} / I_{order+j+1}
        log_i = log_i + torch.log(inverse)
        ratio = 1.0 / inverse
    return log_i, ratio


def _check_order(order: float) -> float:
    order = float(order)
    if not order >= 0 or math.isinf(order):
        raise ValueError(f"order must be a finite number >= 0, got {order!r}")
    return order


def log_bessel_iv(order: float, x: torch.Tensor) -> torch.Tensor:
    """``log I_order(x)``, finite for any ``x > 0`` and order (no overflow or underflow).

    Args:
        order: ``v >= 0`` (a Python number: for a vMF on ``S^{n-1}`` it is ``n/2 - 1``).
        x: tensor of arguments ``>= 0``, any shape; computed in float64 and cast back.
            ``x = 0`` gives ``0`` for ``v = 0`` and ``-inf`` otherwise.

    Differentiable in ``x`` (pure torch). Error below ~1e-10 absolute and 1e-11 relative
    (tested against the positive power series for orders 0..2047, ``x`` up to 1e5).
    """
    order = _check_order(order)
    check_floating(x, "x")
    x64 = x.to(torch.float64)
    zero = x64 <= 0
    safe = torch.where(zero, torch.ones_like(x64), x64)
    log_i, _ = _log_iv_and_ratio(order, safe)
    at_zero = torch.full_like(x64, 0.0 if order == 0 else -math.inf)
    return torch.where(zero, at_zero, log_i).to(x.dtype)


def bessel_ratio(order: float, x: torch.Tensor) -> torch.Tensor:
    """``I_{order+1}(x) / I_order(x)`` in ``[0, 1)``; the mean resultant length of a vMF
    on ``S^{n-1}`` with concentration ``x`` is ``bessel_ratio(n/2 - 1, x)``.

    Args:
        order: ``v >= 0``. x: tensor ``>= 0`` of any shape (float64 inside, cast back).
    """
    order = _check_order(order)
    check_floating(x, "x")
    x64 = x.to(torch.float64)
    zero = x64 <= 0
    safe = torch.where(zero, torch.ones_like(x64), x64)
    _, ratio = _log_iv_and_ratio(order, safe)
    return torch.where(zero, torch.zeros_like(x64), ratio).to(x.dtype)


def _log_vmf_normalizer(n: int, kappa: torch.Tensor) -> torch.Tensor:
    """``log C_n(kappa)``, the vMF log-density at ``x . loc = 0``, float64.

    ``C_n = kappa^v / ((2 pi)^{v+1} I_v(kappa))`` with ``v = n/2 - 1``, written as
    ``v log 2 - (v+1) log 2 pi + lgamma(v+1) - S(kappa)`` where
    ``S = log I_v(kappa) - v log(kappa/2) + lgamma(v+1)`` is ``log`` of a series that
    starts at 1: so ``kappa = 0`` gives ``-log |S^{n-1}|`` without ``0 * inf``.
    """
    v = n / 2.0 - 1.0
    small = kappa < _SMALL_KAPPA
    k_big = torch.where(small, torch.ones_like(kappa), kappa)
    log_i, _ = _log_iv_and_ratio(v, k_big)
    s_big = log_i - v * torch.log(k_big / 2.0) + math.lgamma(v + 1.0)
    k_small = torch.where(small, kappa, torch.zeros_like(kappa))
    q = k_small * k_small / 4.0
    s_small = torch.log1p(q / (v + 1.0) * (1.0 + q / (2.0 * (v + 2.0))))
    s = torch.where(small, s_small, s_big)
    return v * math.log(2.0) - (v + 1.0) * math.log(2.0 * math.pi) + math.lgamma(v + 1.0) - s


def mean_resultant_length_to_concentration(
    r: torch.Tensor, n: int, *, max_iter: int = 30, tol: float = 1e-12
) -> torch.Tensor:
    """Maximum-likelihood vMF concentration: solve ``A_n(kappa) = r`` for ``kappa``.

    ``A_n = I_{n/2}/I_{n/2-1}``. Starts from Banerjee et al. (2005),
    ``kappa_0 = r (n - r^2) / (1 - r^2)``, then safeguarded Newton steps with
    ``A'(k) = 1 - A^2 - (n-1) A / k`` (Sra 2012: converges in a few steps).

    Args:
        r: mean resultant lengths in ``[0, 1)``, any shape; ``r`` is clipped to
            ``1 - 1e-15`` (identical directions give a finite, huge ``kappa``).
        n: ambient dimension ``>= 2``.

    Returns:
        float64 tensor of ``kappa >= 0``, same shape as ``r`` (``r = 0`` gives 0).
    """
    v = n / 2.0 - 1.0
    r64 = r.detach().to(torch.float64).clamp(0.0, 1.0 - 1e-15)
    kappa = r64 * (n - r64 * r64) / (1.0 - r64 * r64)
    positive = r64 > 0
    for _ in range(max_iter):
        k = torch.where(positive, kappa, torch.ones_like(kappa))
        a = bessel_ratio(v, k)
        slope = (1.0 - a * a - (n - 1.0) * a / k).clamp_min(1e-300)
        step = (a - r64) / slope
        # Never step past half-way to 0: A is increasing and concave in kappa.
        new = torch.where(step < k, k - step, k / 2.0)
        kappa = torch.where(positive, new, torch.zeros_like(kappa))
        if bool((step.abs() <= tol * k).all()):
            break
    return kappa


# ---------------------------------------------------------------------------------------
# von Mises-Fisher
# ---------------------------------------------------------------------------------------


class _UnitSphere(constraints.Constraint):
    """Vectors of unit Euclidean norm along the last dimension (to 1e-4 relative)."""

    is_discrete = False
    event_dim = 1

    def check(self, value: torch.Tensor) -> torch.Tensor:
        return (torch.linalg.vector_norm(value, dim=-1) - 1.0).abs() < 1e-4


unit_sphere = _UnitSphere()


def _wood_w(
    kappa: torch.Tensor, n: int, generator: torch.Generator | None
) -> torch.Tensor:
    """Component ``w = x . loc`` of vMF samples, Wood (1994), float64 ``(m,)`` -> ``(w, 1 - w^2)``.

    Every quantity that tends to 0 as ``kappa`` grows (``b``, ``1 - x0``, ``1 - w``,
    ``1 - w^2``) is formed directly, never as a difference of numbers near 1.
    """
    m = kappa.shape[0]
    d = n - 1.0
    # b = (-2k + sqrt(4k^2 + d^2)) / d, rationalised to avoid cancellation at large k.
    b = d / (2.0 * kappa + torch.sqrt(4.0 * kappa * kappa + d * d))
    one_minus_x0 = 2.0 * b / (1.0 + b)
    x0 = (1.0 - b) / (1.0 + b)
    log_one_minus_x0_sq = math.log(4.0) + torch.log(b) - 2.0 * torch.log1p(b)
    alpha = torch.full((m,), d / 2.0, dtype=torch.float64, device=kappa.device)
    w = torch.empty(m, dtype=torch.float64, device=kappa.device)
    one_minus_w_sq = torch.empty_like(w)
    pending = torch.arange(m, device=kappa.device)
    for round_ in range(_MAX_REJECTION_ROUNDS):
        p = pending.shape[0]
        g1 = torch._standard_gamma(alpha[:p], generator=generator)
        g2 = torch._standard_gamma(alpha[:p], generator=generator)
        z = g1 / (g1 + g2)  # Beta(d/2, d/2)
        u = torch.rand(p, dtype=torch.float64, device=kappa.device, generator=generator)
        bp, x0p, kp = b[pending], x0[pending], kappa[pending]
        denom = 1.0 - (1.0 - bp) * z
        one_minus_wp = 2.0 * bp * z / denom
        wp = 1.0 - one_minus_wp
        # kappa (w - x0) + d [log(1 - x0 w) - log(1 - x0^2)] >= log u
        one_minus_x0w = one_minus_x0[pending] + x0p * one_minus_wp
        score = kp * (one_minus_x0[pending] - one_minus_wp) + d * (
            torch.log(one_minus_x0w) - log_one_minus_x0_sq[pending]
        )
        accept = score >= torch.log(u)
        last = round_ == _MAX_REJECTION_ROUNDS - 1
        take = torch.ones_like(accept) if last else accept
        idx = pending[take]
        w[idx] = wp[take]
        one_minus_w_sq[idx] = (4.0 * bp * z * (1.0 - z) / (denom * denom))[take]
        pending = pending[~take]
        if pending.numel() == 0:
            break
    return w, one_minus_w_sq


def _rotate_e1_to(y: torch.Tensor, loc: torch.Tensor) -> torch.Tensor:
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


class VonMisesFisher(Distribution):
    """von Mises-Fisher distribution on the unit sphere ``S^{n-1}`` in ``R^n``.

    Density ``C_n(kappa) exp(kappa loc . x)`` w.r.t. the surface measure.

    Args:
        loc: ``(*batch, n)``, ``n >= 2``, non-zero; normalised to unit length.
        concentration: ``kappa >= 0``, a number or a tensor broadcastable to ``(*batch,)``.
        validate_args: as in ``torch.distributions`` (checks finiteness, ``kappa >= 0``
            and that ``log_prob`` values lie on the sphere).

    All special functions run in float64; results are cast to ``loc``'s dtype.
    ``rsample`` is not provided: Wood's rejection step has no reparameterisation.
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {"loc": constraints.real_vector, "concentration": constraints.nonnegative}
    support = unit_sphere
    has_rsample = False

    def __init__(
        self,
        loc: torch.Tensor,
        concentration: torch.Tensor | float,
        validate_args: bool | None = None,
    ) -> None:
        check_latents(loc, "loc", validate=validate_args is not False)
        norm = torch.linalg.vector_norm(loc, dim=-1, keepdim=True)
        if validate_args is not False and bool((norm == 0).any()):
            raise ValueError("loc must be non-zero (it is normalised to a unit direction)")
        kappa = torch.as_tensor(concentration, dtype=loc.dtype, device=loc.device)
        if validate_args is not False:
            if not bool(torch.isfinite(kappa).all()) or bool((kappa < 0).any()):
                raise ValueError(f"concentration must be finite and >= 0, got {kappa}")
        batch_shape = torch.broadcast_shapes(loc.shape[:-1], kappa.shape)
        self.loc = (loc / norm).expand(*batch_shape, loc.shape[-1])
        self.concentration = kappa.expand(batch_shape)
        super().__init__(batch_shape, torch.Size(loc.shape[-1:]), validate_args=validate_args)

    @property
    def dim(self) -> int:
        """Ambient dimension ``n`` (the sphere is ``S^{n-1}``)."""
        return self.event_shape[0]

    @property
    def _kappa64(self) -> torch.Tensor:
        return self.concentration.to(torch.float64)

    @property
    def mean_resultant_length(self) -> torch.Tensor:
        """``A_n(kappa) = E[x . loc] = I_{n/2}(kappa) / I_{n/2-1}(kappa)``, shape ``batch``."""
        return bessel_ratio(self.dim / 2.0 - 1.0, self._kappa64).to(self.loc.dtype)

    @property
    def mean(self) -> torch.Tensor:
        """``E[x] = A_n(kappa) loc``, shape ``(*batch, n)``."""
        return self.mean_resultant_length.unsqueeze(-1) * self.loc

    @property
    def mode(self) -> torch.Tensor:
        return self.loc

    def log_normalizer(self) -> torch.Tensor:
        """``log C_n(kappa)``, shape ``batch`` (``-log |S^{n-1}|`` at ``kappa = 0``)."""
        return _log_vmf_normalizer(self.dim, self._kappa64).to(self.loc.dtype)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Log-density of unit vectors ``value`` of shape ``(..., *batch, n)``."""
        if self._validate_args:
            self._validate_sample(value)
        dot = (value.to(torch.float64) * self.loc.to(torch.float64)).sum(-1)
        return (_log_vmf_normalizer(self.dim, self._kappa64) + self._kappa64 * dot).to(value.dtype)

    def entropy(self) -> torch.Tensor:
        """``-log C_n(kappa) - kappa A_n(kappa)``, shape ``batch``."""
        k = self._kappa64
        a = bessel_ratio(self.dim / 2.0 - 1.0, k)
        return (-_log_vmf_normalizer(self.dim, k) - k * a).to(self.loc.dtype)

    def sample(
        self, sample_shape: SampleShape = _SCALAR, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draw unit vectors of shape ``(*sample_shape, *batch, n)``; always terminates."""
        shape = _as_shape(sample_shape)
        n, dtype = self.dim, self.loc.dtype
        num, batch = shape.numel(), self.batch_shape.numel()
        with torch.no_grad():
            # Wood's step in float64; the O(n) work in loc's dtype, with the (batch, n)
            # locs broadcast over the samples rather than copied.
            kappa = self._kappa64.reshape(1, batch).expand(num, batch).reshape(-1)
            w, one_minus_w_sq = _wood_w(kappa, n, generator)
            y = torch.randn(num, batch, n, dtype=dtype, device=self.loc.device, generator=generator)
            tangent = y[..., 1:]
            tangent_norm = torch.linalg.vector_norm(tangent, dim=-1, keepdim=True).clamp_min(
                torch.finfo(dtype).tiny
            )
            tangent *= torch.sqrt(one_minus_w_sq).reshape(num, batch, 1).to(dtype) / tangent_norm
            y[..., 0] = w.reshape(num, batch).to(dtype)
            x = _rotate_e1_to(y, self.loc.reshape(batch, n))
        return x.reshape(*shape, *self.batch_shape, n)

    @classmethod
    def fit(cls, z: torch.Tensor, *, validate: bool = True) -> VonMisesFisher:
        """Maximum-likelihood vMF of the directions of ``z`` (rows normalised first).

        Args:
            z: ``(N, n)`` latents, ``N >= 1``, ``n >= 2``; zero rows are not allowed.

        Returns:
            A ``VonMisesFisher`` with ``loc = mean(z_i/|z_i|) / R`` and ``kappa`` solving
            ``A_n(kappa) = R``, where ``R = |mean(z_i/|z_i|)|``; dtype of ``z``.
        """
        check_latents(z, "z", ndim=2, validate=validate)
        if z.shape[0] < 1:
            raise ValueError(f"z must hold at least one row, got shape {tuple(z.shape)}")
        z64 = z.detach().to(torch.float64)
        norms = torch.linalg.vector_norm(z64, dim=-1, keepdim=True)
        if bool((norms == 0).any()):
            raise ValueError("z must not contain zero rows (their direction is undefined)")
        mean_dir = (z64 / norms).mean(0)
        r = torch.linalg.vector_norm(mean_dir)
        kappa = mean_resultant_length_to_concentration(r, z.shape[1])
        loc = mean_dir if bool(r > 0) else torch.eye(z.shape[1], dtype=torch.float64)[0]
        return cls(loc.to(z.dtype), kappa.to(z.dtype))


# ---------------------------------------------------------------------------------------
# Priors and Gaussian fits
# ---------------------------------------------------------------------------------------


class StandardNormal:
    """The standard VAE prior ``N(0, I_n)``; ``sample`` gives ``(*sample_shape, n)``."""

    def __init__(self, dim: int, *, dtype: torch.dtype = torch.float32) -> None:
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.dim = dim
        self.dtype = dtype

    def sample(
        self, sample_shape: SampleShape = _SCALAR, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        shape = _as_shape(sample_shape)
        return torch.randn(*shape, self.dim, dtype=self.dtype, generator=generator)


class SphereProjected:
    """Samples of ``base`` projected radially onto the sphere of radius ``radius``.

    ``SphereProjected(StandardNormal(n), sqrt(n))`` is uniform on that sphere; a vMF's
    unit samples are simply scaled.
    """

    def __init__(self, base: Sampler, radius: float) -> None:
        self.base = base
        self.radius = check_positive(radius, "radius")

    def sample(
        self, sample_shape: SampleShape = _SCALAR, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        x = self.base.sample(sample_shape, generator=generator)
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
        # A zero draw has no direction; it has probability 0 for these bases.
        return self.radius * x / norm.clamp_min(torch.finfo(x.dtype).tiny)


def _scale_factor(cov: torch.Tensor) -> torch.Tensor:
    """Lower Cholesky factor of ``cov`` (``(..., n, n)`` float64), adding jitter if singular."""
    n = cov.shape[-1]
    eye = torch.eye(n, dtype=cov.dtype, device=cov.device)
    scale = cov.diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(1e-300)[..., None, None]
    jitter = 0.0
    for _ in range(12):
        factor, info = torch.linalg.cholesky_ex(cov + jitter * scale * eye)
        if bool((info == 0).all()):
            return factor
        jitter = 1e-12 if jitter == 0.0 else jitter * 10.0
    raise ValueError("covariance is not positive semi-definite (Cholesky failed with jitter)")


class FittedGaussian:
    """Gaussian with the sample mean and full covariance of latents ``z``.

    Attributes: ``mean`` ``(n,)``, ``covariance`` ``(n, n)`` (unbiased), ``scale_tril``
    (its Cholesky factor, float64).
    """

    def __init__(self, mean: torch.Tensor, covariance: torch.Tensor) -> None:
        self.mean = mean
        self.covariance = covariance
        self.scale_tril = _scale_factor(covariance.to(torch.float64))

    @classmethod
    def fit(cls, z: torch.Tensor, *, validate: bool = True) -> FittedGaussian:
        """Fit to ``z`` of shape ``(N, n)``, ``N >= 2``; outputs have ``z``'s dtype."""
        check_latents(z, "z", min_dim=1, ndim=2, validate=validate)
        if z.shape[0] < 2:
            raise ValueError(f"z must hold at least 2 rows to fit a covariance, got {z.shape[0]}")
        z64 = z.detach().to(torch.float64)
        mean = z64.mean(0)
        centred = z64 - mean
        cov = centred.T @ centred / (z.shape[0] - 1)
        return cls(mean.to(z.dtype), cov.to(z.dtype))

    def sample(
        self, sample_shape: SampleShape = _SCALAR, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        shape = _as_shape(sample_shape)
        n = self.mean.shape[-1]
        eps = torch.randn(shape.numel(), n, dtype=torch.float64, generator=generator)
        x = self.mean.to(torch.float64) + eps @ self.scale_tril.T
        return x.reshape(*shape, n).to(self.mean.dtype)


# ---------------------------------------------------------------------------------------
# Gaussian mixture (EM in torch)
# ---------------------------------------------------------------------------------------


def _kmeans_pp(z: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: ``k`` rows of ``z`` ``(N, n)`` picked with D^2 weighting."""
    first = torch.randint(z.shape[0], (1,), generator=generator)
    centres = [z[first[0]]]
    d2 = ((z - centres[0]) ** 2).sum(-1)
    for _ in range(1, k):
        weights = d2 if bool(d2.sum() > 0) else torch.ones_like(d2)
        i = torch.multinomial(weights, 1, generator=generator)[0]
        centres.append(z[i])
        d2 = torch.minimum(d2, ((z - z[i]) ** 2).sum(-1))
    return torch.stack(centres)


def _component_log_density(
    z: torch.Tensor, means: torch.Tensor, covs: torch.Tensor, diagonal: bool
) -> torch.Tensor:
    """``log N(z_i | mean_k, cov_k)`` as ``(N, K)``; ``covs`` is ``(K, n)`` if ``diagonal``."""
    n = z.shape[1]
    if diagonal:
        diff = z.unsqueeze(1) - means.unsqueeze(0)  # (N, K, n)
        maha = (diff * diff / covs).sum(-1)
        logdet = torch.log(covs).sum(-1)
    else:
        chol = torch.linalg.cholesky(covs)  # (K, n, n)
        # One component at a time keeps memory at O(N n), not O(N K n).
        maha = torch.stack(
            [
                torch.linalg.solve_triangular(chol[k], (z - means[k]).T, upper=False).pow(2).sum(0)
                for k in range(means.shape[0])
            ],
            dim=1,
        )
        logdet = 2.0 * torch.log(chol.diagonal(dim1=-2, dim2=-1)).sum(-1)
    return -0.5 * (n * math.log(2 * math.pi) + logdet + maha)


class GaussianMixture:
    """Gaussian mixture fitted by EM (float64, torch), seeded by k-means++.

    Own EM rather than scikit-learn's so it takes a ``torch.Generator``/seed, runs on
    any torch device and keeps sampling free of the optional sklearn dependency; the
    tests check it against sklearn's ``GaussianMixture``.

    Attributes: ``weights`` ``(K,)``, ``means`` ``(K, n)``, ``covariances`` ``(K, n, n)``
    (full) or ``(K, n)`` (diagonal), ``log_likelihood`` (mean per sample, last EM step),
    ``n_iter``.
    """

    COVARIANCE_TYPES = ("full", "diag")

    def __init__(
        self, weights: torch.Tensor, means: torch.Tensor, covariances: torch.Tensor, covariance_type: str
    ) -> None:
        check_choice(covariance_type, "covariance_type", self.COVARIANCE_TYPES)
        self.weights, self.means, self.covariances = weights, means, covariances
        self.covariance_type = covariance_type
        self.log_likelihood = float("nan")
        self.n_iter = 0

    @property
    def _diagonal(self) -> bool:
        return self.covariance_type == "diag"

    @classmethod
    def fit(
        cls,
        z: torch.Tensor,
        n_components: int = 10,
        *,
        covariance_type: str = "full",
        max_iter: int = 100,
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        seed: int = 0,
        validate: bool = True,
    ) -> GaussianMixture:
        """EM on ``z`` ``(N, n)`` until the mean log-likelihood gains less than ``tol``
        (sklearn's defaults: ``tol = 1e-3``, ``max_iter = 100``, ``reg_covar = 1e-6``).

        ``reg_covar`` is added to every variance (as in sklearn) so that components
        collapsing onto few points stay invertible.
        """
        check_latents(z, "z", min_dim=1, ndim=2, validate=validate)
        check_choice(covariance_type, "covariance_type", cls.COVARIANCE_TYPES)
        if not 1 <= n_components <= z.shape[0]:
            raise ValueError(f"n_components must be in [1, N={z.shape[0]}], got {n_components}")
        diagonal = covariance_type == "diag"
        x = z.detach().to(torch.float64)
        num, n = x.shape
        generator = torch.Generator(device=x.device).manual_seed(seed)
        means = _kmeans_pp(x, n_components, generator)
        # Hard assignment to the nearest seed starts the M-step.
        resp = torch.nn.functional.one_hot(torch.cdist(x, means).argmin(1), n_components).to(x.dtype)
        previous = -math.inf
        eye = torch.eye(n, dtype=x.dtype, device=x.device)
        n_iter = 0
        for n_iter in range(1, max_iter + 1):  # noqa: B007 (reported after the loop)
            counts = resp.sum(0) + 10 * torch.finfo(x.dtype).eps
            weights = counts / num
            means = resp.T @ x / counts[:, None]
            if diagonal:
                covs = (resp.T @ (x * x)) / counts[:, None] - means * means
                covs = covs.clamp_min(0.0) + reg_covar
            else:
                covs = torch.stack(
                    [
                        ((x - means[k]) * resp[:, k : k + 1]).T @ (x - means[k]) / counts[k]
                        for k in range(n_components)
                    ]
                )
                covs = covs + reg_covar * eye
            joint = _component_log_density(x, means, covs, diagonal) + torch.log(weights)
            log_norm = torch.logsumexp(joint, dim=1, keepdim=True)
            resp = torch.exp(joint - log_norm)
            current = float(log_norm.mean())
            if abs(current - previous) < tol:
                break
            previous = current
        model = cls(weights.to(z.dtype), means.to(z.dtype), covs.to(z.dtype), covariance_type)
        model.log_likelihood, model.n_iter = current, n_iter
        return model

    def score(self, z: torch.Tensor) -> float:
        """Mean log-likelihood of rows of ``z`` ``(N, n)`` under the mixture."""
        x = z.detach().to(torch.float64)
        joint = _component_log_density(
            x, self.means.to(torch.float64), self.covariances.to(torch.float64), self._diagonal
        ) + torch.log(self.weights.to(torch.float64))
        return float(torch.logsumexp(joint, dim=1).mean())

    def sample(
        self, sample_shape: SampleShape = _SCALAR, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        shape = _as_shape(sample_shape)
        num, n = shape.numel(), self.means.shape[1]
        comp = torch.multinomial(self.weights.to(torch.float64), num, replacement=True, generator=generator)
        eps = torch.randn(num, n, dtype=torch.float64, generator=generator)
        means = self.means.to(torch.float64)[comp]
        covs = self.covariances.to(torch.float64)
        if self._diagonal:
            x = means + eps * torch.sqrt(covs)[comp]
        else:
            chol = _scale_factor(covs)
            x = means.clone()
            # Per component, so no (num, n, n) gather of Cholesky factors is formed.
            for k in range(chol.shape[0]):
                rows = comp == k
                x[rows] += eps[rows] @ chol[k].T
        return x.reshape(*shape, n).to(self.means.dtype)


# ---------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------

SamplerBuilder = Callable[[torch.Tensor, float, int], Sampler]


def _build_prior(z: torch.Tensor, radius: float, seed: int) -> Sampler:
    return StandardNormal(z.shape[1], dtype=z.dtype)


def _build_prior_sphere(z: torch.Tensor, radius: float, seed: int) -> Sampler:
    return SphereProjected(StandardNormal(z.shape[1], dtype=z.dtype), radius)


def _build_vmf(z: torch.Tensor, radius: float, seed: int) -> Sampler:
    return SphereProjected(VonMisesFisher.fit(z), radius)


def _build_gaussian(z: torch.Tensor, radius: float, seed: int) -> Sampler:
    return FittedGaussian.fit(z)


def _build_gaussian_sphere(z: torch.Tensor, radius: float, seed: int) -> Sampler:
    return SphereProjected(FittedGaussian.fit(z), radius)


def _build_gmm(z: torch.Tensor, radius: float, seed: int) -> Sampler:
    return GaussianMixture.fit(z, n_components=min(10, z.shape[0]), seed=seed)


SAMPLERS: dict[str, SamplerBuilder] = {
    "prior": _build_prior,
    "prior_sphere": _build_prior_sphere,
    "vmf": _build_vmf,
    "gaussian": _build_gaussian,
    "gaussian_sphere": _build_gaussian_sphere,
    "gmm": _build_gmm,
}


def fit_sampler(name: str, z: torch.Tensor, *, radius: float | None = None, seed: int = 0) -> Sampler:
    """Fit the sampler ``name`` (a key of ``SAMPLERS``) to latents ``z`` ``(N, n)``.

    Args:
        radius: sphere radius for ``prior_sphere``, ``vmf`` and ``gaussian_sphere``;
            ``None`` means the model's ``sqrt(n)``. Ignored by the others.
        seed: seeds fitting randomness (the GMM's initialisation).

    Returns:
        An object with ``sample(num_or_shape, generator=None) -> (*shape, n)``.
    """
    check_choice(name, "name", SAMPLERS)
    check_latents(z, "z", ndim=2)
    radius = math.sqrt(z.shape[1]) if radius is None else check_positive(radius, "radius")
    return SAMPLERS[name](z, radius, seed)


def decode_samples(model: nn.Module, z: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Decode latents ``z`` ``(N, n)`` with ``model.decode`` in batches, without gradients.

    The model is put in eval mode for the call (batch-norm and dropout layers must not
    use batch statistics of random latents) and restored afterwards. ``z`` is moved to
    the model's device; the images come back on it, concatenated along dim 0.
    """
    if not callable(getattr(model, "decode", None)):
        raise TypeError(f"model must have a decode(z) method, got {type(model).__name__}")
    check_latents(z, "z", min_dim=1, ndim=2)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    param = next(model.parameters(), None)
    device = param.device if param is not None else z.device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            parts = [model.decode(chunk.to(device)) for chunk in z.split(batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(parts, 0)
