"""Resume rules: which config keys a resume may change, the schedule pinned to the old
total (the past is not rewritten), and the ``history.jsonl`` record of each start and resume.
"""

from __future__ import annotations

import dataclasses
import datetime
import inspect
import os
import socket
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from spherevae._utils.mappings import flatten_keys
from spherevae.io.errors import UserError
from spherevae.io.files import append_jsonl
from spherevae.io.layout import RunLayout

__all__ = [
    "RESUMABLE_KEYS",
    "change_words",
    "pin_schedule",
    "record_history",
    "resume_changes",
    "resume_config",
]

# What may differ between a run's config.yaml and a resume: how long, where, how loud (a key
# covers the keys below it). Everything else changes the training itself: a new run.
RESUMABLE_KEYS = (
    "train.epochs", "train.progress", "train.tensorboard", "train.loggers",
    "train.logger_options", "train.log_every", "train.checkpoint_every",
    "train.eval_batch_size", "train.device", "train.out_dir", "train.run_name",
)


def resume_changes(saved: Mapping[str, Any], new: Mapping[str, Any], run_dir: Path) -> dict[str, list[Any]]:
    """``{key: [saved, new]}`` of the allowed changes; :class:`UserError` naming any other."""
    a, b = flatten_keys(saved), flatten_keys(new)
    changed = {k: [a.get(k), b.get(k)] for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}
    refused = {k: v for k, v in changed.items()
               if not any(k == r or k.startswith(f"{r}.") for r in RESUMABLE_KEYS)}
    if refused:
        listed = ", ".join(f"{k} ({v[0]!r} -> {v[1]!r})" for k, v in refused.items())
        raise UserError(
            f"cannot resume {run_dir} with a changed {listed}: a resume may change only "
            f"{', '.join(k for k in RESUMABLE_KEYS if not k.endswith(('out_dir', 'run_name')))}; "
            "start a new run (another train.run_name) to change the others"
        )
    return {k: v for k, v in changed.items() if not k.endswith(("out_dir", "run_name"))}


def resume_config(cfg: Any, run_dir: Path) -> tuple[Any, dict[str, list[Any]]]:
    """``cfg`` (a ``RunConfig``) checked against the run's ``config.yaml`` (only
    :data:`RESUMABLE_KEYS` may differ), with a total-dependent schedule pinned to the
    old total (:func:`pin_schedule`); and the changes ``{key: [old, new]}``."""
    from spherevae.training.config import config_to_dict, load_config

    saved_path = RunLayout(Path(run_dir)).config
    if not saved_path.is_file():
        return cfg, {}
    saved = config_to_dict(load_config(saved_path, run_root=Path(run_dir)))
    changes = resume_changes(saved, config_to_dict(cfg), run_dir)
    if "train.epochs" in changes:
        params = pin_schedule(cfg.schedule.name, dict(cfg.schedule.params), saved["train"]["epochs"])
        if params != cfg.schedule.params:
            changes["schedule.params"] = [dict(cfg.schedule.params), params]
            cfg = dataclasses.replace(cfg, schedule=dataclasses.replace(cfg.schedule, params=params))
    return cfg, changes


def record_history(
    run_dir: Path, resume: bool, start_epoch: int, epochs: int, changes: dict[str, list[Any]]
) -> None:
    """One line in ``history.jsonl`` per start or resume: when, where, what changed."""
    append_jsonl(RunLayout(Path(run_dir)).history, {
        "event": "resume" if resume else "start",
        "time": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": socket.gethostname(), "pid": os.getpid(), "start_epoch": start_epoch,
        "epochs": epochs, "changes": changes,
    })
    if changes:
        warnings.warn(f"resuming {run_dir}: {change_words(changes)} (recorded in history.jsonl)",
                      stacklevel=3)


def change_words(changes: dict[str, list[Any]]) -> str:
    """The changes of a resume in words: the user's edits as ``key old -> new``, and the
    schedule pinned by :func:`resume_config` (the unflattened ``schedule.params`` entry,
    which only the pin writes) as a consequence of their new ``train.epochs``."""
    edits = [f"{k} {v[0]!r} -> {v[1]!r}" for k, v in changes.items() if k != "schedule.params"]
    words = "your change " + ", ".join(edits) if edits else "no change of yours"
    if "schedule.params" in changes:
        old, new = changes["schedule.params"]
        pinned = ", ".join(f"{k}={v!r}" for k, v in new.items() if old.get(k) != v)
        words += (f"; as a consequence the schedule keeps the curve it had over the first "
                  f"{changes.get('train.epochs', ['?'])[0]} epochs ({pinned} pinned), so the added "
                  "epochs run at the full latent weight")
    return words


# Schedules whose curve depends on train.epochs, and the parameter that pins it:
# (its length in epochs, its fraction of train.epochs, the length's type).
_PINS: dict[str, tuple[str, str, Callable[[float], Any]]] = {
    "quench_anneal": ("quench_epochs", "quench_fraction", round),
    "linear_warmup": ("warmup_epochs", "warmup_fraction", float),
}


def pin_schedule(name: str, params: dict[str, Any], old_epochs: int) -> dict[str, Any]:
    """Params that keep a schedule's curve as it was under ``old_epochs`` total epochs.

    Extending a run extends its end and never rewrites its past: a quench (or warm-up)
    sized as a fraction of the old total gets that length in epochs, and the added epochs
    run at ``m = 1``. Schedules with no such parameter (``cyclical``) warn instead.
    """
    from spherevae.training.schedules import SCHEDULES

    if name not in _PINS:
        if name == "cyclical":
            warnings.warn("schedule 'cyclical' spreads its cycles over train.epochs: extending "
                          "the run stretches the cycles still to come", stacklevel=2)
        return dict(params)
    pinned, fraction, cast = _PINS[name]
    if params.get(pinned) is not None:
        return dict(params)
    default = inspect.signature(SCHEDULES[name]).parameters[fraction].default
    return {**params, pinned: cast(params.get(fraction, default) * old_epochs)}


