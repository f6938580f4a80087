"""The run-directory lock: one process at a time trains in a run directory.

:class:`RunDirLock` creates ``RUN/.lock`` (holder pid, host, start time) atomically and
refuses a second holder at once, naming the first. A lock whose pid is dead on this host
is stale (a killed run) and is taken over with a warning.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import tempfile
import warnings
from pathlib import Path
from typing import Any

from spherevae.io.errors import RunDirLocked
from spherevae.io.layout import RunLayout

__all__ = [
    "RunDirLock",
]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


class RunDirLock:
    """``with RunDirLock(run_dir): ...`` holds ``run_dir/.lock`` (pid, host, time).

    Acquiring writes the holder to a temporary file and hard-links it to ``.lock``
    (atomic: fails if the lock exists, and the file is never seen half-written).
    """

    NAME = ".lock"  # RunLayout.lock

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.path = RunLayout(Path(run_dir)).lock
        self.holder = {"pid": os.getpid(), "host": socket.gethostname(),
                       "time": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
        self.held = False

    def _read(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.path.read_text())
            return data if isinstance(data, dict) else None
        except (OSError, ValueError):
            return None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            if self._create():
                self.held = True
                return
            other = self._read()
            if other is None or other.get("host") != self.holder["host"] or _pid_alive(int(other.get("pid", -1))):
                raise RunDirLocked(self._busy_message(other))
            warnings.warn(f"{self.path}: removing a stale lock of pid {other['pid']} (no longer "
                          "running on this host; a killed run)", stacklevel=3)
            self.path.unlink(missing_ok=True)
        raise RunDirLocked(self._busy_message(self._read()))  # pragma: no cover - a race lost 5 times

    def _create(self) -> bool:
        """Create the lock file with its content in one step; False if it exists."""
        fd, tmp = tempfile.mkstemp(prefix=".lock.", suffix=".tmp", dir=self.path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(self.holder, f)
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        except FileNotFoundError:  # our temp file was cleaned by the holder: try again
            return self._create()
        except OSError:  # no hard links here: exclusive create (content follows at once)
            try:
                lock_fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(lock_fd, "w") as f:
                json.dump(self.holder, f)
            return True
        finally:
            Path(tmp).unlink(missing_ok=True)

    def _busy_message(self, other: dict[str, Any] | None) -> str:
        who = (f"pid {other.get('pid')} on host {other.get('host')} since {other.get('time')}"
               if other else "an unknown process (unreadable lock file)")
        return (f"run directory {self.path.parent} is in use by {who} (lock file {self.path}); "
                "wait for it to finish, or delete the lock file if that process is gone")

    def release(self) -> None:
        if self.held and self._read() == self.holder:
            self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> RunDirLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


