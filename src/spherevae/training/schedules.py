"""Multipliers for the latent (KL-like) term over training.

A schedule is a pure function of the training clock, :class:`Clock` (epoch, step in
the epoch, steps per epoch, total epochs), and keyword parameters, returning the
factor ``m`` that multiplies ``beta * latent``. New schedules are added by
registering a function in :data:`SCHEDULES`; :func:`make_schedule` checks the
parameters against the function's signature so a typo in a config is an error.

Epochs are counted from 0, as in the authors' code.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from spherevae._utils.validation import check_choice, check_positive

__all__ = [
    "PAPER_EPOCHS",
    "PAPER_QUENCH_EPOCHS",
    "SCHEDULES",
    "Clock",
    "Schedule",
    "constant",
    "cyclical",
    "linear_warmup",
    "make_schedule",
    "quench_anneal",
    "register_schedule",
]

# The paper's runs: 300 epochs, latent pressure rising for the first 100 (A.9).
PAPER_EPOCHS = 300
PAPER_QUENCH_EPOCHS = 100


@dataclass(frozen=True)
class Clock:
    """Where training is: ``epoch`` (from 0), ``step`` within it (from 0)."""

    epoch: int
    step: int
    steps_per_epoch: int
    total_epochs: int

    @property
    def progress(self) -> float:
        """Fractional epochs done, ``epoch + step / steps_per_epoch``."""
        return self.epoch + self.step / max(self.steps_per_epoch, 1)


Schedule = Callable[[Clock], float]


def constant(clock: Clock, *, value: float = 1.0) -> float:
    """``m = value`` throughout (the standard beta-VAE)."""
    return value


def quench_anneal(
    clock: Clock,
    *,
    quench_fraction: float = PAPER_QUENCH_EPOCHS / PAPER_EPOCHS,
    quench_epochs: int | None = None,
    reference_epochs: float = PAPER_QUENCH_EPOCHS,
    anneal: bool = True,
) -> float:
    """The paper's quench-then-anneal (4.1, A.9): ``m = sqrt(e) + 1`` while quenching, then 1.

    The quench lasts ``quench_epochs`` epochs (epochs ``0..quench_epochs`` inclusive, as
    in the authors' code), by default ``round(quench_fraction * total_epochs)``: 100 of
    300 for the paper's runs, the first third of a shorter run. So that a short run sees
    the same pressure curve (``m`` rising from 1 to ``sqrt(100) + 1 = 11``), the epoch is
    rescaled to ``e = epoch * reference_epochs / quench_epochs``; with 100 quench epochs
    this is the paper's schedule exactly. Set ``reference_epochs = quench_epochs`` for
    the unscaled curve.

    ``anneal=False`` never drops back: ``m = sqrt(e) + 1`` for the whole run, with the same
    rescaled ``e``. The authors' code does that with "half" compression (it drops back to 1
    only with "full" compression).
    """
    quench = (
        quench_epochs if quench_epochs is not None else round(quench_fraction * clock.total_epochs)
    )
    if quench <= 0 or (anneal and clock.epoch > quench):
        return 1.0
    return math.sqrt(clock.epoch * reference_epochs / quench) + 1.0


def linear_warmup(
    clock: Clock,
    *,
    warmup_fraction: float = 0.1,
    warmup_epochs: float | None = None,
    start: float = 0.0,
) -> float:
    """``m`` rises linearly per step from ``start`` to 1 over the warm-up, then stays at 1."""
    warm = warmup_epochs if warmup_epochs is not None else warmup_fraction * clock.total_epochs
    if warm <= 0:
        return 1.0
    t = min(clock.progress / warm, 1.0)
    return start + (1.0 - start) * t


def cyclical(clock: Clock, *, cycles: int = 4, ratio: float = 0.5) -> float:
    """Cyclical annealing (Fu et al. 2019): ``cycles`` ramps over the run.

    Within each cycle ``m`` rises linearly from 0 to 1 over the first ``ratio`` of it
    and stays at 1 for the rest; updated per step.
    """
    period = clock.total_epochs / cycles
    tau = (clock.progress % period) / period
    return min(tau / ratio, 1.0)


SCHEDULES: dict[str, Callable[..., float]] = {
    "constant": constant,
    "quench_anneal": quench_anneal,
    "linear_warmup": linear_warmup,
    "cyclical": cyclical,
}


def register_schedule(name: str, fn: Callable[..., float]) -> None:
    """Add ``fn(clock, **params) -> float`` to :data:`SCHEDULES` under ``name``."""
    if name in SCHEDULES:
        raise ValueError(f"schedule {name!r} is already registered; choose another name")
    SCHEDULES[name] = fn


def _check_params(name: str, fn: Callable[..., float], params: Mapping[str, Any]) -> None:
    sig = inspect.signature(fn)
    known = [p for p in sig.parameters if p != "clock"]
    for key, value in params.items():
        if key not in known:
            raise ValueError(
                f"schedule.params.{key} is not a parameter of schedule {name!r}; known: {known}"
            )
        if isinstance(sig.parameters[key].default, bool):  # a switch, e.g. anneal
            if not isinstance(value, bool):
                raise TypeError(f"schedule.params.{key} must be true or false, got {value!r}")
        elif isinstance(value, bool) or not isinstance(value, int | float | type(None)):
            raise TypeError(f"schedule.params.{key} must be a number, got {value!r}")
    # Values that would make the curve meaningless are caught here, not mid-run.
    for key in ("cycles", "ratio", "reference_epochs", "quench_fraction", "warmup_fraction"):
        if key in params:
            check_positive(
                params[key], f"schedule.params.{key}", allow_zero=key.endswith("fraction")
            )


def make_schedule(name: str, params: Mapping[str, Any] | None = None) -> Schedule:
    """The schedule ``name`` from :data:`SCHEDULES` with ``params`` bound, checked now."""
    check_choice(name, "schedule.name", SCHEDULES)
    fn = SCHEDULES[name]
    params = dict(params or {})
    _check_params(name, fn, params)
    return partial(fn, **params)
