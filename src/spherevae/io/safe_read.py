"""Reading a run directory as untrusted input: one gate for every file read from it.

A run directory may come from anyone (a download, a shared disk), so nothing in it is
trusted: :func:`check_run_file` refuses a path that is (or passes through) a symlink
leaving the run directory, and anything that is not a regular file (a FIFO would hang the
reader, a device would stream forever); :func:`read_run_bytes` adds a size limit and
reads without following a final symlink (``O_NOFOLLOW``, so a link swapped in after the
check is refused too); :func:`read_run_json` validates the JSON's top-level type;
:func:`safe_yaml_load` parses YAML with aliases refused and nesting bounded (a "billion
laughs" document expands aliases exponentially). :func:`check_run_output` is the same
gate for a directory the library writes into (``eval/``, ``samplers/``): one that is a
link out of the run is refused, so nothing is written outside the run directory.

Every refusal is a :class:`~spherevae.io.errors.UserError` that names the file and what
to do.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from spherevae.io.errors import UserError

__all__ = [
    "MAX_JSON_BYTES",
    "MAX_YAML_BYTES",
    "MAX_YAML_DEPTH",
    "check_run_file",
    "check_run_output",
    "read_run_bytes",
    "read_run_json",
    "read_run_text",
    "safe_yaml_load",
]

MAX_JSON_BYTES = 64 * 2**20  # metrics.json with long spectra is ~100 kB; 64 MiB is generous
MAX_YAML_BYTES = 2**20  # a config is a few kB
MAX_YAML_DEPTH = 32  # our configs nest 3-4 levels


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def check_run_file(root: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """``path`` if it is a regular file whose real location is inside ``root``.

    Raises:
        FileNotFoundError: no such file (callers keep their own "missing" handling).
        UserError: a link out of the run directory, or not a regular file.
    """
    root, path = Path(root), Path(path)
    real_root = root.resolve()
    real = path.resolve()
    if not _inside(real, real_root):
        raise UserError(f"{path} is a link to {real}, outside the run directory {root}; "
                        "spherevae reads nothing outside a run: replace the link by the file")
    try:
        st = os.stat(real)
    except FileNotFoundError:
        raise FileNotFoundError(f"{str(path)!r} does not exist") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file (a FIFO, socket or device)"
        raise UserError(f"{path} is {kind}; a run directory holds regular files there: "
                        "remove it or replace it by the file spherevae wrote")
    return real


def read_run_bytes(root: str | os.PathLike[str], path: str | os.PathLike[str],
                   limit: int = MAX_JSON_BYTES) -> bytes:
    """The bytes of the run file ``path`` (:func:`check_run_file`), at most ``limit``."""
    real = check_run_file(root, path)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(real, flags)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}; check the file and its permissions") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):  # swapped after the check
            raise UserError(f"{path} is not a regular file; remove it")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise UserError(f"{path} is larger than {limit} bytes, far more than spherevae writes "
                        "there: it is not a file of this run; remove it or restore it from a copy")
    return data


def read_run_text(root: str | os.PathLike[str], path: str | os.PathLike[str],
                  limit: int = MAX_JSON_BYTES) -> str:
    """:func:`read_run_bytes` as UTF-8 text (a binary file is a :class:`UserError`)."""
    try:
        return read_run_bytes(root, path, limit).decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a UTF-8 text file; restore it from a copy") from None


def read_run_json(root: str | os.PathLike[str], path: str | os.PathLike[str], *,
                  expect: type = dict, hint: str = "restore it from a copy") -> Any:
    """The JSON in the run file ``path``, which must be an ``expect`` (default a mapping)."""
    text = read_run_text(root, path)
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise UserError(f"{path} is not valid JSON ({exc}): it is damaged; {hint}") from None
    if not isinstance(data, expect):
        raise UserError(f"{path} holds a JSON {type(data).__name__}, not a JSON "
                        f"{'object' if expect is dict else expect.__name__}: it is damaged; {hint}")
    return data


def safe_yaml_load(text: str, source: str | os.PathLike[str]) -> Any:
    """``yaml.safe_load(text)`` with anchors/aliases refused and nesting at most
    :data:`MAX_YAML_DEPTH` (``source`` names the file in errors). YAML syntax errors are
    left to the caller (they carry a line and column)."""
    import yaml

    if len(text) > MAX_YAML_BYTES:
        raise UserError(f"{source} is larger than {MAX_YAML_BYTES} bytes; a spherevae config "
                        "is a few kB: check the file")
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            line = event.start_mark.line + 1
            raise UserError(f"{source}, line {line}: YAML anchors and aliases (&name, *name) are "
                            "not accepted in spherevae configs; write the values out")
        if isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise UserError(f"{source}, line {event.start_mark.line + 1}: nested more than "
                                f"{MAX_YAML_DEPTH} levels deep; a spherevae config nests a few")
        elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            depth -= 1
    return yaml.safe_load(text)


def check_run_output(root: str | os.PathLike[str], directory: str | os.PathLike[str]) -> Path:
    """``directory`` (to be written into) if it is, or will be, inside ``root``: an existing
    one that is a link out of the run is a :class:`UserError`; so is a read-only run."""
    root, directory = Path(root), Path(directory)
    real = directory.resolve()
    if not _inside(real, root.resolve()):
        raise UserError(f"{directory} is a link to {real}, outside the run directory {root}; "
                        "spherevae writes nothing outside a run: remove the link")
    if directory.exists() and not directory.is_dir():
        raise UserError(f"{directory} is not a directory; remove it so spherevae can write there")
    probe = directory if directory.is_dir() else root
    if probe.is_dir() and not os.access(probe, os.W_OK):  # a missing run: its reader says so
        raise UserError(f"{probe} is read-only; spherevae writes its results there: copy the "
                        "run to a writable place (or fix the permissions) and run again")
    return directory
