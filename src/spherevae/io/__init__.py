"""How a run lives on disk: errors a user can fix, atomic writes and append-safe logs,
the run-directory layout, its lock, checkpoint files and safetensors weights.

Layer 1: imports only :mod:`spherevae._utils`. Every file name of a run directory is
spelled in :class:`~spherevae.io.layout.RunLayout` and nowhere else.
"""

from spherevae.io.checkpoint import load_checkpoint, load_state, save_checkpoint
from spherevae.io.errors import CheckpointError, RunDirLocked, StorageError, UserError
from spherevae.io.files import (
    append_jsonl,
    atomic_open,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    clean_tmp_files,
    read_json,
    read_jsonl,
)
from spherevae.io.layout import RunLayout, check_name, make_run_dir
from spherevae.io.lock import RunDirLock
from spherevae.io.weights import WEIGHTS_FORMAT, load_weights, save_weights

__all__ = [
    "WEIGHTS_FORMAT",
    "CheckpointError",
    "RunDirLock",
    "RunDirLocked",
    "RunLayout",
    "StorageError",
    "UserError",
    "append_jsonl",
    "atomic_open",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "check_name",
    "clean_tmp_files",
    "load_checkpoint",
    "load_state",
    "load_weights",
    "make_run_dir",
    "read_json",
    "read_jsonl",
    "save_checkpoint",
    "save_weights",
]
