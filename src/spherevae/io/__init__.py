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
    read_jsonl,
)
from spherevae.io.layout import RunLayout, check_name, make_run_dir
from spherevae.io.lock import RunDirLock, RunReadLock
from spherevae.io.safe_read import (
    MAX_JSON_BYTES,
    MAX_YAML_BYTES,
    MAX_YAML_DEPTH,
    check_run_file,
    check_run_output,
    read_run_bytes,
    read_run_json,
    read_run_text,
    safe_yaml_load,
)
from spherevae.io.weights import (
    WEIGHTS_FORMAT,
    file_sha256,
    load_weights,
    read_provenance,
    save_weights,
    stale_reason,
)

__all__ = [
    "MAX_JSON_BYTES",
    "MAX_YAML_BYTES",
    "MAX_YAML_DEPTH",
    "WEIGHTS_FORMAT",
    "CheckpointError",
    "RunDirLock",
    "RunDirLocked",
    "RunLayout",
    "RunReadLock",
    "StorageError",
    "UserError",
    "append_jsonl",
    "atomic_open",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "check_name",
    "check_run_file",
    "check_run_output",
    "clean_tmp_files",
    "file_sha256",
    "load_checkpoint",
    "load_state",
    "load_weights",
    "make_run_dir",
    "read_jsonl",
    "read_provenance",
    "read_run_bytes",
    "read_run_json",
    "read_run_text",
    "safe_yaml_load",
    "save_checkpoint",
    "save_weights",
    "stale_reason",
]
