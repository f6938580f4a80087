"""What a report may show of a run: figures that are really the run's PNG files, and an
evaluation only as current when it was made from the run's weights of now.

A run directory is untrusted input (:mod:`spherevae.io.safe_read`): a figure is embedded
only if it is a regular file inside the run that starts with the PNG signature, so a link
to a private file, a FIFO or a non-image named ``*.png`` never reaches the page. An
``eval/metrics.json`` records the weights it measured (``weights``: hash and epoch); one
made before a resume is marked stale (:func:`mark_stale`): its name says so, a warning
says which epochs, and its figures (of the old weights) are left out.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path
from typing import Any

from spherevae.io.errors import UserError
from spherevae.io.layout import RunLayout
from spherevae.io.safe_read import check_run_file, read_run_bytes
from spherevae.io.weights import stale_reason

__all__ = [
    "MAX_FIGURE_BYTES",
    "PNG_SIGNATURE",
    "mark_stale",
    "png_bytes",
    "run_figures",
]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_FIGURE_BYTES = 64 * 2**20


def png_bytes(path: str | os.PathLike[str]) -> bytes:
    """The bytes of ``path`` if it is a regular PNG file (not a link out of its folder);
    else a :class:`UserError` naming it."""
    path = Path(path)
    data = read_run_bytes(path.parent, path, limit=MAX_FIGURE_BYTES)
    if not data.startswith(PNG_SIGNATURE):
        raise UserError(f"{path} is not a PNG file (no PNG signature); remove it from eval/")
    return data


def run_figures(run_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """``{stem: real path}`` of the ``eval/*.png`` that are regular files inside the run;
    the others are skipped with a warning naming them."""
    run_dir = Path(run_dir)
    eval_dir = RunLayout(run_dir).eval_dir
    if not eval_dir.is_dir():
        return {}
    figures = {}
    for path in sorted(eval_dir.glob("*.png")):
        try:
            figures[path.stem] = check_run_file(run_dir, path)
        except (UserError, FileNotFoundError) as exc:
            warnings.warn(f"figure not embedded: {exc}", stacklevel=2)
    return figures


def mark_stale(summary: Any, run_dir: str | os.PathLike[str]) -> Any:
    """``summary`` (a :class:`~spherevae.report.html.RunSummary`) as it is, or, when its
    ``eval/metrics.json`` was not made from the run's current weights, renamed
    ``<name> [STALE]`` with the reason first among its warnings and no figures. A run
    without weights files (metrics alone) is shown as it is."""
    from spherevae.training.runs import weights_identity

    try:
        identity = weights_identity(Path(run_dir))
    except FileNotFoundError:  # no weights (metrics written by hand): nothing to be stale against
        return summary
    reason = stale_reason(summary.metrics.get("weights"), identity)
    if reason is None:
        return summary
    line = (f"STALE evaluation, not of the current weights: {reason}; run `spherevae evaluate "
            f"{run_dir}` again (its figures are left out)")
    warnings.warn(f"{RunLayout(Path(run_dir)).eval_metrics}: {line}", stacklevel=2)
    metrics = {**summary.metrics, "warnings": [line, *summary.metrics.get("warnings", [])],
               "stale": reason}
    return dataclasses.replace(summary, name=f"{summary.name} [STALE]", metrics=metrics, figures={})
