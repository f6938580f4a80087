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
``eval/metrics.json`` records a complete evaluation of its current weights with the
sweep's ``evaluate`` options (:func:`option_changes`) is finished and skipped, so a crashed
or interrupted sweep resumes where it stopped. A failing run is recorded with its error in the
results table and does not stop the sweep. Results are collected into
``results.csv`` and ``results.json`` and drawn as the MSE-FID plane (Fig 2).

Backends (registry :data:`BACKENDS`): ``local`` (:func:`run_local`: one run at a time, or
``workers`` processes whose progress comes as lines naming their run) and ``ray`` (the
optional ``ray`` extra: a local instance or a cluster).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from spherevae.experiments.check import check_sweep
from spherevae.experiments.spec import (
    BACKEND_NEEDS,
    RunResult,
    RunSpec,
    SweepConfig,
    expand_grid,
    run_overrides,
)
from spherevae.io.errors import UserError
from spherevae.io.files import atomic_write_json, atomic_write_text
from spherevae.io.layout import RunLayout
from spherevae.io.safe_read import read_run_json

__all__ = [
    "BACKENDS",
    "SweepInterrupted",
    "collect_results",
    "execute_run",
    "identical_runs",
    "option_changes",
    "results_table",
    "run_local",
    "run_ray",
    "run_sweep",
]


def _metrics_path(run_dir: Path) -> Path:
    return RunLayout(run_dir).eval_metrics


def _execute_in_worker(spec: RunSpec) -> RunResult:
    """:func:`execute_run` in a worker process: its warnings and its progress (training,
    evaluation) print as plain lines naming the run, the progress at the level the parent
    passed in ``SPHEREVAE_WORKER_LOG_LEVEL`` (the parent's ``spherevae`` logger's)."""
    level = int(os.environ.get("SPHEREVAE_WORKER_LOG_LEVEL", logging.WARNING))
    with warnings.catch_warnings(), _worker_logging(spec.name, level):
        warnings.showwarning = lambda msg, *_a, **_k: print(
            f"{spec.name}: warning: {msg}", file=sys.stderr, flush=True)
        return execute_run(spec)


