"""Files that must never be half-written: atomic writes and append-safe logs.

One helper writes every file the library must not lose half of (:func:`atomic_open`:
temporary file in the same directory, fsync, ``os.replace``, directory fsync), so a
crash leaves the old version or the new one, never a mix; a write that fails (disk
full, quota) removes its temporary file and raises :class:`StorageError` naming the
file. Logs that grow (``metrics.jsonl``, ``history.jsonl``) are appended one fsync'ed
line at a time; :func:`read_jsonl` drops a cut-off last line (what a crash mid-append
leaves) with a warning naming the file.

The lock is :mod:`spherevae.io.lock`, the layout :mod:`spherevae.io.layout`, the errors
:mod:`spherevae.io.errors`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from spherevae.io.errors import StorageError, UserError

__all__ = [
    "append_jsonl",
    "atomic_open",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "clean_tmp_files",
    "read_jsonl",
]


# --- atomic writes ------------------------------------------------------------------

_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}


def _fsync_dir(directory: Path) -> None:
    # The rename itself is durable only once the directory entry is flushed.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _storage_error(path: Path, exc: OSError) -> StorageError:
    reason = exc.strerror or str(exc)
    return StorageError(
        f"cannot write {path}: {reason}; nothing was replaced (the previous version, if any, "
        "is intact). Free space or fix permissions, then run again (`--resume` continues a run)"
    )


def _file_mode(path: Path) -> int:
    """The replaced file's mode, or 0o666 less the umask for a new one."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0o22)  # reading the umask means setting it; put it straight back
        os.umask(umask)
        return 0o666 & ~umask


def _storage_cause(exc: BaseException | None) -> OSError | None:
    """The storage ``OSError`` behind ``exc``: writers such as ``torch.save`` mask a failed
    write with an error of their own raised while handling it (``__context__``)."""
    for _ in range(5):
        if exc is None:
            return None
        if isinstance(exc, OSError) and exc.errno in _STORAGE_ERRNOS:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing; on success it replaces ``path``.

    ``mode`` is ``"w"`` (text, UTF-8) or ``"wb"``. The temporary file is named
    ``.<name>.<random>.tmp`` (:func:`clean_tmp_files` removes strays a kill leaves).
    On any error it is removed; an ``OSError`` of storage kind becomes :class:`StorageError`.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _storage_error(path, exc) if exc.errno in _STORAGE_ERRNOS else exc from None
    with contextlib.suppress(OSError):  # mkstemp makes 0600; give what open() would
        os.fchmod(fd, _file_mode(path))
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        cause = _storage_cause(exc)
        if cause is not None:
            raise _storage_error(path, cause) from exc
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, "w") as f:
        f.write(text)
    return Path(path)


def atomic_write_json(path: str | os.PathLike[str], obj: Any, **dumps: Any) -> Path:
    """Write ``json.dumps(obj, **dumps)`` to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(obj, **dumps))


def append_jsonl(path: str | os.PathLike[str], record: Mapping[str, Any]) -> None:
    """Append one JSON line and fsync it: a crash can cut off only this last line."""
    path = Path(path)
    line = json.dumps(record) + "\n"
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        if exc.errno in _STORAGE_ERRNOS:
            raise _storage_error(path, exc) from exc
        raise


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a JSON-lines file (``[]`` if it does not exist).

    A cut-off last line (a crash during an append) is dropped with a warning naming the
    file; a damaged line elsewhere raises :class:`UserError` naming the file and line.
    """
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
    records = []
    last = max((i for i, ln in enumerate(lines) if ln.strip()), default=-1)
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            if i == last:
                warnings.warn(f"{path}: dropped a cut-off last line (line {i + 1}, {len(line)} "
                              "characters; a crash during a write leaves one)", stacklevel=2)
                break
            raise UserError(f"{path}, line {i + 1}: not a JSON record ({exc}); the file is "
                            "damaged: restore it from a copy or remove that line") from None
        records.append(rec)
    return records


def clean_tmp_files(directory: str | os.PathLike[str]) -> list[Path]:
    """Remove the ``*.tmp`` files an interrupted write left under ``directory``.

    Call it only while holding the directory's lock (no other writer is active).
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    stray = sorted(p for p in directory.rglob("*.tmp") if p.is_file())
    for p in stray:
        p.unlink(missing_ok=True)
    if stray:
        warnings.warn(f"{directory}: removed {len(stray)} stray temporary file(s) left by an "
                      f"interrupted write, e.g. {stray[0].name}", stacklevel=2)
    return stray


def atomic_write_bytes(path: str | Path, blob: bytes) -> Path:
    """Write ``blob`` to ``path`` atomically (:func:`spherevae.io.files.atomic_open`)."""
    with atomic_open(path, "wb") as f:
        f.write(blob)
    return Path(path)


