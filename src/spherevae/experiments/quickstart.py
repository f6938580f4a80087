"""The README's main job: a standard and a compressed VAE on Fashion-MNIST, trained,
evaluated and compared in one report (``spherevae quickstart``). The two runs go through
:func:`spherevae.experiments.sweep.run_local`: side by side on a machine with two or more
cores, each with its share of the threads (on 2 cores: training 1.19x faster than one run
at a time with both threads, evaluation 0.91x, the whole job 1.04x; docs/benchmarks.md),
and finished runs are skipped."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from spherevae.experiments.spec import RunResult, RunSpec, split_evaluate_overrides
from spherevae.experiments.sweep import run_local
from spherevae.io.errors import UserError

__all__ = [
    "QUICKSTART_CONFIGS",
    "QuickstartFailed",
    "headline_table",
    "run_quickstart",
]

QUICKSTART_CONFIGS = ("fmnist-standard-cpu.yaml", "fmnist-compressed-cpu.yaml")


class QuickstartFailed(RuntimeError):
    """A quickstart run failed (after every other run ended); ``results`` holds them all,
    in the order of :data:`QUICKSTART_CONFIGS`."""

    def __init__(self, message: str, results: list[RunResult]) -> None:
        super().__init__(message)
        self.results = results


def run_quickstart(
    out_dir: str | os.PathLike[str] = "runs/quickstart",
    *,
    configs_dir: str | os.PathLike[str] | None = None,
    overrides: Sequence[str] = (),
    evaluate: dict[str, Any] | None = None,
    workers: int | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """The README's main job: train a standard and a compressed VAE on Fashion-MNIST,
    evaluate both, write the HTML report, and print the headline metrics.

    ``workers`` runs at a time (default: one per run, at most one per core; 1 runs them
    one after another in this process). Finished runs are skipped, so running it again
    only redoes what is missing. Returns the path of the report; raises
    :class:`QuickstartFailed` naming every run that failed, after the others ended.
    """
    from spherevae.report.html import load_run_summary, write_report

    out_dir = Path(out_dir)
    overrides, from_command_line = split_evaluate_overrides(overrides)  # evaluate.* go to evaluate_run
    evaluate = {**(evaluate or {}), **from_command_line}
    _check_evaluate(evaluate)
    configs_dir = Path(configs_dir) if configs_dir else _default_configs_dir()
    specs = []
    for name in QUICKSTART_CONFIGS:
        base = configs_dir / name
        if not base.is_file():
            raise FileNotFoundError(f"quickstart config {base} does not exist")
        run_name = name.removesuffix(".yaml")
        specs.append(
            RunSpec(run_name, out_dir / run_name, base, tuple(overrides), {"config": run_name},
                    {"tsne_points": 5000, **(evaluate or {})})
        )
    workers = _workers(workers, len(specs))
    log(f"== train + evaluate {' and '.join(s.name for s in specs)} -> {out_dir} "
        f"({workers} at a time)")
    ended = run_local(specs, workers, lambda r: log(f"== {r.name}: {r.status}"))
    by_name = {r.name: r for r in ended}
    results = [by_name[s.name] for s in specs]
    failed = [f"{s.name} failed: {by_name[s.name].error} (traceback in {s.run_dir / 'error.txt'})"
              for s in specs if by_name[s.name].status == "failed"]
    if failed:
        raise QuickstartFailed("; ".join(failed), results)
    report = out_dir / "report.html"
    write_report([load_run_summary(s.run_dir) for s in specs], report,
                 title="spherevae quickstart: standard vs compressed VAE on Fashion-MNIST")
    log("")
    log(headline_table(results))
    log(f"\nreport: {report.resolve()}")
    return report


def _workers(workers: int | None, runs: int) -> int:
    if workers is None:
        return max(1, min(runs, os.cpu_count() or 1))
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UserError(f"quickstart: workers must be an integer >= 1, got {workers!r}")
    return workers


def _check_evaluate(evaluate: dict[str, Any]) -> None:
    """Refuse an unknown ``evaluate.*`` option before any training (a typo would otherwise
    fail the first run after it trained)."""
    import dataclasses

    from spherevae.evaluation.context import EvalConfig
    from spherevae.io.errors import UserError

    known = sorted(f.name for f in dataclasses.fields(EvalConfig))
    unknown = sorted(set(evaluate) - set(known))
    if unknown:
        raise UserError(f"quickstart: unknown evaluate option(s) {unknown} (evaluate.KEY=VALUE "
                        f"on the command line); the options are {known}")


def headline_table(results: Sequence[RunResult]) -> str:
    """The headline metrics as plain text, grouped and described by
    :mod:`spherevae.evaluation.metric_info`, one column per run, ``*`` on each row's best value."""
    from spherevae.evaluation.metric_info import format_table

    return format_table({r.name: r.metrics for r in results})


def _default_configs_dir() -> Path:
    # The configs ship inside the package (spherevae/configs), so this works after a
    # plain `pip install` from any directory.
    from spherevae.configs import CONFIG_DIR

    return CONFIG_DIR
