"""Run-directory safety: atomic writes, append-safe logs, the lock, resume rules, data fingerprints.

One helper writes every file the library must not lose half of (:func:`atomic_open`:
temporary file in the same directory, fsync, ``os.replace``, directory fsync), so a
crash leaves the old version or the new one, never a mix; a write that fails (disk
full, quota) removes its temporary file and raises :class:`StorageError` naming the
file. Logs that grow (``metrics.jsonl``, ``history.jsonl``) are appended one fsync'ed
line at a time; :func:`read_jsonl` drops a cut-off last line (what a crash mid-append
leaves) with a warning naming the file.

A run directory is used by one process at a time: :class:`RunDirLock` creates
``RUN/.lock`` (holder pid, host, start time) atomically and refuses a second holder
at once, naming the first. A lock whose pid is dead on this host is stale (a killed
run) and is taken over with a warning.

Errors a user can fix derive from :class:`UserError` (a ``ValueError``): the CLI
prints them as one line and exits 2.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import inspect
import json
import os
import socket
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

__all__ = [
    "RESUMABLE_KEYS",
    "CheckpointError",
    "RunDirLock",
    "RunDirLocked",
    "RunLayout",
    "StorageError",
    "UserError",
    "append_jsonl",
    "atomic_open",
    "atomic_write_json",
    "atomic_write_text",
    "check_name",
    "clean_tmp_files",
    "flatten_keys",
    "make_run_dir",
    "pin_schedule",
    "read_json",
    "read_jsonl",
    "record_history",
    "resume_changes",
    "resume_config",
]


@dataclasses.dataclass(frozen=True)
class RunLayout:
    """Where everything of one run lives (``RunLayout(run_dir).checkpoint`` etc.): the only
    place in the package that spells these names, so a change of layout is a change here."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    config = property(lambda self: self.root / "config.yaml")
    metrics = property(lambda self: self.root / "metrics.jsonl")  # one record per epoch
    history = property(lambda self: self.root / "history.jsonl")  # starts and resumes
    checkpoint = property(lambda self: self.root / "checkpoints" / "last.pt")
    weights = property(lambda self: self.root / "model.safetensors")  # final weights
    legacy_weights = property(lambda self: self.root / "model.pt")  # runs before safetensors
    fingerprint = property(lambda self: self.root / "data_fingerprint.json")
    eval_dir = property(lambda self: self.root / "eval")
    eval_metrics = property(lambda self: self.root / "eval" / "metrics.json")
    samplers_dir = property(lambda self: self.root / "samplers")
    latents = property(lambda self: self.root / "latents.safetensors")
    error = property(lambda self: self.root / "error.txt")  # a failed sweep run's traceback
    lock = property(lambda self: self.root / ".lock")

    def sampler(self, name: str) -> Path:
        """A fitted sampler's file (``spherevae.sampling.sampler_to_state``)."""
        return self.samplers_dir / f"{name}.safetensors"


class UserError(ValueError):
    """A problem the user can fix (bad input, a busy or damaged run directory)."""


class RunDirLocked(UserError):
    """Another live process holds the run directory."""


class CheckpointError(UserError):
    """A checkpoint file is unreadable, incomplete, unsafe or of another model."""


class StorageError(UserError):
    """Writing a file failed (disk full, quota, read-only); the previous version is intact."""


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


