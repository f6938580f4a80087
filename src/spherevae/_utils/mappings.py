"""Nested-mapping helpers: dotted keys for configs and fingerprints.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "flatten_keys",
]


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


