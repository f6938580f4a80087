"""Sweeps: a base run config crossed with a grid, trained and evaluated run by run.

A sweep is a YAML file::

    name: fmnist-fig2
    base: ../fmnist-compressed-cpu.yaml     # a run config, relative to this file
    out_dir: sweeps/fmnist-fig2             # relative to the working directory
    overrides: [train.epochs=8]             # applied to every run
    variants:                               # named override sets, crossed with the grid
      standard: [objective.name=standard]
      compressed: [objective.name=compressed]
    grid:                                   # cartesian product of key -> values
      model.latent_dim: [16, 64, 256]
      objective.beta: [0.5, 1.0]
      train.seed: [0, 1]
    evaluate: {num_samples: 10000}          # keyword arguments of evaluate_run
    resources: {cpus: 4, gpus: 1}           # per run, on the ray backend (default 1 CPU, 0 GPU)

Every run gets its own directory ``out_dir/runs/<run name>``. A run whose
``eval/metrics.json`` exists is finished and skipped, so a crashed or interrupted
sweep resumes where it stopped. A failing run is recorded with its error in the
results table and does not stop the sweep. Results are collected into
``results.csv`` and ``results.json`` and drawn as the MSE-FID plane (Fig 2).

Backends (registry :data:`BACKENDS`): ``local`` (one run at a time or ``workers``
processes) and ``ray`` (the optional ``ray`` extra: a local instance or a cluster).
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import os
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from spherevae.rundir import (
    RunLayout,
    UserError,
    atomic_write_json,
    atomic_write_text,
    check_name,
    read_json,
)
from spherevae.sweep_check import check_sweep

__all__ = [
    "BACKENDS",
    "RunResult",
    "RunSpec",
    "SweepConfig",
    "check_sweep",
    "collect_results",
    "expand_grid",
    "load_sweep",
    "run_sweep",
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
    """A validated sweep. ``base`` is an absolute path to a run config."""

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
        if self.backend not in BACKENDS:
            raise ValueError(
                f"sweep field 'backend' must be one of {sorted(BACKENDS)}, got {self.backend!r}"
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
    from spherevae.config import read_yaml
    from spherevae.configs import resolve

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
    return SweepConfig(
        name=raw["name"],
        base=(path.parent / raw["base"]).resolve(),
        out_dir=Path(raw.get("out_dir", f"sweeps/{raw['name']}")),
        overrides=tuple(raw.get("overrides") or ()) + tuple(overrides),
        variants=variants,
        grid=grid,
        evaluate=dict(raw.get("evaluate") or {}),
        backend=raw.get("backend", "local"),
        workers=int(raw.get("workers", 1)),
        resources={**DEFAULT_RESOURCES, **(raw.get("resources") or {})},
    )


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


def _metrics_path(run_dir: Path) -> Path:
    return RunLayout(run_dir).eval_metrics


def run_overrides(spec: RunSpec) -> list[str]:
    """The overrides on ``spec.base`` that make the run's config (its directory included)."""
    return [*spec.overrides, f"train.out_dir={spec.run_dir.parent}", f"train.run_name={spec.run_dir.name}"]


def _execute_in_worker(spec: RunSpec) -> RunResult:
    """:func:`execute_run` in a sweep worker process, whose warnings print as one line
    naming the run (the CLI's one-line format does not reach a spawned process)."""
    with warnings.catch_warnings():
        warnings.showwarning = lambda msg, *_a, **_k: print(
            f"{spec.name}: warning: {msg}", file=sys.stderr, flush=True)
        return execute_run(spec)


