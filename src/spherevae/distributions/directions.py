"""Unit directions on the sphere ``S^{n-1}``, shared by the directional distributions
(:mod:`spherevae.distributions.vmf`, :mod:`spherevae.distributions.esag`) and the samplers (:mod:`spherevae.distributions.samplers`):
the sample-shape convention, rows normalised to unit length, the orthogonal map taking
``e_1`` to a direction and the frame it gives, and k-means++ seeding.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import torch

__all__ = [
    "SampleShape",
    "as_shape",
    "check_sample_count",
    "draw_components",
    "kmeans_pp",
]

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