def read_json(path: str | os.PathLike[str], *, hint: str = "") -> Any:
    """``json.loads`` of ``path``; a damaged file raises :class:`UserError` naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(
            f"{path} is not valid JSON ({exc}): it is damaged{'; ' + hint if hint else ''}"
        ) from None


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


# --- names ---------------------------------------------------------------------------


def check_name(name: Any, what: str) -> str:
    """``name`` if it is one plain directory name (no separator, not ``.``/``..``)."""
    bad = (
        not isinstance(name, str) or not name.strip() or name in (".", "..")
        or any(sep in name for sep in ("/", "\\", "\0", os.sep, os.altsep or "/"))
    )
    if bad:
        raise UserError(
            f"{what} must be a plain directory name (no '/', '\\', '.' or '..'), got {name!r}"
        )
    return name


# --- the lock ------------------------------------------------------------------------


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


# --- resume --------------------------------------------------------------------------

# What may differ between a run's config.yaml and a resume: how long, where, how loud (a key
# covers the keys below it). Everything else changes the training itself: a new run.
RESUMABLE_KEYS = (
    "train.epochs", "train.progress", "train.tensorboard", "train.loggers",
    "train.logger_options", "train.log_every", "train.checkpoint_every",
    "train.eval_batch_size", "train.device", "train.out_dir", "train.run_name",
)


def flatten_keys(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{'a': {'b': 1}} -> {'a.b': 1}`` (nested mappings to dotted keys)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten_keys(v, key + "."))
        else:
            out[key] = v
    return out


def resume_changes(saved: Mapping[str, Any], new: Mapping[str, Any], run_dir: Path) -> dict[str, list[Any]]:
    """``{key: [saved, new]}`` of the allowed changes; :class:`UserError` naming any other."""
    a, b = flatten_keys(saved), flatten_keys(new)
    changed = {k: [a.get(k), b.get(k)] for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}
    refused = {k: v for k, v in changed.items()
               if not any(k == r or k.startswith(f"{r}.") for r in RESUMABLE_KEYS)}
    if refused:
        listed = ", ".join(f"{k} ({v[0]!r} -> {v[1]!r})" for k, v in refused.items())
        raise UserError(
            f"cannot resume {run_dir} with a changed {listed}: a resume may change only "
            f"{', '.join(k for k in RESUMABLE_KEYS if not k.endswith(('out_dir', 'run_name')))}; "
            "start a new run (another train.run_name) to change the others"
        )
    return {k: v for k, v in changed.items() if not k.endswith(("out_dir", "run_name"))}


def resume_config(cfg: Any, run_dir: Path) -> tuple[Any, dict[str, list[Any]]]:
    """``cfg`` (a ``RunConfig``) checked against the run's ``config.yaml`` (only
    :data:`RESUMABLE_KEYS` may differ), with a total-dependent schedule pinned to the
    old total (:func:`pin_schedule`); and the changes ``{key: [old, new]}``."""
    from spherevae.config import config_to_dict, load_config

    saved_path = RunLayout(Path(run_dir)).config
    if not saved_path.is_file():
        return cfg, {}
    saved = config_to_dict(load_config(saved_path))
    changes = resume_changes(saved, config_to_dict(cfg), run_dir)
    if "train.epochs" in changes:
        params = pin_schedule(cfg.schedule.name, dict(cfg.schedule.params), saved["train"]["epochs"])
        if params != cfg.schedule.params:
            changes["schedule.params"] = [dict(cfg.schedule.params), params]
            cfg = dataclasses.replace(cfg, schedule=dataclasses.replace(cfg.schedule, params=params))
    return cfg, changes


def record_history(
    run_dir: Path, resume: bool, start_epoch: int, epochs: int, changes: dict[str, list[Any]]
) -> None:
    """One line in ``history.jsonl`` per start or resume: when, where, what changed."""
    append_jsonl(RunLayout(Path(run_dir)).history, {
        "event": "resume" if resume else "start",
        "time": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": socket.gethostname(), "pid": os.getpid(), "start_epoch": start_epoch,
        "epochs": epochs, "changes": changes,
    })
    if changes:
        warnings.warn(f"resuming {run_dir} with changes: " + ", ".join(
            f"{k} {v[0]!r} -> {v[1]!r}" for k, v in changes.items()) + " (recorded in history.jsonl)",
            stacklevel=3)


def make_run_dir(out_dir: str | os.PathLike[str], run_dir: Path) -> None:
    """Create ``run_dir``; a file where a directory should be is a :class:`UserError`."""
    for path, what in ((Path(out_dir), "train.out_dir"), (Path(run_dir), "the run directory")):
        if path.exists() and not path.is_dir():
            raise UserError(f"{what} {str(path)!r} is a file, not a directory; choose another path")
    try:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise UserError(f"cannot create the run directory {str(run_dir)!r}: {exc.strerror} "
                        f"({exc.filename}); choose another train.out_dir") from None


# Schedules whose curve depends on train.epochs, and the parameter that pins it:
# (its length in epochs, its fraction of train.epochs, the length's type).
_PINS: dict[str, tuple[str, str, Callable[[float], Any]]] = {
    "quench_anneal": ("quench_epochs", "quench_fraction", round),
    "linear_warmup": ("warmup_epochs", "warmup_fraction", float),
}


def pin_schedule(name: str, params: dict[str, Any], old_epochs: int) -> dict[str, Any]:
    """Params that keep a schedule's curve as it was under ``old_epochs`` total epochs.

    Extending a run extends its end and never rewrites its past: a quench (or warm-up)
    sized as a fraction of the old total gets that length in epochs, and the added epochs
    run at ``m = 1``. Schedules with no such parameter (``cyclical``) warn instead.
    """
    from spherevae.schedules import SCHEDULES

    if name not in _PINS:
        if name == "cyclical":
            warnings.warn("schedule 'cyclical' spreads its cycles over train.epochs: extending "
                          "the run stretches the cycles still to come", stacklevel=2)
        return dict(params)
    pinned, fraction, cast = _PINS[name]
    if params.get(pinned) is not None:
        return dict(params)
    default = inspect.signature(SCHEDULES[name]).parameters[fraction].default
    return {**params, pinned: cast(params.get(fraction, default) * old_epochs)}


def __getattr__(name: str) -> Any:  # moved to spherevae.fingerprint (which imports this module)
    if name in ("data_fingerprint", "check_fingerprint", "FINGERPRINT_SAMPLE"):
        from spherevae import fingerprint

        return getattr(fingerprint, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
