"""The run directory's layout: :class:`RunLayout` is the only place a run's file names are
spelled; plain-name checks and the creation of a run directory.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from spherevae.io.errors import UserError

__all__ = [
    "RunLayout",
    "check_name",
    "make_run_dir",
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
    # flock'ed: shared by evaluations, exclusive by training (spherevae.io.lock)
    readers_lock = property(lambda self: self.root / ".readers.lock")

    def sampler(self, name: str) -> Path:
        """A fitted sampler's file (``spherevae.distributions.samplers.sampler_to_state``)."""
        return self.samplers_dir / f"{name}.safetensors"


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


