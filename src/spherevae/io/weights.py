"""Final model weights in safetensors: no pickle at all.

A run's trained weights are ``model.safetensors``: the state dict as a flat table of
tensors, plus string metadata (``format``, and a JSON ``spec`` saying how to rebuild the
model: our :class:`~spherevae.models.vae.VAE` config, or the import path of a user's class).
Reading it can only ever produce tensors and strings. Training checkpoints
(``checkpoints/last.pt``) hold optimiser and RNG states too and stay in
:mod:`spherevae.io.checkpoint` (``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from spherevae.io.errors import CheckpointError
from spherevae.io.files import atomic_write_bytes

__all__ = [
    "WEIGHTS_FORMAT",
    "file_sha256",
    "load_weights",
    "read_provenance",
    "save_weights",
    "stale_reason",
]

WEIGHTS_FORMAT = "spherevae-weights-1"


def _plain_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses tensors that share storage (tied weights) and non-contiguous
    # views; a CPU clone of each is what load_state_dict needs anyway.
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def save_weights(path: str | Path, state: dict[str, torch.Tensor], spec: dict[str, Any],
                 provenance: dict[str, Any] | None = None) -> Path:
    """Write ``state`` (a state dict), ``spec`` and ``provenance`` (JSON-able: what the
    weights were trained from, :mod:`spherevae.training.provenance`) to ``path`` atomically."""
    from safetensors.torch import save

    path = Path(path)
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise TypeError(f"state dict entries must be tensors; not tensors: {bad[:5]}")
    meta = {"format": WEIGHTS_FORMAT, "spec": json.dumps(spec)}
    if provenance is not None:
        meta["provenance"] = json.dumps(provenance)
    blob = save(_plain_tensors(state), metadata=meta)
    return atomic_write_bytes(path, blob)


def load_weights(
    path: str | Path, *, device: str | torch.device = "cpu"
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(state_dict, spec)`` from a file written by :func:`save_weights`.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: not a spherevae weights file (truncated, another format, bad
            metadata); the message names the file.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{str(path)!r} is not a readable safetensors file ({exc}); it may be truncated: "
            "retrain or restore it from a backup"
        ) from None
    if meta.get("format") != WEIGHTS_FORMAT or "spec" not in meta:
        raise CheckpointError(
            f"{str(path)!r} is a safetensors file but not spherevae weights "
            f"(format {meta.get('format')!r}, expected {WEIGHTS_FORMAT!r})"
        )
    try:
        spec = json.loads(meta["spec"])
    except json.JSONDecodeError:
        raise CheckpointError(f"{str(path)!r}: its model spec is not valid JSON") from None
    return {k: v.to(device) for k, v in state.items()}, spec


def read_provenance(path: str | Path) -> dict[str, Any] | None:
    """The ``provenance`` metadata of a weights file (``None`` for weights written before it).

    Raises:
        CheckpointError: unreadable file or provenance that is not a JSON object.
    """
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("provenance")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{str(path)!r} is not a readable safetensors file ({exc})") from None
    if raw is None:
        return None
    try:
        prov = json.loads(raw)
    except json.JSONDecodeError:
        prov = None
    if not isinstance(prov, dict):
        raise CheckpointError(f"{str(path)!r}: its provenance metadata is not a JSON object; "
                              "the file is damaged: retrain or restore it from a copy")
    return prov


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes (read in 1 MiB blocks): the identity of a set of
    weights that ``eval/`` and ``samplers/`` record (what they were made from)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            h.update(block)
    return h.hexdigest()


def stale_reason(made_from: Any, weights: dict[str, Any]) -> str | None:
    """Why a result recorded as ``made_from`` (``{"sha256", "epoch"}``) is not of the
    ``weights`` a run has now; ``None`` when it is theirs."""
    if not isinstance(made_from, dict) or "sha256" not in made_from:
        return "it does not record which weights it was made from (an older spherevae)"
    if made_from["sha256"] == weights.get("sha256"):
        return None
    return (f"made from the weights of epoch {_epoch(made_from)}, the run's weights are now "
            f"of epoch {_epoch(weights)}")


def _epoch(identity: dict[str, Any]) -> str:
    epoch = identity.get("epoch")
    return "?" if not isinstance(epoch, int) else str(epoch + 1)
