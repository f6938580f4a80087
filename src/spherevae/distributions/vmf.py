"""von Mises-Fisher distributions: the vMF and a mixture of vMFs fitted by EM.

Numerics of the vMF: ``log I_v(x)`` and ``I_{v+1}/I_v`` come from :mod:`spherevae.distributions.bessel`
(float64, pure torch), so ``log_prob``/``entropy`` are differentiable, finite for ``n`` in
``[2, 4096]`` and ``kappa`` in ``[0, 1e5]`` and beyond, with no overflow or underflow.
Sampling uses Wood's (1994) rejection for the component along ``loc`` with the
cancellation-free forms of ``b``, ``1 - w`` and ``1 - w^2``, vectorised with a bounded
number of rounds, and a Householder reflection to rotate ``e_1`` onto ``loc``
(:func:`spherevae.geometry.sphere.rotate_e1_to`). The Bessel functions and the direction
helpers are re-exported here.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch.distributions import Distribution, constraints

from spherevae._utils.validation import check_latents
from spherevae.distributions.bessel import _log_iv_and_ratio, bessel_ratio
from spherevae.distributions.directions import (
    _SCALAR,
    SampleShape,
    as_shape,
)
from spherevae.geometry.sphere import rotate_e1_to, unit_directions

__all__ = [
    "VonMisesFisher",
    "mean_resultant_length_to_concentration",
    "unit_sphere",
    "vmf_tangent_std",
]


# Below this kappa the normaliser uses its Taylor series (next term < 1e-18).
_SMALL_KAPPA = 1e-3
# Wood's acceptance rate is above 0.5 for every (n, kappa), so 64 rounds leave a
# sample unaccepted with probability < 2**-64; such a sample keeps its last proposal.
_MAX_REJECTION_ROUNDS = 64


# ---------------------------------------------------------------------------------------
# Normaliser and maximum-likelihood concentration
# ---------------------------------------------------------------------------------------


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
    ``A'(k) = 1 - A^2 - (n-1) A / k`` (Sra 2012: converges in a few steps). Above
    ``kappa_0 = 100 n``, ``A'`` is a difference of nearly equal terms and Newton diverges in
    float64: there ``1 - r`` is inverted by the large-kappa expansion (:func:`_large_concentration`).

    Args:
        r: mean resultant lengths in ``[0, 1)``, any shape; ``r`` is clipped to
            ``1 - 1e-15`` (float64 cannot resolve ``1 - r`` below that, so identical
            directions give a finite, huge ``kappa``: about ``(n - 1) / 2 * 1e15``).
        n: ambient dimension ``>= 2``.

    Returns:
        float64 tensor of finite ``kappa >= 0``, same shape as ``r`` (``r = 0`` gives 0).
    """
    v = n / 2.0 - 1.0
    r64 = r.detach().to(torch.float64).clamp(0.0, 1.0 - 1e-15)
    kappa = r64 * (n - r64 * r64) / (1.0 - r64 * r64)
    large = kappa > _LARGE_KAPPA_PER_DIM * n
    positive = (r64 > 0) & ~large
    for _ in range(max_iter):
        k = torch.where(positive, kappa, torch.ones_like(kappa))
        a = bessel_ratio(v, k)
        slope = (1.0 - a * a - (n - 1.0) * a / k).clamp_min(1e-300)
        step = (a - r64) / slope
        # Never step past half-way to 0 (A is increasing and concave), nor past twice kappa.
        new = torch.where(step < k, k - step, k / 2.0).clamp_max(2.0 * k)
        kappa = torch.where(positive, new, torch.zeros_like(kappa))
        if bool((step.abs() <= tol * k).all()):
            break
    return torch.where(large, _large_concentration(1.0 - r64, n), kappa)


_LARGE_KAPPA_PER_DIM = 100.0  # above kappa = 100 n the solver uses the expansion


