"""The README's main job: a standard and a compressed VAE on Fashion-MNIST, trained,
evaluated and compared in one report (``spherevae quickstart``). The runs go through
:func:`spherevae.experiments.sweep.run_local`: one after the other in this process (the
default), or side by side in worker processes (``workers=2``; on 2 cores training was 1.19x
faster and the evaluations 0.91x, the whole job no clearly faster: docs/benchmarks.md).
Finished runs are skipped."""

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
    workers: int = 1,
    log: Callable[[str], None] = print,
) -> Path:
    """The README's main job: train a standard and a compressed VAE on Fashion-MNIST,
    evaluate both, write the HTML report, and print the headline metrics.

    ``workers`` runs at a time: 1 (default) one after the other in this process; more in
    worker processes with ``cores // workers`` threads each (they import the caller's main
    module, so a script needs an ``if __name__ == "__main__":`` guard). Finished runs are
    skipped, so running it again only redoes what is missing. Returns the path of the report; raises
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
    workers = min(_check_workers(workers), len(specs))
    log(f"== train + evaluate {' and '.join(s.name for s in specs)} -> {out_dir} "
        f"({'one after the other' if workers == 1 else f'{workers} at a time'})")
    ended = run_local(specs, workers, lambda r: log(f"== {r.name}: {r.status}"))
    by_name = {r.name: r for r in ended}
    results = [by_name[s.name] for s in specs]
    failed = [f"{s.name} failed: {by_name[s.name].error} (details in {s.run_dir / 'error.txt'})"
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


def _check_workers(workers: int) -> int:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UserError(f"quickstart: workers must be an integer >= 1, got {workers!r}")
    return workers


def _check_evaluate(evaluate: dict[str, Any]) -> None:
    """Refuse an unknown ``evaluate.*`` option before any training (a typo would otherwise
    fail the first run after it trained)."""
    import dataclasses

    from spherevae.evaluation.context import EvalConfig

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
