"""Final model weights in safetensors: no pickle at all.

A run's trained weights are ``model.safetensors``: the state dict as a flat table of
tensors, plus string metadata (``format``, and a JSON ``spec`` saying how to rebuild the
model: our :class:`~spherevae.models.vae.VAE` config, or the import path of a user's class).
Reading it can only ever produce tensors and strings. Training checkpoints
(``checkpoints/last.pt``) hold optimiser and RNG states too and stay in
:mod:`spherevae.io.checkpoint` (``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from spherevae.io.errors import CheckpointError
from spherevae.io.files import atomic_write_bytes

__all__ = [
    "WEIGHTS_FORMAT",
    "load_weights",
    "save_weights",
]

WEIGHTS_FORMAT = "spherevae-weights-1"


def _plain_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses tensors that share storage (tied weights) and non-contiguous
    # views; a CPU clone of each is what load_state_dict needs anyway.
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def save_weights(path: str | Path, state: dict[str, torch.Tensor], spec: dict[str, Any]) -> Path:
    """Write ``state`` (a state dict) and ``spec`` (JSON-able) to ``path`` atomically."""
    from safetensors.torch import save

    path = Path(path)
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise TypeError(f"state dict entries must be tensors; not tensors: {bad[:5]}")
    blob = save(_plain_tensors(state), metadata={"format": WEIGHTS_FORMAT, "spec": json.dumps(spec)})
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
