"""Optional dependencies: one clear error naming the extra that installs them."""

from __future__ import annotations

import importlib.util

__all__ = [
    "MissingExtraError",
    "require",
]


class MissingExtraError(ImportError, ValueError):
    """An optional package is missing. Also a ``ValueError``: a user error with a
    one-line fix (the message says which ``pip install`` gives it)."""


def require(module: str, extra: str, what: str, package: str | None = None) -> None:
    """Raise :class:`MissingExtraError` when ``module`` cannot be imported.

    ``what`` names the feature that needs it, e.g. ``"spherevae train"``; the message
    names the extra, e.g. ``pip install 'spherevae[full]'``; ``package`` is the name pip
    knows it by when that differs (``pyyaml`` for ``yaml``). Only looks the module up
    (no import), so it is cheap to call before any work starts.
    """
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing or broken
        found = False
    if not found:
        raise MissingExtraError(
            f"{what} needs the Python package {package or module!r}, which is not installed: "
            f"pip install 'spherevae[{extra}]'"
        )
