"""Atomic, code-free checkpoints.

A checkpoint is a ``dict`` of tensors, numbers, strings, lists and dicts (state
dicts, RNG states) written with ``torch.save`` and read with
``torch.load(weights_only=True)``, so loading one never runs pickled code. Writes go
through :func:`spherevae.io.files.atomic_open` (temporary file, fsync, ``os.replace``): a
crash leaves either the old file or the new one, never half of one.

Every way a file can fail to be a checkpoint (missing, empty, truncated, garbage, holding
pickled objects, lacking an entry) raises :class:`~spherevae.io.errors.CheckpointError`
(a user error) that names the file and what to do.
"""

from __future__ import annotations

import contextlib
import pickle
import re
import signal
import threading
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch

from spherevae.io.errors import CheckpointError
from spherevae.io.files import atomic_open

__all__ = [
    "load_checkpoint",
    "load_state",
    "save_checkpoint",
]


def save_checkpoint(obj: dict[str, Any], path: str | Path) -> Path:
    """Write ``obj`` to ``path`` atomically (temp file + fsync + ``os.replace``); a SIGINT or
    SIGTERM that arrives meanwhile is handled when the file is in place
    (:func:`_signals_held`)."""
    path = Path(path)
    with _signals_held(), atomic_open(path, "wb") as f:
        torch.save(obj, f)
    return path


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back for the block, then deliver each one that came (once) to
    the handlers it would have met. Why: torch's zip writer cannot unwind from an exception
    raised between its records; its destructor then throws and C++ terminates the process
    ("terminate called ... unexpected pos"), a crash instead of a clean stop. Only the main
    thread can swap Python handlers; elsewhere, and for a handler not set from Python,
    nothing is held."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: dict[int, None] = {}
    held: dict[signal.Signals, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is not None:
            held[sig] = signal.signal(sig, lambda signum, _frame: came.setdefault(signum))
    try:
        yield
    finally:
        for sig, handler in held.items():
            signal.signal(sig, handler)
        for signum in came:
            signal.raise_signal(signum)


def _why_unreadable(path: Path, exc: BaseException) -> str:
    size = path.stat().st_size
    if size == 0:
        return "it is empty"
    with path.open("rb") as f:
        is_zip = f.read(4) == b"PK\x03\x04"  # torch.save writes a zip archive
    if not is_zip:
        return f"it is not a torch checkpoint ({size} bytes of something else)"
    if isinstance(exc, pickle.UnpicklingError):
        # torch's own message suggests turning the safety off; spherevae never does.
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f" ({found.group(1)})" if found else ""
        return (f"it holds pickled Python objects{what}, which spherevae never loads because "
                "loading them could run code (it was not written by spherevae)")
    return f"it is truncated or damaged ({size} bytes; {type(exc).__name__})"


def load_checkpoint(
    path: str | Path, *, map_location: str | torch.device = "cpu", required: Iterable[str] = ()
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    ``required``: entries that must be present (else :class:`CheckpointError` naming them).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError, zipfile.BadZipFile,
            OSError, AttributeError, ImportError) as exc:
        raise CheckpointError(
            f"checkpoint {path} is not usable: {_why_unreadable(path, exc)}. Delete it and "
            "train again, or restore it from a copy"
        ) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint {path} must hold a dict, got {type(obj).__name__}")
    missing = [k for k in required if k not in obj]
    if missing:
        raise CheckpointError(
            f"checkpoint {path} lacks the entries {missing} (it is not a full spherevae "
            "checkpoint); restore it from a copy or start a new run"
        )
    return obj


def load_state(module: Any, state: dict[str, Any], path: Path, what: str = "model") -> None:
    """``module.load_state_dict(state)``; a mismatch raises :class:`CheckpointError`."""
    try:
        module.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])
        raise CheckpointError(
            f"checkpoint {path} holds {'an' if what[:1] in 'aeiou' else 'a'} {what} of a different architecture than the config "
            f"describes ({detail[:300]}); use the config the run was trained with"
        ) from None
