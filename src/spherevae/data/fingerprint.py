"""The data fingerprint of a run: which data it was trained on, checked at resume and
evaluate so that a run is never continued or scored on other data by mistake."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from spherevae._utils.mappings import flatten_keys
from spherevae.io.errors import UserError

__all__ = [
    "FINGERPRINT_SAMPLE",
    "check_fingerprint",
    "data_fingerprint",
]

FINGERPRINT_SAMPLE = 64  # images hashed per split, at fixed evenly spaced positions


def _split_fingerprint(ds: Any) -> dict[str, Any]:
    import torch

    n = int(ds.images.shape[0])
    idx = torch.linspace(0, n - 1, min(FINGERPRINT_SAMPLE, n)).round().long()
    h = hashlib.sha256(repr(tuple(ds.images.shape)).encode())
    h.update(ds.images[idx].contiguous().numpy().tobytes())
    if ds.labels is not None:
        h.update(ds.labels[idx].contiguous().numpy().tobytes())
    return {"size": n, "sample_sha256": h.hexdigest()}


def data_fingerprint(name: str, train: Any, test: Any) -> dict[str, Any]:
    """Dataset name, split sizes and a hash of a fixed sample of images (and labels) per
    split, of the full splits (before ``max_train``/``max_test``)."""
    return {"dataset": name, "image_shape": list(train.images.shape[1:]),
            "train": _split_fingerprint(train), "test": _split_fingerprint(test)}


def check_fingerprint(stored: Mapping[str, Any], current: Mapping[str, Any], source: Path) -> None:
    """:class:`UserError` naming what differs between the run's data and the data found now."""
    a, b = flatten_keys(stored), flatten_keys(current)
    diff = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    if diff:
        shown = ", ".join(f"{k} {a.get(k)!r} -> {b.get(k)!r}" if "sha" not in k else f"{k} differs"
                          for k in diff)
        raise UserError(
            f"the data found now is not the data this run was trained on ({source}): {shown}. "
            "Point data.root (or the dataset's environment variable) at the original data"
        )
