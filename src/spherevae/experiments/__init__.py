"""Experiments: sweeps (a base config crossed with a grid, resumable, local workers or
Ray), their up-front checks, the worker pool, and the quickstart.

Layer 7: imports :mod:`spherevae.report`, :mod:`spherevae.evaluation` and everything
below them.
"""

from spherevae.experiments.check import check_sweep
from spherevae.experiments.quickstart import (
    QUICKSTART_CONFIGS,
    QuickstartFailed,
    headline_table,
    run_quickstart,
)
from spherevae.experiments.spec import (
    BACKEND_NEEDS,
    DEFAULT_RESOURCES,
    EVALUATE_PREFIX,
    RunResult,
    RunSpec,
    SweepConfig,
    expand_grid,
    load_sweep,
    run_overrides,
    split_evaluate_overrides,
)
from spherevae.experiments.sweep import (
    BACKENDS,
    SweepInterrupted,
    collect_results,
    execute_run,
    identical_runs,
    results_table,
    run_local,
    run_ray,
    run_sweep,
)
from spherevae.experiments.workpool import WorkerFailure, WorkerPool

__all__ = [
    "BACKENDS",
    "BACKEND_NEEDS",
    "DEFAULT_RESOURCES",
    "EVALUATE_PREFIX",
    "QUICKSTART_CONFIGS",
    "QuickstartFailed",
    "RunResult",
    "RunSpec",
    "SweepConfig",
    "SweepInterrupted",
    "WorkerFailure",
    "WorkerPool",
    "check_sweep",
    "collect_results",
    "execute_run",
    "expand_grid",
    "headline_table",
    "identical_runs",
    "load_sweep",
    "results_table",
    "run_local",
    "run_overrides",
    "run_quickstart",
    "run_ray",
    "run_sweep",
    "split_evaluate_overrides",
]
