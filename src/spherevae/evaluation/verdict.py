"""The answer at a glance: which run (or sampler) generates better, by which reference set
and which sampler family, and whether the difference exceeds its spread.

Two reference sets (:data:`REFERENCES`): the reconstructed test set (the paper's protocol,
``fid_<backbone>_<sampler>_recon``) and the real test set (``..._test``). Two sampler
families (:data:`FAMILIES`): *the paper's sampler* (each objective's first default sampler,
recorded as ``main_sampler``: the N(0, I) prior for the standard VAE, the vMF for the
compressed one) and *the best fitted sampler* (the fitted sampler with the lowest FID
against that reference; fixed priors are not fitted).

Spreads are optional: for a metric key ``K``, ``K + "_std"`` (a standard deviation over
feature-network seeds or a bootstrap) or ``K + "_se"`` (a standard error) in
``eval/metrics.json`` is its spread when present. A winner is *separated* when its value
plus two spreads stays below the runner-up's value minus two spreads; without spreads
the winner is still named, with "no spread measured".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from spherevae.evaluation.metric_info import SPREAD_SUFFIXES, metric_key

__all__ = [
    "FAMILIES",
    "REFERENCES",
    "Pick",
    "Verdict",
    "compare_runs",
    "fid_value",
    "paper_sampler",
    "pick",
    "separation",
    "spread",
    "summary_lines",
]

# reference -> (KEYS name of its FID, how a reader calls it)
REFERENCES: dict[str, tuple[str, str]] = {
    "recon": ("fid_recon", "reconstructions"),
    "test": ("fid_test", "real test set"),
}


def _finite(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def spread(metrics: Mapping[str, Any], key: str) -> float | None:
    """The spread of ``metrics[key]`` (``key_std``, else ``key_se``), or None when unmeasured."""
    for suffix in SPREAD_SUFFIXES:  # a std over seeds first, else a standard error
        s = _finite(metrics.get(key + suffix))
        if s is not None:
            return s
    return None


def paper_sampler(metrics: Mapping[str, Any]) -> str | None:
    """The run's headline sampler: ``main_sampler`` (its objective's first default sampler)."""
    s = metrics.get("main_sampler")
    return str(s) if s else None


def fid_value(metrics: Mapping[str, Any], reference: str, sampler: str) -> float | None:
    """The finite FID of ``sampler`` against ``reference`` (a key of :data:`REFERENCES`) on the
    run's own backbone, or None (not evaluated, or NaN: its fit failed)."""
    backbone = metrics.get("fid_backbone", "domain")
    return _finite(metrics.get(metric_key(REFERENCES[reference][0], backbone=backbone, sampler=sampler)))


@dataclass(frozen=True)
class Pick:
    """One run's value for one (reference, family): its sampler, FID and spread (or None)."""

    sampler: str
    value: float
    spread: float | None


def _pick_of(metrics: Mapping[str, Any], reference: str, sampler: str) -> Pick | None:
    value = fid_value(metrics, reference, sampler)
    if value is None:
        return None
    backbone = metrics.get("fid_backbone", "domain")
    key = metric_key(REFERENCES[reference][0], backbone=backbone, sampler=sampler)
    return Pick(sampler, value, spread(metrics, key))


def _paper(metrics: Mapping[str, Any], reference: str) -> Pick | None:
    sampler = paper_sampler(metrics)
    return _pick_of(metrics, reference, sampler) if sampler else None


def _best_fitted(metrics: Mapping[str, Any], reference: str) -> Pick | None:
    from spherevae.distributions.samplers import SAMPLERS

    picks = [p for name, spec in SAMPLERS.items() if spec.fitted
             if (p := _pick_of(metrics, reference, name)) is not None]
    return min(picks, key=lambda p: p.value, default=None)


# family -> its pick in a run's metrics, for one reference.
FAMILIES: dict[str, Callable[[Mapping[str, Any], str], Pick | None]] = {
    "paper's sampler": _paper,
    "best fitted sampler": _best_fitted,
}


def pick(metrics: Mapping[str, Any], reference: str, family: str) -> Pick | None:
    """The run's :class:`Pick` for ``reference`` (:data:`REFERENCES`) and ``family``
    (:data:`FAMILIES`), or None when it has no finite FID there."""
    return FAMILIES[family](metrics, reference)


