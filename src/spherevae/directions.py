"""Unit directions on the sphere ``S^{n-1}``, shared by the directional distributions
(:mod:`spherevae.vmf`, :mod:`spherevae.esag`) and the samplers (:mod:`spherevae.sampling`):
the sample-shape convention, rows normalised to unit length, the orthogonal map taking
``e_1`` to a direction and the frame it gives, and k-means++ seeding.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import torch

from spherevae._validation import check_latents

__all__ = ["SampleShape", "as_shape", "check_sample_count", "draw_components", "frame_with_first_column",
           "kmeans_pp", "rotate_e1_to", "unit_directions"]

SampleShape = int | Sequence[int] | torch.Size
_SCALAR = torch.Size()  # default sample_shape: one draw


def check_sample_count(value: Any, name: str = "num") -> int:
    """``value`` as an int if it is a non-negative integer (Python or NumPy; not a bool),
    else a one-line ``TypeError`` (not an integer) or ``ValueError`` (negative) naming ``name``."""
    try:
        if isinstance(value, bool):  # an int to Python, a slip to the user
            raise TypeError
        count = operator.index(value)  # int, numpy or 0-d integer tensor
    except TypeError:
        raise TypeError(f"{name} must be a non-negative int, got {value!r} ({type(value).__name__})") from None
    if count < 0:
        raise ValueError(f"{name} must be a non-negative int, got {count}")
    return count


def as_shape(sample_shape: SampleShape, name: str = "sample_shape") -> torch.Size:
    """``sample_shape`` (a non-negative int, or a sequence of them) as a ``torch.Size``;
    anything else is a one-line ``TypeError``/``ValueError`` naming ``name`` and what is
    allowed. Every sampler's ``sample`` runs this check first."""
    sizes: tuple[object, ...] = (sample_shape,)
    if isinstance(sample_shape, Sequence) and not isinstance(sample_shape, (str, bytes)):
        sizes = tuple(sample_shape)
    try:
        return torch.Size(check_sample_count(size, name) for size in sizes)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{name} must be a non-negative int or a tuple of them, got {sample_shape!r}") from None


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


def draw_components(weights: torch.Tensor, num: int, generator: torch.Generator | None) -> torch.Tensor:
    """``num`` mixture component indices ``(num,)`` drawn with probabilities ``weights``
    ``(K,)``, with replacement; ``num = 0`` gives an empty draw (``torch.multinomial`` refuses)."""
    if num == 0:
        return torch.zeros(0, dtype=torch.long, device=weights.device)
    return torch.multinomial(weights, num, replacement=True, generator=generator)


def kmeans_pp(z: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): ``k`` rows of ``z`` ``(N, n)``
    picked with squared-distance weighting. On unit rows the squared distance is
    ``2 (1 - cos)``, so this is also the spherical k-means++ seeding."""
    first = torch.randint(z.shape[0], (1,), generator=generator, device=z.device)
    centres = [z[first[0]]]
    d2 = ((z - centres[0]) ** 2).sum(-1)
    for _ in range(1, k):  # over components, not samples
        weights = d2 if bool(d2.sum() > 0) else torch.ones_like(d2)
        i = torch.multinomial(weights, 1, generator=generator)[0]
        centres.append(z[i])
        d2 = torch.minimum(d2, ((z - z[i]) ** 2).sum(-1))
    return torch.stack(centres)
