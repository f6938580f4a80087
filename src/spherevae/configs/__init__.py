"""Run and sweep configs shipped with the package, addressable by name.

``spherevae train --config fmnist-compressed-cpu`` finds ``fmnist-compressed-cpu.yaml``
here; ``spherevae sweep --config fmnist-fig2`` finds ``sweeps/fmnist-fig2.yaml``. A path
to a YAML file of one's own is always accepted and wins over a name.

Layer 1: imports nothing of spherevae (the YAML is parsed by :mod:`spherevae.training.config`).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CONFIG_DIR", "available", "resolve"]

CONFIG_DIR = Path(__file__).resolve().parent
_KINDS = {"run": CONFIG_DIR, "sweep": CONFIG_DIR / "sweeps"}


def available(kind: str = "run") -> list[str]:
    """Names of the packaged configs of ``kind`` (``"run"`` or ``"sweep"``), sorted."""
    return sorted(p.stem for p in _KINDS[kind].glob("*.yaml"))


def resolve(name_or_path: str | os.PathLike[str], kind: str = "run") -> Path:
    """The YAML file for a path (if it exists) or a packaged config name (with or
    without ``.yaml``). Raises ``FileNotFoundError`` naming the packaged configs."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.is_dir():
        label = {"run": "config file", "sweep": "sweep config"}[kind]
        raise IsADirectoryError(f"{label} {str(path)!r} is a directory, not a YAML file; give the file")
    text = str(name_or_path)
    if os.sep not in text and "/" not in text:
        packaged = _KINDS[kind] / (text if text.endswith(".yaml") else f"{text}.yaml")
        if packaged.is_file():
            return packaged
    label = {"run": "config file", "sweep": "sweep config"}[kind]
    raise FileNotFoundError(
        f"{label} {text!r} does not exist and is not the name of a packaged {kind} config "
        f"({', '.join(available(kind))})"
    )