class _NotATerminal:
    """``stream`` in every respect (``write``, ``fileno``, ``encoding`` ...) but ``isatty``."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _RunLines(logging.Formatter):
    """``<run>: [warning: ]<message>``, every line of it (a traceback's too) starting with the
    run's name, named once (the trainer's lines already name it)."""

    def __init__(self, run: str) -> None:
        super().__init__()
        self._prefix = f"{run}: "

    def format(self, record: logging.LogRecord) -> str:
        first, *rest = super().format(record).removeprefix(self._prefix).split("\n")
        level = f"{record.levelname.lower()}: " if record.levelno >= logging.WARNING else ""
        return "\n".join([f"{self._prefix}{level}{first}", *(self._prefix + line for line in rest)])


@contextlib.contextmanager
def _worker_logging(run: str, level: int) -> Iterator[None]:
    # Workers share the parent's terminal: tqdm bars of several processes overwrite each
    # other, so a worker's stderr says it is not a terminal (the trainer then logs a line
    # per epoch and one every progress_every_s instead of a bar) and each line names its run.
    logger = logging.getLogger("spherevae")
    stderr, old_level = sys.stderr, logger.level
    sys.stderr = _NotATerminal(stderr)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_RunLines(run))
    logger.addHandler(handler)
    logger.setLevel(max(level, 1))  # NOTSET (0) would defer to the worker's root logger: WARNING
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        sys.stderr = stderr


# Options that change how an evaluation runs, not what it measures: a change is no reason
# to evaluate a finished run again (``device`` is recorded resolved: "auto" would never match).
_OPTIONS_NOT_COMPARED = frozenset({"progress", "device", "batch_size"})


def option_changes(recorded: Any, requested: dict[str, Any]) -> str:
    """The ``evaluate`` options of ``requested`` whose values differ from those an evaluation
    recorded (its ``eval_options``), as ``"key: old -> new"`` items; empty when none does or
    nothing was recorded (an evaluation older than the record). Values compare as JSON
    (a tuple equals a list)."""
    if not isinstance(recorded, dict):
        return ""
    changes = []
    for key, value in sorted(requested.items()):
        if key in _OPTIONS_NOT_COMPARED or key not in recorded:
            continue
        old, new = json.loads(json.dumps(recorded[key])), json.loads(json.dumps(value))
        if old != new:
            changes.append(f"{key}: {old!r} -> {new!r}")
    return ", ".join(changes)


def execute_run(spec: RunSpec) -> RunResult:
    """Train (resuming if a checkpoint exists) and evaluate one run; never raises."""
    done = _metrics_path(spec.run_dir)
    if done.is_file():
        from spherevae.io.weights import stale_reason
        from spherevae.training.runs import weights_identity

        try:
            metrics = read_run_json(spec.run_dir, done)
            try:
                why = stale_reason(metrics.get("weights"), weights_identity(spec.run_dir))
            except FileNotFoundError:  # metrics without weights: nothing they could be stale against
                why = None
            # Made from other weights (before a resume, or by an older spherevae), or cut off
            # before its last stage (evaluate writes after every stage group): not done.
            if why is not None:
                why = f"is stale ({why})"
            elif metrics.get("complete") is not True:
                why = ("does not record a finished evaluation (stopped before its last stage, "
                       "or written before evaluations recorded 'complete')")
            elif changed := option_changes(metrics.get("eval_options"), spec.evaluate):
                why = f"was made with other evaluate options ({changed})"
            else:
                return RunResult(spec.name, spec.params, "skipped", metrics)
            warnings.warn(f"{done} {why}; evaluating {spec.name} again", stacklevel=2)
        except UserError as exc:  # damaged from outside (evaluate writes it atomically)
            warnings.warn(f"{exc}; evaluating {spec.name} again", stacklevel=2)
    try:
        import torch

        from spherevae.evaluation.pipeline import evaluate_run
        from spherevae.training.config import load_config
        from spherevae.training.runs import train

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
        # The run's data.max_test sizes its evaluation too, unless the sweep says otherwise:
        # a sweep shortened with data.max_test=... must not evaluate on the whole test set.
        evaluate = dict(spec.evaluate)
        if cfg.data.max_test is not None:
            evaluate.setdefault("max_test", cfg.data.max_test)
        metrics = evaluate_run(run_dir, **evaluate)
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


def run_local(
    specs: list[RunSpec], workers: int, on_result: Callable[[RunResult], None]
) -> list[RunResult]:
    """Run ``specs`` (:func:`execute_run`) here, one at a time (``workers == 1``, in this
    process), or ``workers`` at a time in worker processes of ``cores // workers`` threads
    each (``SPHEREVAE_THREADS_PER_RUN`` overrides), logging progress lines at this process's
    ``spherevae`` logger level. ``on_result`` is called as each run ends; returns the
    results in the order the runs ended. Ctrl-C raises :class:`SweepInterrupted`."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UserError(f"workers must be an integer >= 1, got {workers!r}")
    workers = min(workers, len(specs)) or 1
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
    from spherevae.experiments.workpool import WorkerFailure, WorkerPool

    # Each worker gets its share of the cores: workers * threads must not oversubscribe.
    threads = os.environ.get("SPHEREVAE_THREADS_PER_RUN") or str(max(1, _usable_cores() // workers))
    try:
        env = {"SPHEREVAE_THREADS_PER_RUN": threads,
               "SPHEREVAE_WORKER_LOG_LEVEL": str(logging.getLogger("spherevae").getEffectiveLevel())}
        with WorkerPool(_execute_in_worker, workers, env=env) as pool:
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


def _usable_cores() -> int:
    """The cores this process may run on (its affinity mask, e.g. under ``taskset`` or a
    container's cpuset), not the machine's."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def run_ray(
    specs: list[RunSpec], workers: int, on_result: Callable[[RunResult], None]
) -> list[RunResult]:
    """Run ``specs`` as Ray tasks, each reserving its ``resources`` (a local Ray instance of
    ``workers x cpus`` CPUs, or the cluster ``RAY_ADDRESS`` names); ``on_result`` as each
    ends; Ctrl-C raises :class:`SweepInterrupted`. Needs the optional ``ray`` extra."""
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


BACKENDS: dict[str, Backend] = {"local": run_local, "ray": run_ray}


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
    from spherevae._utils.optional import require

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
    from spherevae.report.plane import draw_sweep_plane

    log("")
    log(results_table(rows, [k for k in specs[0].params] if specs else []))
    for names in identical_runs(rows):
        log(f"warning: runs {', '.join(names)} gave identical metrics: their overrides did not "
            "change the training at these settings (e.g. a quench shorter than one epoch, or a "
            "key the objective ignores)")
    log(f"results: {sweep.out_dir / 'results.csv'} (and results.json)")
    draw_sweep_plane(sweep.out_dir, rows, fid_key, log)
    return rows


def _cell(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else "" if v is None else str(v)


def results_table(rows: list[dict[str, Any]], params: list[str]) -> str:
    """The sweep's closing table, one line per run: its name, status and varied parameters,
    the reconstruction RMSE and the FIDs of the paper's sampler and of the best fitted
    sampler against both references (:mod:`spherevae.evaluation.verdict`)."""
    from spherevae.evaluation.verdict import REFERENCES, pick

    families = {"paper's sampler": "paper", "best fitted sampler": "fitted"}  # -> column prefix
    head = ["run", "status", *params, "RMSE %"]
    for short in families.values():
        head += [f"{short} FID vs {ref}" for ref in REFERENCES]
    table = [head]
    for r in rows:
        line = [r["name"], r["status"], *(_cell(r.get(p)) for p in params), _cell(r.get("rmse_percent"))]
        for family in families:
            for ref in REFERENCES:
                got = pick(r, ref, family)
                line.append("" if got is None else f"{got.value:.4g} ({got.sampler})")
        table.append(line)
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in table)


# Keys that differ between runs for reasons other than the training (or that hold no result).
_NOT_RESULTS = ("timings_s", "sampler_timings_s", "eval_options", "warnings")


def identical_runs(rows: list[dict[str, Any]]) -> list[list[str]]:
    """Names of finished runs (two or more) whose every numeric metric is equal: variants
    of a grid that did not change anything, which a reader would otherwise take for a result."""
    from spherevae.evaluation.metric_info import describe

    groups: dict[tuple[Any, ...], list[str]] = {}
    for r in rows:
        if r["status"] not in ("done", "skipped"):
            continue
        values = tuple(sorted((k, v) for k, v in r.items() if describe(k) is not None
                              and k not in _NOT_RESULTS and isinstance(v, (int, float))))
        if values:
            groups.setdefault(values, []).append(r["name"])
    return [names for names in groups.values() if len(names) > 1]


def _sweep_record(sweep: SweepConfig, specs: list[RunSpec]) -> dict[str, Any]:
    record = asdict(sweep)
    record["base"] = str(sweep.base)
    record["out_dir"] = str(sweep.out_dir)
    record["runs"] = [{"name": s.name, "overrides": list(s.overrides)} for s in specs]
    return record


