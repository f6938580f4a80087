"""What a sweep is: its YAML file as a validated :class:`SweepConfig`, and the runs it
expands to (:class:`RunSpec`, one per grid point and variant).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spherevae.io.layout import check_name

__all__ = [
    "BACKEND_NEEDS",
    "DEFAULT_RESOURCES",
    "EVALUATE_PREFIX",
    "RunResult",
    "RunSpec",
    "SweepConfig",
    "expand_grid",
    "load_sweep",
    "run_overrides",
    "split_evaluate_overrides",
]

_SWEEP_KEYS = {"name", "base", "out_dir", "overrides", "variants", "grid", "evaluate", "backend", "workers",
               "resources"}


# Optional modules a backend needs, as (module, extra that installs it): checked before a
# sweep writes anything, so a missing one is one line naming the extra.
BACKEND_NEEDS: dict[str, tuple[tuple[str, str], ...]] = {"local": (), "ray": (("ray", "ray"),)}


# What one run asks of the Ray scheduler (`resources: {cpus: 4, gpus: 1}` in a sweep).
DEFAULT_RESOURCES: dict[str, float] = {"cpus": 1.0, "gpus": 0.0}


@dataclass(frozen=True)
class SweepConfig:
    """A validated sweep. ``base`` is an absolute path to a run config (a sweep file may name
    a packaged config instead: :func:`load_sweep` resolves it)."""

    name: str
    base: Path
    out_dir: Path
    overrides: tuple[str, ...] = ()
    variants: dict[str, tuple[str, ...]] = field(default_factory=dict)
    grid: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    evaluate: dict[str, Any] = field(default_factory=dict)
    backend: str = "local"
    workers: int = 1
    resources: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_RESOURCES))

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"sweep field 'name' must be a non-empty string, got {self.name!r}")
        if not Path(self.base).is_file():
            raise FileNotFoundError(f"sweep field 'base': run config {self.base} does not exist")
        if self.backend not in BACKEND_NEEDS:
            raise ValueError(
                f"sweep field 'backend' must be one of {sorted(BACKEND_NEEDS)}, got {self.backend!r}"
            )
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"sweep field 'workers' must be an integer >= 1, got {self.workers!r}")
        for key, value in self.resources.items():
            if key not in DEFAULT_RESOURCES:
                raise ValueError(f"sweep field 'resources.{key}': known keys are {sorted(DEFAULT_RESOURCES)}")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"sweep field 'resources.{key}' must be a number >= 0, got {value!r}")
        for key, values in self.grid.items():
            if not values:
                raise ValueError(f"sweep field 'grid.{key}' must list at least one value")
        for name, ovr in self.variants.items():
            for item in ovr:
                if "=" not in item:
                    raise ValueError(
                        f"sweep field 'variants.{name}': override {item!r} must look like key.sub=value"
                    )
        for item in self.overrides:
            if "=" not in item:
                raise ValueError(f"sweep field 'overrides': {item!r} must look like key.sub=value")


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: its name, directory and the overrides on the base config."""

    name: str
    run_dir: Path
    base: Path
    overrides: tuple[str, ...]
    params: dict[str, Any]
    evaluate: dict[str, Any]
    resources: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_RESOURCES))


