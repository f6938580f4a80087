"""Cartesian <-> hyperspherical coordinates (paper eqs 9-10) in O(batch * n).

Conventions (paper appendix A.1, eq 9), for ``x`` of shape ``(..., n)``, ``n >= 2``:

* ``r = ||x||``; angles ``phi_k``, ``k = 1..n-1``, stored at index ``k-1`` of the last
  dimension.
* ``cos phi_k = x_k / ||x_{k..n}||`` (the norm of the tail from ``k`` to ``n``).
* ``phi_1..phi_{n-2}`` lie in ``[0, pi]``; ``phi_{n-1}`` lies in ``[0, 2 pi)``, in the upper
  half when ``x_n >= 0`` and the lower half when ``x_n < 0``.
* Where a tail ``x_{k..n}`` is all zero the direction is undefined; the angle is 0 by
  convention (``cos = 1``: the pole), and its gradient is 0. The zero vector has
  ``r = 0`` and all angles 0.

Numerics. Every function divides ``x`` by its largest absolute entry ``s`` (a rescaling
that the angles do not see and the radius undoes) before squaring, so vectors with
entries near the float limits neither overflow nor underflow. It divides by ``s`` and
never multiplies by ``1 / s``: for a float32 subnormal ``s`` (below ~1.2e-38) the
reciprocal overflows to inf, and near the float maximum it is itself subnormal and has
lost digits; a division is correctly rounded at every finite scale. No epsilon is added
anywhere: normal inputs are computed exactly as the formulas say. float16 and bfloat16
inputs are computed in float32 and cast back. One limit remains: a tail whose squared
norm underflows after the scaling (entries below ~1e-19 x max|x| in float32, ~1e-154 in
float64) counts as zero; its cosine keeps the sign of ``x_k`` (+-1) or is 1 if ``x_k = 0``.

:func:`hyperspherical_cosines` is the hot path of the compressed loss. Its backward pass
is analytic and O(n) (one cumulative sum), see :class:`_Cosines`; autograd through the
obvious formula costs about twice as much and memory for every intermediate.
"""

from __future__ import annotations

import math

import torch
from torch.autograd.function import once_differentiable

from spherevae._utils.validation import check_finite, check_floating, check_latents