def execute_run(spec: RunSpec) -> RunResult:
    """Train (resuming if a checkpoint exists) and evaluate one run; never raises."""
    done = _metrics_path(spec.run_dir)
    if done.is_file():
        try:
            return RunResult(spec.name, spec.params, "skipped", read_json(done))
        except UserError as exc:  # damaged from outside (evaluate writes it atomically)
            warnings.warn(f"{exc}; evaluating {spec.name} again", stacklevel=2)
    try:
        import torch

        from spherevae.config import load_config
        from spherevae.evaluation import evaluate_run
        from spherevae.training import train

        # Each worker process gets one core's worth of threads: workers * threads
        # must not oversubscribe the machine.
        threads = os.environ.get("SPHEREVAE_THREADS_PER_RUN")
        if threads:
            torch.set_num_threads(int(threads))
        cfg = load_config(spec.base, run_overrides(spec))
        resume = RunLayout(spec.run_dir).checkpoint.is_file()
        if not resume and spec.run_dir.exists():
            # A run that died before its first checkpoint: keep its files for
            # inspection, start afresh beside them.
            stale = spec.run_dir.with_name(f"{spec.run_dir.name}.incomplete-{int(time.time())}")
            spec.run_dir.rename(stale)
        run_dir = train(cfg, resume=resume)
        metrics = evaluate_run(run_dir, **spec.evaluate)
        return RunResult(spec.name, spec.params, "done", metrics)
    except Exception as exc:  # a failed run is reported, not lost, and the sweep goes on
        tb = traceback.format_exc()
        with contextlib.suppress(OSError):
            atomic_write_text(RunLayout(spec.run_dir).error, tb)
        return RunResult(spec.name, spec.params, "failed", error=f"{type(exc).__name__}: {exc}")


