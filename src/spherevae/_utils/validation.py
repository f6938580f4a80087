"""Input checks shared by every module.

Each check raises a ``ValueError`` (or ``TypeError`` for a wrong type) whose message
names the argument, says what was expected and what was given. Checks that need
the values (finiteness) read the tensor, which on a GPU is a host-device sync:
public functions therefore take ``validate: bool = True`` and hot paths (the
training step) pass ``validate=False``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

__all__ = [
    "check_choice",
    "check_finite",
    "check_floating",
    "check_latents",
    "check_mu",
    "check_positive",
    "check_same_shape",
    "check_tensor",
]


def check_tensor(x: Any, name: str) -> torch.Tensor:
    """Raise ``TypeError`` unless ``x`` is a tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    return x


def check_floating(x: torch.Tensor, name: str) -> torch.Tensor:
    """Raise ``TypeError`` unless ``x`` is a floating-point tensor."""
    check_tensor(x, name)
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor (float16/bfloat16/float32/float64), "
            f"got dtype {x.dtype}"
        )
    return x


def check_finite(x: torch.Tensor, name: str) -> torch.Tensor:
    """Raise ``ValueError`` if ``x`` holds NaN or +-inf, saying how many and where the first is."""
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        bad = (~finite).nonzero()
        first = tuple(int(i) for i in bad[0])
        raise ValueError(
            f"{name} must be finite, but {bad.shape[0]} of its {x.numel()} values are NaN or inf "
            f"(first at index {first}: {x[first].item()})"
        )
    return x


def check_latents(
    x: Any, name: str, *, min_dim: int = 2, ndim: int | None = None, validate: bool = True
) -> torch.Tensor:
    """Check a batch of vectors of shape ``(..., n)`` with ``n >= min_dim``.

    ``ndim`` pins the exact rank (e.g. 2 for ``(batch, n)``); ``validate`` also checks
    that the values are finite.
    """
    check_floating(x, name)
    if x.dim() < 1:
        raise ValueError(f"{name} must have shape (..., n) with n >= {min_dim}, got a scalar")
    if ndim is not None and x.dim() != ndim:
        expected = "(batch, n)" if ndim == 2 else f"rank {ndim}"
        raise ValueError(f"{name} must have shape {expected}, got shape {tuple(x.shape)}")
    if x.shape[-1] < min_dim:
        raise ValueError(
            f"{name} must have at least {min_dim} entries in its last dimension (n >= {min_dim}), "
            f"got shape {tuple(x.shape)}"
        )
    if validate:
        check_finite(x, name)
    return x


def check_mu(mu: Any, latent_dim: int, *, validate: bool = True) -> torch.Tensor:
    """``mu`` for a loss of ``latent_dim``: a ``(batch, latent_dim)`` batch of vectors."""
    mu = check_latents(mu, "mu", ndim=2, validate=validate)
    if mu.shape[-1:] != (latent_dim,):
        raise ValueError(f"mu must have shape (batch, {latent_dim}), got {tuple(mu.shape)}")
    return mu


def check_same_shape(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    """Raise ``ValueError`` unless ``a`` and ``b`` have the same shape (no broadcasting)."""
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, got {tuple(a.shape)} and "
            f"{tuple(b.shape)} (no broadcasting is done)"
        )


def check_positive(value: float, name: str, *, allow_zero: bool = False) -> float:
    """Raise ``ValueError`` unless ``value`` is a finite number > 0 (or >= 0)."""
    v = float(value)
    ok = v >= 0 if allow_zero else v > 0
    if not ok or v != v or v in (float("inf"), float("-inf")):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return v


def check_choice(value: str, name: str, choices: Iterable[str] | Mapping[str, Any]) -> str:
    """Raise ``ValueError`` unless ``value`` is one of ``choices`` (e.g. a registry's keys)."""
    allowed = sorted(choices)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value