__all__ = [
    "cosines_backward",
    "cosines_forward",
    "from_hyperspherical",
    "hyperspherical_cosines",
    "project_to_sphere",
    "sphere_radius",
    "to_hyperspherical",
]

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _working_dtype(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype in _LOW_PRECISION else x


def _max_scale(x: torch.Tensor) -> torch.Tensor:
    """Largest ``|x_j|`` per vector, ``(..., 1)``, 1 for the zero vector; no gradient.

    Detaching is exact: the angles are invariant to positive scaling, and the radius is
    homogeneous of degree 1, so the gradient terms through the scale cancel.
    """
    x = x.detach()
    # max(amax, -amin) reads x twice but allocates nothing; torch's inf-norm is ~20x slower.
    s = torch.maximum(x.amax(-1, keepdim=True), x.amin(-1, keepdim=True).neg())
    return torch.where(s > 0, s, torch.ones_like(s))


def cosines_forward(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """No-autograd forward of :func:`hyperspherical_cosines` that also returns what the
    analytic backward needs: ``(r, cos, xs, s, inv_tails)`` with ``xs = x / s``
    (``s = max_j |x_j|`` of shape ``(..., 1)``, 1 for the zero vector) and
    ``inv_tails = 1 / T_k`` (0 on all-zero tails). For fused losses; most code wants
    :func:`hyperspherical_cosines`.
    """
    s = _max_scale(x)
    xs = x / s  # not x * (1 / s): see the module docstring (subnormal s)
    # Summing from the end keeps small tails exact; "total minus prefix" would cancel.
    tails_sq = (xs * xs).flip(-1).cumsum(-1).flip(-1)
    inv_tails = tails_sq.rsqrt()  # inf on all-zero tails
    cos = (xs[..., :-1] * inv_tails[..., :-1]).nan_to_num_(nan=1.0, posinf=1.0, neginf=-1.0)
    # An all-zero tail has x_k = 0, so 0 * inf = nan -> 1: the angle-0 convention.
    inv_tails.nan_to_num_(posinf=0.0)  # zero tails get zero gradients
    r = tails_sq[..., 0].sqrt() * s[..., 0]
    return r, cos, xs, s, inv_tails


def cosines_backward(
    grad_r: torch.Tensor | None, grad_cos: torch.Tensor | None, cos: torch.Tensor, xs: torch.Tensor,
    s: torch.Tensor, inv_tails: torch.Tensor,
) -> torch.Tensor:
    """Gradient w.r.t. ``x`` from the gradients w.r.t. ``r`` and ``cos`` (see :class:`_Cosines`);
    ``s`` is the scale :func:`cosines_forward` returned."""
    if grad_cos is not None:
        inv_t = inv_tails[..., :-1]
        w = grad_cos * inv_t  # g_k / T_k
        prefix = (w * inv_t * cos).cumsum(-1)  # sum_{k <= j} g_k c_k / T_k^2
        grad = torch.empty_like(xs)
        torch.addcmul(w, xs[..., :-1], prefix, value=-1.0, out=grad[..., :-1])
        grad[..., -1] = -xs[..., -1] * prefix[..., -1]
        grad = grad / s  # dxs/dx = 1 / s, divided for the same reason as in the forward
    else:
        grad = torch.zeros_like(xs)
    if grad_r is not None:
        # r = s * T_1, so dr/dx = xs / T_1 (scale-free); the zero vector gets the zero subgradient.
        grad = torch.addcmul(grad, xs, grad_r.unsqueeze(-1) * inv_tails[..., :1])
    return grad


class _Cosines(torch.autograd.Function):
    """``x -> (r, cos_phi)`` with an analytic O(n) backward.

    With ``xs = x / s`` (``s = max_j |x_j|``, treated as a constant: exact, see
    :func:`_max_scale`), ``T_k = ||xs_{k..n}||`` and ``c_k = xs_k / T_k``, the Jacobian is
    ``dc_k/dxs_j = [j == k] / T_k - xs_k xs_j / T_k^3`` for ``j >= k`` and 0 for ``j < k``,
    so for an upstream gradient ``g``:
    ``dL/dxs_j = g_j / T_j - xs_j * sum_{k <= j} g_k c_k / T_k^2``: one prefix sum.
    The whole pass is ~18 elementwise sweeps over ``x``, against ~7 for ``x / |x|``.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor):
        r, cos, xs, s, inv_tails = cosines_forward(x)
        ctx.save_for_backward(xs, s, inv_tails, cos)
        return r, cos

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_r: torch.Tensor | None, grad_cos: torch.Tensor | None):
        xs, s, inv_tails, cos = ctx.saved_tensors
        return cosines_backward(grad_r, grad_cos, cos, xs, s, inv_tails)


def hyperspherical_cosines(
    x: torch.Tensor, *, validate: bool = True, fast: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Radius and cosines of the hyperspherical angles of ``x``, without any arccos.

    Args:
        x: ``(..., n)``, ``n >= 2``, floating point.
        validate: check shape and finiteness (a host sync on GPU; the training step
            passes ``False``).
        fast: use the analytic O(n) backward (first derivatives only). ``False``
            differentiates the formula with autograd, which supports double backward.

    Returns:
        ``r`` of shape ``(...)`` and ``cos_phi`` of shape ``(..., n-1)`` with
        ``cos_phi[..., k-1] = x_k / ||x_{k..n}||`` (1 where that tail is all zero), in the
        dtype of ``x``.

    Example::

        >>> import torch
        >>> r, cos_phi = hyperspherical_cosines(torch.tensor([[3.0, 0.0, 4.0]]))
        >>> r.tolist(), cos_phi.tolist()   # cos phi_1 = 3/5, cos phi_2 = 0/4
        ([5.0], [[0.6000000238418579, 0.0]])
        >>> _, cos_ones = hyperspherical_cosines(torch.ones(4))  # the all-ones profile o_k
        >>> [round(c, 4) for c in cos_ones.tolist()]                 # 1/sqrt(n-k+1)
        [0.5, 0.5774, 0.7071]
    """
    check_latents(x, "x", validate=validate)
    xw = _working_dtype(x)
    if fast:
        r, cos = _Cosines.apply(xw)
    else:
        s = _max_scale(xw)
        xs = xw / s
        tails_sq = (xs * xs).flip(-1).cumsum(-1).flip(-1)
        positive = tails_sq > 0
        # Double where: the masked branch must not produce inf/nan gradients either.
        tails = torch.where(positive, tails_sq, torch.ones_like(tails_sq)).sqrt()
        cos = torch.where(positive, xs / tails, torch.ones_like(xs))[..., :-1]
        r = torch.where(positive[..., 0], tails[..., 0], torch.zeros_like(tails[..., 0])) * s[..., 0]
    return r.to(x.dtype), cos.to(x.dtype)


def _safe_atan2(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``atan2(y, x)`` with 0 and a zero gradient at ``(0, 0)`` instead of NaN gradients."""
    origin = (y == 0) & (x == 0)
    return torch.atan2(torch.where(origin, torch.zeros_like(y), y), torch.where(origin, torch.ones_like(x), x))


def to_hyperspherical(x: torch.Tensor, *, validate: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Radius and angles of ``x`` (paper eq 9).

    Args:
        x: ``(..., n)``, ``n >= 2``.

    Returns:
        ``r`` of shape ``(...)`` and ``phi`` of shape ``(..., n-1)``: ``phi_1..phi_{n-2}`` in
        ``[0, pi]``, ``phi_{n-1}`` in ``[0, 2 pi)`` (lower half-turn when ``x_n < 0``).

    The angles are ``atan2(||x_{k+1..n}||, x_k)`` rather than ``arccos(cos phi_k)``: the
    same value, but accurate near the poles, where arccos loses half the digits and
    has an infinite derivative.

    Example::

        >>> import math, torch
        >>> r, phi = to_hyperspherical(torch.tensor([0.0, 0.0, -2.0], dtype=torch.float64))
        >>> r.item(), [round(a / math.pi, 3) for a in phi.tolist()]  # phi_2 past pi: x_n < 0
        (2.0, [0.5, 1.5])
        >>> torch.allclose(from_hyperspherical(r, phi), torch.tensor([0.0, 0.0, -2.0], dtype=torch.float64))
        True
    """
    check_latents(x, "x", validate=validate)
    xw = _working_dtype(x)
    s = _max_scale(xw)
    xs = xw / s
    tails_sq = (xs * xs).flip(-1).cumsum(-1).flip(-1)
    positive = tails_sq > 0
    # Double where: sqrt at 0 has an infinite derivative even in the masked branch.
    tails = torch.where(
        positive, torch.where(positive, tails_sq, torch.ones_like(tails_sq)).sqrt(), torch.zeros_like(tails_sq)
    )
    r = tails[..., 0] * s[..., 0]
    polar = _safe_atan2(tails[..., 1:-1], xs[..., :-2])  # phi_1..phi_{n-2}, in [0, pi]
    last = _safe_atan2(xs[..., -1], xs[..., -2])  # (-pi, pi]
    last = torch.where(last < 0, last + 2 * math.pi, last)
    # Rounding can put a tiny negative angle at exactly 2 pi: that point is angle 0.
    last = torch.where(last >= 2 * math.pi, torch.zeros_like(last), last)
    phi = torch.cat([polar, last.unsqueeze(-1)], -1)
    return r.to(x.dtype), phi.to(x.dtype)


def from_hyperspherical(r: torch.Tensor, phi: torch.Tensor, *, validate: bool = True) -> torch.Tensor:
    """Cartesian vector from radius and angles (paper eq 10), the inverse of
    :func:`to_hyperspherical`.

    Args:
        r: ``(...)``, the radius (negative radii are allowed and flip the vector).
        phi: ``(..., n-1)``, ``n >= 2``; any real angles (no range is required).

    Returns:
        ``x`` of shape ``(..., n)``: ``x_k = r cos phi_k prod_{j<k} sin phi_j`` for
        ``k < n`` and ``x_n = r prod_{j<n} sin phi_j``.
    """
    check_floating(r, "r")
    check_latents(phi, "phi", min_dim=1, validate=False)
    if tuple(r.shape) != tuple(phi.shape[:-1]):
        raise ValueError(
            f"r must have shape phi.shape[:-1] = {tuple(phi.shape[:-1])}, got {tuple(r.shape)} "
            "(no broadcasting: give one radius per vector)"
        )
    if validate:
        check_finite(r, "r")
        check_finite(phi, "phi")
    out_dtype = torch.promote_types(r.dtype, phi.dtype)
    rw, pw = _working_dtype(r), _working_dtype(phi)
    sin, cos = pw.sin(), pw.cos()
    ones = torch.ones_like(sin[..., :1])
    # Exclusive prefix products of the sines: prod_{j<k} sin phi_j, k = 1..n.
    sin_prefix = torch.cat([ones, sin], -1).cumprod(-1)
    x = sin_prefix * torch.cat([cos, ones], -1) * rw.unsqueeze(-1)
    return x.to(out_dtype)


def sphere_radius(n: int) -> float:
    """``sqrt(n)``: the radius of the sphere that the latents of an ``n``-dim model live on
    (paper eq 8; ``E|z|^2 = n`` for ``z ~ N(0, I_n)``). The one place it is computed."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n (the latent dimension) must be an int >= 1, got {n!r}")
    return math.sqrt(n)


def _check_radius(radius: float | torch.Tensor) -> None:
    """A NaN, infinite, zero or negative radius would silently give NaN or flipped vectors."""
    if isinstance(radius, torch.Tensor):
        ok = bool(torch.isfinite(radius).all()) and bool((radius > 0).all())  # a host sync
    elif isinstance(radius, int | float) and not isinstance(radius, bool):
        ok = math.isfinite(radius) and radius > 0
    else:
        raise TypeError(f"radius must be a number or a tensor, got {type(radius).__name__}")
    if not ok:
        raise ValueError(f"radius must be finite and > 0, got {radius!r}")


def project_to_sphere(
    z: torch.Tensor, radius: float | torch.Tensor, *, validate: bool = True
) -> torch.Tensor:
    """Rescale each vector of ``z`` (``(..., n)``) to norm ``radius`` (paper eq 8).

    The zero vector has no direction; it is mapped to ``radius * e_1`` (the pole,
    consistent with the angle-0 convention) with a zero gradient, so values and
    gradients stay finite. Scaled by the largest entry first, so huge or tiny vectors
    neither overflow nor underflow.

    Example::

        >>> import torch
        >>> project_to_sphere(torch.tensor([[3.0, 4.0], [0.0, 0.0]]), 10.0).tolist()
        [[6.0, 8.0], [10.0, 0.0]]
    """
    check_latents(z, "z", min_dim=1, validate=validate)
    if validate or not isinstance(radius, torch.Tensor):
        _check_radius(radius)
    zw = _working_dtype(z)
    zs = zw / _max_scale(zw)
    norm_sq = (zs * zs).sum(-1, keepdim=True)
    nonzero = norm_sq > 0
    inv = torch.rsqrt(torch.where(nonzero, norm_sq, torch.ones_like(norm_sq)))
    pole = torch.zeros_like(zs)
    pole[..., 0] = 1.0
    return (radius * torch.where(nonzero, zs * inv, pole)).to(z.dtype)