def separation(best: Pick, other: Pick) -> bool | None:
    """True when ``best`` ± 2 spreads and ``other`` ± 2 spreads do not overlap, False when they
    do, None when either spread is unmeasured."""
    if best.spread is None or other.spread is None:
        return None
    return best.value + 2 * best.spread < other.value - 2 * other.spread


@dataclass(frozen=True)
class Verdict:
    """The runs compared on one (reference, family): each run's pick (None: no value), the
    winner and runner-up (indices into the runs, lowest FID first) and their separation."""

    reference: str
    family: str
    picks: tuple[Pick | None, ...]
    winner: int | None
    runner_up: int | None
    separated: bool | None

    @property
    def spread_note(self) -> str:
        """How the winner's lead compares with the spreads, in words."""
        return {True: "beyond ±2σ", False: "within ±2σ: not separated",
                None: "no spread measured"}[self.separated]


def compare_runs(metrics: Sequence[Mapping[str, Any]], reference: str, family: str) -> Verdict:
    """A :class:`Verdict` over runs that are comparable (same data, FID features, test set)."""
    picks = tuple(pick(m, reference, family) for m in metrics)
    ranked = sorted((p.value, i) for i, p in enumerate(picks) if p is not None)
    winner = ranked[0][1] if ranked else None
    runner = ranked[1][1] if len(ranked) > 1 else None
    sep = None
    if winner is not None and runner is not None:
        sep = separation(picks[winner], picks[runner])  # type: ignore[arg-type]
    return Verdict(reference, family, picks, winner, runner, sep)


def _g(v: float) -> str:
    return f"{v:.4g}"


def _fids(metrics: Mapping[str, Any], sampler: str) -> str:
    backbone = metrics.get("fid_backbone", "domain")
    parts = []
    for ref, (_, words) in REFERENCES.items():
        v = fid_value(metrics, ref, sampler)
        parts.append(f"vs {words} {_g(v) if v is not None else 'n/a'}")
    return f"FID {backbone} " + ", ".join(parts)


def _run_verdict(metrics: Mapping[str, Any]) -> str:
    """One line: does the best fitted sampler beat the paper's, by each reference?"""
    clauses, notes = [], set()
    for ref, (_, words) in REFERENCES.items():
        paper, fitted = _paper(metrics, ref), _best_fitted(metrics, ref)
        if paper is None or fitted is None:
            continue
        if fitted.sampler == paper.sampler or fitted.value >= paper.value:
            clauses.append(f"the paper's {paper.sampler} is best vs {words}")
            continue
        sep = separation(fitted, paper)
        notes.add({True: "beyond ±2σ", False: "within ±2σ", None: "no spread measured"}[sep])
        clauses.append(f"{fitted.sampler} beats the paper's {paper.sampler} vs {words} "
                       f"({_g(fitted.value)} vs {_g(paper.value)})")
    if not clauses:
        return "verdict: no finite FID to compare"
    return "verdict: " + "; ".join(clauses) + (f" [{', '.join(sorted(notes))}]" if notes else "")


def summary_lines(metrics: Mapping[str, Any]) -> list[str]:
    """The terminal's short summary of one evaluated run: reconstruction, the paper's sampler,
    the best fitted sampler (each FID against both references) and a verdict line."""
    rmse = _finite(metrics.get("rmse_percent"))
    backbone = metrics.get("fid_backbone", "domain")
    blur = _finite(metrics.get(metric_key("fid_reconstruction_vs_test", backbone=backbone)))
    lines = [f"reconstruction: RMSE {_g(rmse) if rmse is not None else 'n/a'}% of the pixel range"
             + (f", FID {backbone} reconstructions vs real test set {_g(blur)}" if blur is not None else "")]
    paper = paper_sampler(metrics)
    if paper:
        lines.append(f"paper's sampler ({paper}): {_fids(metrics, paper)}")
    fitted = _best_fitted(metrics, "recon")
    if fitted is not None:
        lines.append(f"best fitted sampler ({fitted.sampler}, by FID vs reconstructions): "
                     f"{_fids(metrics, fitted.sampler)}")
    lines.append(_run_verdict(metrics))
    return lines
