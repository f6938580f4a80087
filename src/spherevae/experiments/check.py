"""A sweep checked whole before its first run (used by :func:`spherevae.experiments.sweep.run_sweep`).

Every problem a sweep's file or command line can hold is found here, before anything is
written into ``out_dir`` or any run trains, as one :class:`~spherevae.io.errors.UserError`
naming the run and the field: overrides the grid or a variant would silently beat, the
``evaluate`` options (names, values, the FID backbone's weights file), and every run's
config as the sweep builds it.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

from spherevae.io.errors import UserError

if TYPE_CHECKING:
    from spherevae.experiments.spec import RunSpec, SweepConfig

__all__ = [
    "check_sweep",
]


def check_sweep(sweep: SweepConfig, specs: Sequence[RunSpec]) -> None:
    """Check a whole sweep before its first run, writing nothing: no override sets a key the
    grid sweeps (the grid's value would win unseen), the ``evaluate`` options are
    :func:`~spherevae.evaluation.pipeline.evaluate_run`'s, and every run's config, as
    :func:`execute_run` builds it, loads and builds (:func:`spherevae.training.config.check_buildable`).
    The first problem is a :class:`UserError` naming the run and the field."""
    from spherevae.evaluation.context import EvalConfig
    from spherevae.evaluation.features import BackboneUnavailableError, check_backbone
    from spherevae.experiments.spec import run_overrides
    from spherevae.training.config import load_config, override_key
    from spherevae.training.runs import check_buildable

    where = f"sweep {sweep.name}"
    for source, items in (("the sweep's overrides or the command line", sweep.overrides),
                          *((f"variant {v!r}", ovr) for v, ovr in sweep.variants.items())):
        for item in items:
            if override_key(item) in sweep.grid:
                raise UserError(
                    f"{where}: override {item!r} (from {source}) sets "
                    f"{override_key(item)}, which the grid sweeps {list(sweep.grid[override_key(item)])}; "
                    "drop the override or change the grid"
                )
    for item in sweep.overrides:  # a variant's value would win, for that variant, unseen
        for variant, ovr in sweep.variants.items():
            if override_key(item) in map(override_key, ovr):
                raise UserError(f"{where}: override {item!r} sets {override_key(item)}, which "
                                f"variant {variant!r} sets too; drop one of them")
    known = sorted(f.name for f in dataclasses.fields(EvalConfig))
    unknown = sorted(set(sweep.evaluate) - set(known))
    if unknown:
        raise UserError(f"{where}: sweep field 'evaluate' has unknown option(s) {unknown}; "
                        f"the options are {known}")
    try:  # missing labels (a flat image folder) only drop those runs' FIDs: no refusal
        opts = EvalConfig(**sweep.evaluate)
        with contextlib.suppress(BackboneUnavailableError):
            check_backbone(opts.backbone, dataset=None, weights=opts.inception_weights)
    except (TypeError, ValueError, FileNotFoundError) as exc:
        raise UserError(f"{where}: sweep field 'evaluate': {exc}") from None
    for spec in specs:
        try:
            check_buildable(load_config(spec.base, run_overrides(spec)))
        except (TypeError, ValueError) as exc:
            raise UserError(f"{where}: run {spec.name}: {exc}") from None
