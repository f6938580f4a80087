"""Target profiles and presets of the hyperspherical prior loss (eqs 4-5).

A target or gain is given by value or by name: per-angle profiles (``ANGLE_TARGETS``,
functions of the latent dim ``n`` returning ``(n-1,)`` float64) and radius values
(``RADIUS_TARGETS``, functions of ``n`` returning a float). ``PRESETS`` names complete
sets of targets (``docs/objectives.md``, "Where the defaults come from").
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from spherevae._utils.validation import check_choice, check_finite
from spherevae.geometry.coordinates import hyperspherical_cosines, sphere_radius

__all__ = [
    "ANGLE_TARGETS",
    "PRESETS",
    "RADIUS_TARGETS",
    "chi_mean",
    "chi_std",
    "ones_cosines",
]


def _k(n: int) -> torch.Tensor:
    """Angle indices ``k = 1..n-1`` in float64."""
    return torch.arange(1, n, dtype=torch.float64)


def ones_cosines(n: int) -> torch.Tensor:
    """``cos phi_k`` of the all-ones vector by our own transform (eq 10), ``(n-1,)`` float64.

    This is ``o_k = 1/sqrt(n-k+1)`` (``o_1 = 1/sqrt(n)``, ``o_{n-1} = 1/sqrt(2)``): what the
    paper means by "the direction of (1, ..., 1)" and what the authors' code trains with.
    Computed from :func:`~spherevae.geometry.coordinates.hyperspherical_cosines`, never retyped, so
    the profile cannot drift from the convention the loss itself uses.
    """
    return hyperspherical_cosines(torch.ones(n, dtype=torch.float64), validate=False)[1]


# Named per-angle profiles, functions of the latent dim n returning a (n-1,) float64 tensor.
ANGLE_TARGETS: dict[str, Callable[[int], torch.Tensor]] = {
    # a_k = 1: every mu at the north pole (full compression, Fig 15).
    "pole": lambda n: torch.ones(n - 1, dtype=torch.float64),
    # a_k = 0: the equators.
    "equator": lambda n: torch.zeros(n - 1, dtype=torch.float64),
    # o_k = 1/sqrt(n-k+1): the cosines of (1, ..., 1) by eq 10 (the default wherever the
    # paper or the authors' code means that vector).
    "all_ones": ones_cosines,
    # 1/sqrt(k+1): the profile as PRINTED in section 4.2 (o_k indexed from the other end).
    # Kept for ablations only; no preset uses it.
    "paper_printed": lambda n: 1.0 / torch.sqrt(_k(n) + 1.0),
    # std of cos phi_k for a uniform direction (the Beta moments, docs/objectives.md):
    # numerically equal to o_k, derived independently.
    "uniform_std": lambda n: 1.0 / torch.sqrt(n - _k(n) + 1.0),
}


def chi_mean(n: int) -> float:
    """Mean of the chi distribution with ``n`` degrees of freedom (``|z|``, ``z ~ N(0, I_n)``)."""
    return math.sqrt(2.0) * math.exp(math.lgamma((n + 1) / 2) - math.lgamma(n / 2))


def chi_std(n: int) -> float:
    """Standard deviation of the chi distribution with ``n`` degrees of freedom."""
    return math.sqrt(max(n - chi_mean(n) ** 2, 0.0))


RADIUS_TARGETS: dict[str, Callable[[int], float]] = {
    "sqrt_n": sphere_radius,  # eq 8
    "sqrt_n_minus_half": lambda n: math.sqrt(n - 0.5),  # the authors' code, mu
    "authors_sigma": lambda n: 0.6 * math.sqrt(n - 0.5),  # the authors' code, sigma
    "chi_mean": chi_mean,
    "chi_std": chi_std,
}

# Targets shared by every preset. The paper gives none for sigma: these are the ones of the
# authors' released code (docs/objectives.md, "Where the defaults come from").
_SHARED_TARGETS: dict[str, object] = {
    "mu_radius_mean_target": "sqrt_n",
    "mu_radius_std_target": 0.0,
    "sigma_angle_mean_target": "all_ones",
    "sigma_angle_std_target": 0.0,
    "sigma_radius_mean_target": "authors_sigma",
    "sigma_radius_std_target": math.sqrt(0.5),
}

PRESETS: dict[str, dict[str, object]] = {
    "full": {
        **_SHARED_TARGETS,
        "mu_angle_mean_target": "pole",
        "mu_angle_std_target": "all_ones",
    },
    "moderate": {
        **_SHARED_TARGETS,
        "mu_angle_mean_target": "all_ones",
        "mu_angle_std_target": "all_ones",
    },
    "equator": {
        **_SHARED_TARGETS,
        "mu_angle_mean_target": "equator",
        "mu_angle_std_target": "all_ones",
    },
    "uniform": {
        **_SHARED_TARGETS,
        "mu_angle_mean_target": "equator",
        "mu_angle_std_target": "uniform_std",
    },
    "gaussian": {
        **_SHARED_TARGETS,
        "mu_angle_mean_target": "equator",
        "mu_angle_std_target": "uniform_std",
        "mu_radius_mean_target": "chi_mean",
        "mu_radius_std_target": "chi_std",
    },
}

_GROUPS = ("mu", "sigma")
_TARGET_KEYS = tuple(
    f"{g}_{part}_{stat}_target"
    for g in _GROUPS
    for part in ("angle", "radius")
    for stat in ("mean", "std")
)
_GAIN_KEYS = tuple(k.replace("_target", "_gain") for k in _TARGET_KEYS)
_SWITCHES = ("use_mu_terms", "use_sigma_terms", "use_radius_terms")
_OPTIONS = (*_TARGET_KEYS, *_GAIN_KEYS, *_SWITCHES, "gain_scale", "sigma_weighting")


def _resolve_angle(value: object, name: str, n: int) -> torch.Tensor:
    """A per-angle target or gain as a ``(n-1,)`` float64 tensor, validated."""
    if isinstance(value, str):
        return ANGLE_TARGETS[check_choice(value, name, ANGLE_TARGETS)](n)
    if isinstance(value, bool) or not isinstance(value, (int, float, torch.Tensor)):
        raise TypeError(f"{name} must be a float, a tensor or a name, got {type(value).__name__}")
    t = torch.as_tensor(value, dtype=torch.float64).detach().cpu()
    if t.dim() == 0:
        t = t.expand(n - 1).clone()
    if t.shape != (n - 1,):
        raise ValueError(
            f"{name} must be a scalar or have shape ({n - 1},) (one value per angle k = 1..{n - 1}), "
            f"got shape {tuple(t.shape)}"
        )
    check_finite(t, name)
    return t


def _resolve_radius(value: object, name: str, n: int) -> torch.Tensor:
    if isinstance(value, str):
        return torch.tensor(
            RADIUS_TARGETS[check_choice(value, name, RADIUS_TARGETS)](n), dtype=torch.float64
        )
    if isinstance(value, bool) or not isinstance(value, (int, float, torch.Tensor)):
        raise TypeError(f"{name} must be a float or a name, got {type(value).__name__}")
    t = torch.as_tensor(value, dtype=torch.float64).detach().cpu()
    if t.dim() != 0:
        raise ValueError(f"{name} must be a scalar, got shape {tuple(t.shape)}")
    check_finite(t, name)
    return t


def _check_range(t: torch.Tensor, name: str, low: float, high: float = math.inf) -> None:
    if bool((t < low).any()) or bool((t > high).any()):
        raise ValueError(
            f"{name} must lie in [{low}, {high}], got values in [{float(t.min())}, {float(t.max())}]"
        )


def _check_gain(value: float | torch.Tensor, name: str) -> None:
    """A gain (or beta) is one finite number >= 0."""
    t = torch.as_tensor(value)
    if t.dim() != 0 or not bool(torch.isfinite(t)) or float(t) < 0:
        raise ValueError(f"{name} must be a finite scalar >= 0, got {value!r}")
