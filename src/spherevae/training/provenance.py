"""Provenance: what a run's weights were trained from, carried inside the weights.

``checkpoints/last.pt`` and ``model.safetensors`` carry :func:`make_provenance`: the
resolved config less what a resume may change (:data:`~spherevae.training.resume.RESUMABLE_KEYS`)
and its SHA-256, the objective's name, the model spec, the data fingerprint and the epoch.
The files beside them (``config.yaml``, ``data_fingerprint.json``) are plain text anyone
can edit; resume and evaluate compare them with what the weights carry
(:func:`check_config`, :func:`check_fingerprint_file`) and refuse a mismatch in one line,
so an edited ``objective:`` or ``model.latent_dim`` never silently changes what runs.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

from spherevae._utils.mappings import flatten_keys
from spherevae.io.errors import UserError
from spherevae.io.layout import RunLayout
from spherevae.io.safe_read import read_run_json
from spherevae.training.config import RunConfig, config_to_dict
from spherevae.training.resume import RESUMABLE_KEYS

__all__ = [
    "check_config",
    "check_fingerprint_file",
    "config_identity",
    "make_provenance",
]


def config_identity(cfg: RunConfig) -> dict[str, Any]:
    """The flattened config keys that decide the training (all but :data:`RESUMABLE_KEYS`)."""
    flat = flatten_keys(config_to_dict(cfg))
    return {k: v for k, v in sorted(flat.items())
            if not any(k == r or k.startswith(f"{r}.") for r in RESUMABLE_KEYS)}


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def make_provenance(cfg: RunConfig, spec: dict[str, Any], fingerprint: dict[str, Any] | None,
                    epoch: int) -> dict[str, Any]:
    """What the weights after ``epoch`` (0-based) were trained from (JSON-able)."""
    identity = config_identity(cfg)
    return {"config": identity, "config_sha256": _sha(identity), "objective": cfg.objective.name,
            "model_spec": spec, "data_fingerprint": fingerprint, "epoch": int(epoch)}


def check_config(stored: dict[str, Any] | None, cfg: RunConfig, config_path: Path,
                 weights_path: Path) -> None:
    """``cfg`` (read from ``config_path``) must be the config the weights in
    ``weights_path`` were trained with; else a :class:`UserError` naming the keys."""
    if not stored or "config" not in stored:
        return  # weights from before provenance: nothing to compare with
    now = config_identity(cfg)
    if _sha(now) == stored.get("config_sha256"):
        return
    was = stored["config"]
    diff = [k for k in sorted(set(now) | set(was)) if now.get(k) != was.get(k)]
    shown = ", ".join(f"{k} {was.get(k)!r} -> {now.get(k)!r}" for k in diff[:6])
    raise UserError(
        f"{config_path} was edited after training: it differs from the config the weights in "
        f"{weights_path} were trained with ({shown or 'its hash'}); restore it (the trained "
        "values are the ones on the left) or train a new run"
    )


def check_fingerprint_file(run_dir: Path, stored: dict[str, Any] | None) -> dict[str, Any] | None:
    """The data fingerprint to check the data against: ``data_fingerprint.json``, which must
    equal the one the weights carry (``stored``); a deleted file falls back to the carried
    one with a warning. ``None`` when neither exists (a run from before fingerprints)."""
    path = RunLayout(run_dir).fingerprint
    carried = (stored or {}).get("data_fingerprint")
    if not path.exists() and not path.is_symlink():
        if carried is not None:
            warnings.warn(f"{path} is missing; checking the data against the fingerprint the "
                          "weights carry instead", stacklevel=3)
        return carried
    on_disk = read_run_json(run_dir, path, hint="delete it: the weights carry the fingerprint")
    if carried is not None and on_disk != carried:
        raise UserError(f"{path} was edited after training: it differs from the data fingerprint "
                        "the weights carry; delete it (the weights' copy is used) or restore it")
    return on_disk