def _large_concentration(e: torch.Tensor, n: int) -> torch.Tensor:
    """``kappa`` with ``1 - A_n(kappa) = e`` for large ``kappa`` (``e`` float64 in ``(0, 1)``).

    ``1 - A_n(k) = c1/k - c2/k^2 - c2/k^3 + ...``, ``c1 = (n-1)/2``, ``c2 = (n-1)(n-3)/8``
    (Hankel's expansion of ``I_v``; checked against scipy's ``ive``): the positive root of
    two terms, then Newton steps on three. Relative error < 1e-8 for ``kappa > 100 n``.
    """
    c1, c2 = (n - 1.0) / 2.0, (n - 1.0) * (n - 3.0) / 8.0
    e = e.clamp_min(1e-300)
    k = (c1 + torch.sqrt((c1 * c1 - 4.0 * e * c2).clamp_min(0.0))) / (2.0 * e)
    for _ in range(3):
        g = c1 / k - c2 / k**2 - c2 / k**3 - e
        slope = -c1 / k**2 + 2.0 * c2 / k**3 + 3.0 * c2 / k**4
        k = k - g / slope
    return k


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
) -> tuple[torch.Tensor, torch.Tensor]:
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

    Example::

        >>> import torch
        >>> vmf = VonMisesFisher(torch.tensor([1.0, 0.0, 0.0]), concentration=50.0)
        >>> x = vmf.sample(1000, generator=torch.Generator().manual_seed(0))
        >>> x.shape, bool((x.norm(dim=1) - 1).abs().max() < 1e-5)   # on the unit sphere
        (torch.Size([1000, 3]), True)
        >>> fitted = VonMisesFisher.fit(x)                            # maximum likelihood
        >>> round(float(fitted.loc[0]), 2), 40 < float(fitted.concentration) < 60
        (1.0, True)
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
        shape = as_shape(sample_shape)
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
            x = rotate_e1_to(y, self.loc.reshape(batch, n))
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
        mean_dir = unit_directions(z, "z", validate=validate).mean(0)
        r = torch.linalg.vector_norm(mean_dir)
        kappa = mean_resultant_length_to_concentration(r, z.shape[1])
        loc = mean_dir if bool(r > 0) else torch.eye(z.shape[1], dtype=torch.float64)[0]
        kappa = kappa.clamp_max(torch.finfo(z.dtype).max)  # identical rows: ~1e15, > float16's max
        return cls(loc.to(z.dtype), kappa.to(z.dtype))

    def to_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """``(tensors, hyper-parameters)``: plain tensors and a JSON-able dict (no pickle)."""
        return {"loc": self.loc.clone(), "concentration": self.concentration.clone()}, {}

    @classmethod
    def from_state(cls, tensors: dict[str, torch.Tensor], hparams: dict[str, Any]) -> VonMisesFisher:
        """Inverse of :meth:`to_state`."""
        del hparams
        return cls(tensors["loc"], tensors["concentration"])


# ---------------------------------------------------------------------------------------
# Spread in the tangent space
# ---------------------------------------------------------------------------------------


def vmf_tangent_std(concentration: torch.Tensor | float, n: int) -> torch.Tensor:
    """Per-direction standard deviation of a vMF on the unit sphere ``S^{n-1}`` in its
    tangent space at ``loc``: ``sqrt(A_n(kappa) / kappa)``.

    From ``E[x x^T] = (A/kappa) I + (1 - n A/kappa) loc loc^T`` (Mardia & Jupp 2000, 9.3):
    every unit tangent direction ``e`` (``e . loc = 0``) has ``E[(e . x)^2] = A/kappa`` and
    ``E[e . x] = 0``. ``kappa -> 0`` gives ``sqrt(1/n)`` (the uniform distribution).
    Returns a float64 tensor of the shape of ``concentration``.
    """
    k = torch.as_tensor(concentration, dtype=torch.float64)
    small = k < 1e-8
    safe = torch.where(small, torch.ones_like(k), k)
    ratio = bessel_ratio(n / 2.0 - 1.0, safe) / safe
    return torch.sqrt(torch.where(small, torch.full_like(k, 1.0 / n), ratio))


# ---------------------------------------------------------------------------------------
# Mixture of von Mises-Fisher distributions (soft EM, Banerjee et al. 2005)
# ---------------------------------------------------------------------------------------