@dataclass
class RunResult:
    """What a run produced: its metrics, or its error."""

    name: str
    params: dict[str, Any]
    status: str  # "done" | "skipped" (already finished) | "failed"
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def load_sweep(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> SweepConfig:
    """Read and validate a sweep YAML file; ``overrides`` are appended to its own."""
    from spherevae.configs import resolve
    from spherevae.training.config import read_yaml

    path = resolve(path, "sweep")  # a file, or a packaged sweep's name
    raw = read_yaml(path, "sweep config") or {}
    if not isinstance(raw, dict):
        raise ValueError(f"sweep config {path} must be a mapping, got {type(raw).__name__}")
    unknown = set(raw) - _SWEEP_KEYS
    if unknown:
        raise ValueError(
            f"sweep config {path}: unknown field(s) {sorted(unknown)}; known fields: {sorted(_SWEEP_KEYS)}"
        )
    for required in ("name", "base"):
        if required not in raw:
            raise ValueError(f"sweep config {path}: missing field {required!r}")
    grid = {str(k): tuple(v if isinstance(v, list) else [v]) for k, v in (raw.get("grid") or {}).items()}
    variants = {str(k): tuple(v or ()) for k, v in (raw.get("variants") or {}).items()}
    run_items, evaluate = split_evaluate_overrides(overrides)
    return SweepConfig(
        name=raw["name"],
        base=_base_path(path, str(raw["base"])),
        out_dir=Path(raw.get("out_dir", f"sweeps/{raw['name']}")),
        overrides=tuple(raw.get("overrides") or ()) + run_items,
        variants=variants,
        grid=grid,
        evaluate={**dict(raw.get("evaluate") or {}), **evaluate},
        backend=raw.get("backend", "local"),
        workers=int(raw.get("workers", 1)),
        resources={**DEFAULT_RESOURCES, **(raw.get("resources") or {})},
    )


def _base_path(sweep_file: Path, base: str) -> Path:
    """A sweep's ``base``: a run config relative to the sweep file, or a packaged config's
    name (``base: digits-tiny``, the name ``--config`` takes everywhere else). A base that is
    neither is left as the path, which :class:`SweepConfig` reports as missing."""
    from spherevae.configs import resolve

    relative = (sweep_file.parent / base).resolve()
    if relative.is_file():
        return relative
    try:
        return resolve(base, "run").resolve()
    except FileNotFoundError:
        return relative


# Overrides with this prefix set keyword arguments of evaluate_run, not the run config.
EVALUATE_PREFIX = "evaluate."


def split_evaluate_overrides(overrides: Sequence[str]) -> tuple[tuple[str, ...], dict[str, Any]]:
    """``overrides`` as (run config overrides, evaluate options): ``evaluate.num_samples=1000``
    is ``{"num_samples": 1000}`` (values parsed as YAML, like every override), the rest
    stays a run config override. An ``evaluate.*`` key that is no evaluation option is
    reported by :func:`spherevae.experiments.check.check_sweep` with the others."""
    import yaml

    run, evaluate = [], {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if sep and key.startswith(EVALUATE_PREFIX):
            evaluate[key.removeprefix(EVALUATE_PREFIX)] = yaml.safe_load(value)
        else:
            run.append(item)
    return tuple(run), evaluate


def _short(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def expand_grid(sweep: SweepConfig) -> list[RunSpec]:
    """All runs of a sweep, in a deterministic order (variants outermost)."""
    keys = list(sweep.grid)
    variants = sweep.variants or {"": ()}
    specs = []
    for variant, variant_overrides in variants.items():
        for values in itertools.product(*(sweep.grid[k] for k in keys)):
            params = dict(zip(keys, values, strict=True))
            parts = ([variant] if variant else []) + [f"{_short(k)}={v}" for k, v in params.items()]
            name = "-".join(parts) or "run"
            # A value with a separator (e.g. a path) would put the run outside out_dir/runs.
            check_name(name, f"sweep run name {name!r} (from the grid and variants)")
            overrides = (
                *sweep.overrides,
                *variant_overrides,
                *(f"{k}={v}" for k, v in params.items()),
            )
            if variant:
                params = {"variant": variant, **params}
            specs.append(
                RunSpec(
                    name=name,
                    run_dir=sweep.out_dir / "runs" / name,
                    base=sweep.base,
                    overrides=overrides,
                    params=params,
                    evaluate=dict(sweep.evaluate),
                    resources=dict(sweep.resources),
                )
            )
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError("sweep grid produces duplicate run names; give the values distinct strings")
    return specs


def run_overrides(spec: RunSpec) -> list[str]:
    """The overrides on ``spec.base`` that make the run's config (its directory included)."""
    return [*spec.overrides, f"train.out_dir={spec.run_dir.parent}", f"train.run_name={spec.run_dir.name}"]


