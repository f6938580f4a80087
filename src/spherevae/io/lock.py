"""The run-directory lock: one process at a time trains in a run directory, and never
while another evaluates it.

:class:`RunDirLock` creates ``RUN/.lock`` (holder pid, host, start time) atomically and
refuses a second holder at once, naming the first. A lock whose pid is dead on this host
is stale (a killed run) and is taken over with a warning. Training also holds an
exclusive ``flock`` on ``RUN/.readers.lock``; an evaluation holds a shared one
(:class:`RunReadLock`), so evaluations run side by side but never interleave with a
``train --resume`` (which would fit samplers to weights that are being replaced). The
kernel drops an ``flock`` when its process dies: it is never stale.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
import tempfile
import warnings
from pathlib import Path
from typing import Any

from spherevae.io.errors import RunDirLocked
from spherevae.io.layout import RunLayout
from spherevae.io.safe_read import read_run_text

__all__ = [
    "RunDirLock",
    "RunReadLock",
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
        self._readers: Any = None

    def _read(self) -> dict[str, Any] | None:
        try:
            # The run's own file, as untrusted input: a FIFO or a link out of the run is unreadable.
            data = json.loads(read_run_text(self.path.parent, self.path, limit=4096))
        except (OSError, ValueError):
            return None
        # A lock file someone wrote by hand (a pid that is not an integer) is unreadable.
        ok = isinstance(data, dict) and isinstance(data.get("pid"), int) and not isinstance(data["pid"], bool)
        return data if ok else None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            if self._create():
                self.held = True
                try:
                    self._readers = _flock(RunLayout(self.path.parent).readers_lock, fcntl.LOCK_EX)
                except BlockingIOError:
                    self.release()
                    raise RunDirLocked(f"run directory {self.path.parent} is being evaluated by "
                                       "another process; wait for the evaluation to finish") from None
                return
            other = self._read()
            if other is None or other.get("host") != self.holder["host"] or _pid_alive(other["pid"]):
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
        if self._readers is not None:
            self._readers.close()  # closing the file drops the flock
            self._readers = None
        if self.held and self._read() == self.holder:
            self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> RunDirLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()




def _flock(path: Path, kind: int) -> Any:
    """``path`` opened (created if missing) and ``flock``'ed with ``kind``, non-blocking;
    the open file holds the lock until it is closed. Raises ``BlockingIOError`` if held."""
    f = open(path, "a+b")
    try:
        fcntl.flock(f.fileno(), kind | fcntl.LOCK_NB)
    except BaseException:
        f.close()
        raise
    return f


class RunReadLock:
    """``with RunReadLock(run_dir): ...`` holds a shared ``flock`` on ``.readers.lock``:
    any number of evaluations at once, none while a process trains in ``run_dir``."""

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.run_dir = Path(run_dir)
        self._file: Any = None

    def __enter__(self) -> RunReadLock:
        layout = RunLayout(self.run_dir)
        try:
            self._file = _flock(layout.readers_lock, fcntl.LOCK_SH)
        except BlockingIOError:
            who = RunDirLock(self.run_dir)._read()
            by = f" by pid {who.get('pid')} on host {who.get('host')}" if who else ""
            raise RunDirLocked(f"run directory {self.run_dir} is being trained{by} (lock file "
                               f"{layout.lock}); evaluate it when the training has finished") from None
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            if self._file is not None:
                self._file.close()
        self._file = None
