"""Which evaluated runs can be compared: the same data, FID features and reference set.

A ``domain`` FID uses a classifier trained on the run's own dataset, and every FID is
measured against that dataset's test images: FIDs of runs on different data (or with
different feature backbones, or against test sets of different sizes) are different
quantities, so the report ranks runs only within a group that agrees on all three.
Each part of the setting is an entry of :data:`FID_SETTING`; a run is anything with
``config``, ``metrics`` (dicts) and ``fingerprint`` (the run's ``data_fingerprint.json``
as a dict, or None for runs made before fingerprints were stored).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "FID_SETTING",
    "SettingPart",
    "comparable_groups",
    "group_label",
    "incomparability",
]


class _Run(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def config(self) -> dict[str, Any]: ...
    @property
    def metrics(self) -> dict[str, Any]: ...
    @property
    def fingerprint(self) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class SettingPart:
    """One part of a run's FID setting: ``identity`` decides (equal means comparable),
    ``shown`` is what a reader is told."""

    identity: Callable[[_Run], Any]
    shown: Callable[[_Run], str]


def _data(run: _Run) -> dict[str, Any]:
    data = run.config.get("data")
    return data if isinstance(data, dict) else {}


def _data_identity(run: _Run) -> Any:
    fp = run.fingerprint
    if isinstance(fp, dict) and "test" in fp:
        # The hashed sample of the images: two folders both named "folder" differ here.
        return (fp.get("dataset"), json.dumps(fp.get("image_shape")),
                json.dumps(fp.get("train"), sort_keys=True), json.dumps(fp.get("test"), sort_keys=True))
    # No fingerprint (an old run): its dataset name and reader options are all there is.
    data = _data(run)
    return (data.get("name"), json.dumps(data.get("options") or {}, sort_keys=True, default=str))


def _data_shown(run: _Run) -> str:
    data = _data(run)
    name = (run.fingerprint or {}).get("dataset") or data.get("name")
    return f"{name} ({data['root']})" if data.get("root") else str(name)


def _backbone(run: _Run) -> str:
    weights = (run.metrics.get("eval_options") or {}).get("inception_weights")
    backbone = str(run.metrics.get("fid_backbone", "domain"))
    return f"{backbone} ({weights})" if weights else backbone


FID_SETTING: dict[str, SettingPart] = {
    "dataset": SettingPart(_data_identity, _data_shown),
    "FID features": SettingPart(_backbone, _backbone),
    "test images": SettingPart(lambda r: r.metrics.get("num_test"), lambda r: str(r.metrics.get("num_test"))),
}


def _key(run: _Run) -> tuple[Any, ...]:
    return tuple(part.identity(run) for part in FID_SETTING.values())


def comparable_groups(runs: Sequence[_Run]) -> list[list[int]]:
    """Indices of ``runs`` grouped by FID setting, groups in order of first appearance."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, run in enumerate(runs):
        groups.setdefault(_key(run), []).append(i)
    return list(groups.values())


def group_label(run: _Run) -> str:
    """The setting a group shares, e.g. ``digits, domain FID features, 360 test images``."""
    s = {name: part.shown(run) for name, part in FID_SETTING.items()}
    return f"{s['dataset']}, {s['FID features']} FID features, {s['test images']} test images"


def incomparability(runs: Sequence[_Run]) -> str | None:
    """None when all ``runs`` share one FID setting; else one line saying what differs,
    e.g. ``dataset: digits (a), fashion-mnist (b)``."""
    if len(comparable_groups(runs)) < 2:
        return None
    diffs = []
    for name, part in FID_SETTING.items():
        if len({repr(part.identity(r)) for r in runs}) < 2:
            continue
        by_shown: dict[str, list[str]] = {}
        for r in runs:
            by_shown.setdefault(part.shown(r), []).append(r.name)
        if len(by_shown) < 2:  # same name, other images (e.g. two image folders' fingerprints)
            diffs.append(f"{name}: same name, different data ({', '.join(r.name for r in runs)})")
        else:
            diffs.append(f"{name}: " + ", ".join(f"{s} ({', '.join(n)})" for s, n in by_shown.items()))
    return "; ".join(diffs)