Backend = Callable[[list[RunSpec], int, Callable[[RunResult], None]], list[RunResult]]


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep; ``results`` holds the runs that finished before it."""

    def __init__(self, results: list[RunResult], running: int) -> None:
        super().__init__(f"sweep interrupted: {len(results)} run(s) finished, {running} stopped")
        self.results = results
        self.running = running


def _local_backend(
    specs: list[RunSpec], workers: int, on_result: Callable[[RunResult], None]
) -> list[RunResult]:
    results: list[RunResult] = []
    if workers == 1:
        try:
            for spec in specs:
                result = execute_run(spec)
                on_result(result)
                results.append(result)
        except KeyboardInterrupt:
            raise SweepInterrupted(results, 1) from None
        return results
    from spherevae.workpool import WorkerFailure, WorkerPool

    workers = min(workers, len(specs)) or 1
    # Each worker gets its share of the cores: workers * threads must not oversubscribe.
    threads = os.environ.get("SPHEREVAE_THREADS_PER_RUN") or str(max(1, (os.cpu_count() or 1) // workers))
    try:
        with WorkerPool(_execute_in_worker, workers, env={"SPHEREVAE_THREADS_PER_RUN": threads}) as pool:
            for spec, outcome in pool.imap_unordered(specs):
                if isinstance(outcome, WorkerFailure):  # the worker died: no error.txt of its own
                    with contextlib.suppress(OSError):
                        atomic_write_text(RunLayout(spec.run_dir).error, outcome.message + "\n")
                    outcome = RunResult(spec.name, spec.params, "failed", error=outcome.message)
                on_result(outcome)
                results.append(outcome)
    except KeyboardInterrupt:  # the pool has stopped every worker; runs resume from checkpoints
        raise SweepInterrupted(results, min(workers, len(specs) - len(results))) from None
    return results


def _ray_backend(
    specs: list[RunSpec], workers: int, on_result: Callable[[RunResult], None]
) -> list[RunResult]:
    try:
        import ray
    except ImportError as exc:
        raise ImportError(
            "the ray backend needs the optional ray package: pip install 'spherevae[ray]'"
        ) from exc
    started_here = not ray.is_initialized()
    if started_here:
        # RAY_ADDRESS selects a cluster; without it a local instance is started.
        cpus = max(s.resources["cpus"] for s in specs) if specs else 1.0
        ray.init(
            address=os.environ.get("RAY_ADDRESS"),
            num_cpus=None if os.environ.get("RAY_ADDRESS") else max(1, round(workers * cpus)),
            include_dashboard=False,
            log_to_driver=False,
        )
    try:
        # Each run reserves the sweep's `resources`; Ray sets CUDA_VISIBLE_DEVICES for the
        # GPUs it grants, so train.device=auto trains on them.
        remote = ray.remote(execute_run)
        pending = {
            remote.options(num_cpus=spec.resources["cpus"], num_gpus=spec.resources["gpus"])
            .remote(spec): spec
            for spec in specs
        }
        results: list[RunResult] = []
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            ref = ready[0]
            spec = pending.pop(ref)
            try:
                result = ray.get(ref)
            except Exception as exc:  # the worker itself died
                result = RunResult(spec.name, spec.params, "failed", error=f"ray: {exc}")
            on_result(result)
            results.append(result)
        return results
    except KeyboardInterrupt:
        raise SweepInterrupted(results, len(pending)) from None
    finally:
        if started_here:
            ray.shutdown()


BACKENDS: dict[str, Backend] = {"local": _local_backend, "ray": _ray_backend}


def collect_results(out_dir: Path, results: Iterable[RunResult]) -> list[dict[str, Any]]:
    """Write ``results.json`` and ``results.csv`` (one row per run) and return the rows."""
    rows = []
    for r in sorted(results, key=lambda r: r.name):
        row = {"name": r.name, "status": r.status, **r.params}
        if r.error:
            row["error"] = r.error
        row.update({k: v for k, v in r.metrics.items() if isinstance(v, (int, float, str, bool))})
        rows.append(row)
    atomic_write_json(out_dir / "results.json", rows, indent=2, sort_keys=True)
    columns: list[str] = []
    for row in rows:
        columns.extend(c for c in row if c not in columns)
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out_dir / "results.csv", buf.getvalue())
    return rows


def run_sweep(
    sweep: SweepConfig,
    *,
    backend: str | None = None,
    workers: int | None = None,
    fid_key: str | None = None,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Run every run of ``sweep`` not yet finished, then collect results and draw Fig 2.

    The whole sweep is checked first (``workers``, the backend's extra, :func:`check_sweep`):
    a problem raises before anything is written into ``out_dir``. Returns the rows of the
    results table (also written to ``out_dir``).
    """
    from spherevae._optional import require

    backend = backend or sweep.backend
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {sorted(BACKENDS)}, got {backend!r}")
    workers = sweep.workers if workers is None else workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UserError(f"workers must be an integer >= 1, got {workers!r}")
    for module, extra in BACKEND_NEEDS[backend]:  # before anything is written
        require(module, extra, f"the {backend} sweep backend")
    specs = expand_grid(sweep)
    check_sweep(sweep, specs)
    sweep.out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(sweep.out_dir / "sweep.json", _sweep_record(sweep, specs), indent=2)
    log(f"sweep {sweep.name}: {len(specs)} runs, backend {backend}, out {sweep.out_dir}")
    count = {"n": 0}

    def on_result(result: RunResult) -> None:
        count["n"] += 1
        tail = f": {result.error}" if result.error else ""
        log(f"[{count['n']}/{len(specs)}] {result.name}: {result.status}{tail}")

    try:
        results = BACKENDS[backend](specs, workers, on_result)
    except SweepInterrupted as stop:
        # Say so at once, keep what finished, and let the caller exit (130 in the CLI).
        log(f"sweep {sweep.name}: interrupted; stopped {stop.running} running run(s); "
            f"{len(stop.results)} of {len(specs)} finished")
        collect_results(sweep.out_dir, stop.results)
        log(f"results of the finished runs: {sweep.out_dir / 'results.csv'}; run the same "
            "command again to continue (finished runs are skipped, stopped ones resume)")
        raise
    rows = collect_results(sweep.out_dir, results)
    failed = [r for r in results if r.status == "failed"]
    if failed:
        log(f"{len(failed)} run(s) failed; see error.txt in their run directories")
    from spherevae.plots import draw_sweep_plane

    draw_sweep_plane(sweep.out_dir, rows, fid_key, log)
    return rows


def _sweep_record(sweep: SweepConfig, specs: list[RunSpec]) -> dict[str, Any]:
    record = asdict(sweep)
    record["base"] = str(sweep.base)
    record["out_dir"] = str(sweep.out_dir)
    record["runs"] = [{"name": s.name, "overrides": list(s.overrides)} for s in specs]
    return record


def __getattr__(name: str) -> Any:  # moved to spherevae.quickstart (which imports this module)
    if name in ("QUICKSTART_CONFIGS", "run_quickstart", "headline_table"):
        from spherevae import quickstart

        return getattr(quickstart, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
