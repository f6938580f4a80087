"""Errors a user can fix derive from :class:`UserError` (a ``ValueError``): the CLI prints
them as one line and exits 2.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "RunDirLocked",
    "StorageError",
    "UserError",
]


class UserError(ValueError):
    """A problem the user can fix (bad input, a busy or damaged run directory)."""


class RunDirLocked(UserError):
    """Another live process holds the run directory."""


class CheckpointError(UserError):
    """A checkpoint file is unreadable, incomplete, unsafe or of another model."""


class StorageError(UserError):
    """Writing a file failed (disk full, quota, read-only); the previous version is intact."""


