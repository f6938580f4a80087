"""The README's main job: a standard and a compressed VAE on Fashion-MNIST, trained,
evaluated and compared in one report (``spherevae quickstart``), run by run with
:func:`spherevae.experiments.sweep.execute_run`, so finished runs are skipped."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from spherevae.experiments.spec import RunResult, RunSpec, split_evaluate_overrides
from spherevae.experiments.sweep import execute_run

__all__ = [
    "QUICKSTART_CONFIGS",
    "headline_table",
    "run_quickstart",
]

QUICKSTART_CONFIGS = ("fmnist-standard-cpu.yaml", "fmnist-compressed-cpu.yaml")


def run_quickstart(
    out_dir: str | os.PathLike[str] = "runs/quickstart",
    *,
    configs_dir: str | os.PathLike[str] | None = None,
    overrides: Sequence[str] = (),
    evaluate: dict[str, Any] | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """The README's main job: train a standard and a compressed VAE on Fashion-MNIST,
    evaluate both, write the HTML report, and print the headline metrics.

    Finished runs are skipped, so running it again only redoes what is missing.
    Returns the path of the report.
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
    results = []
    for spec in specs:
        log(f"== {spec.name}: train + evaluate -> {spec.run_dir}")
        result = execute_run(spec)
        if result.status == "failed":
            raise RuntimeError(f"quickstart run {spec.name} failed: {result.error} "
                               f"(traceback in {spec.run_dir / 'error.txt'})")
        results.append(result)
    report = out_dir / "report.html"
    write_report([load_run_summary(s.run_dir) for s in specs], report,
                 title="spherevae quickstart: standard vs compressed VAE on Fashion-MNIST")
    log("")
    log(headline_table(results))
    log(f"\nreport: {report.resolve()}")
    return report


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
