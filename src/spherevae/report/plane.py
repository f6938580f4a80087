"""The MSE-FID plane (the paper's Fig 2) of runs or of a sweep, with a style per series.

Every series (one objective, sampler and beta across n) must be told apart: one colour
per sampler, fixed by the sampler registry so that a sampler looks the same for every
objective and in every figure (per beta when the rows name no sampler), and one marker
per objective (and beta). Standard VAEs are dashed, compressed ones solid (the legend
shows both line styles). The palette is colour-blind safe (Okabe-Ito) for up to 8 colours;
a point far above the rest switches the FID axis to a log scale.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

__all__ = [
    "distinct_colours",
    "draw_sweep_plane",
    "mse_fid_plane",
    "sampler_colours",
]

# Markers of the (objective, β) groups; past the last one the cycle repeats hollow, so
# up to twice as many groups stay distinct.
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")

SeriesKey = tuple[str, str | None, str]  # (objective, sampler or None, beta as text)
Fill = Literal["full", "none"]


# Okabe & Ito's palette (2008), told apart with every common colour-vision deficiency; its
# yellow (#F0E442) vanishes on a white page, so a mid grey takes its place: 8 colours, one
# per registered sampler.
_OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#000000", "#999999")


def distinct_colours(k: int) -> list[str]:
    """``k`` distinct colours as hex strings: the colour-blind safe Okabe-Ito palette for up
    to 8, then tab10, tab20, then evenly spaced hues."""
    from matplotlib import colormaps
    from matplotlib.colors import hsv_to_rgb, to_hex

    if k <= len(_OKABE_ITO):
        return list(_OKABE_ITO[:k])
    if k <= 20:
        cmap = colormaps["tab10" if k <= 10 else "tab20"]
        return [to_hex(cmap(i)) for i in range(k)]
    return [to_hex(tuple(hsv_to_rgb((i / k, 0.75, 0.85 if i % 2 else 0.6)).tolist())) for i in range(k)]


def sampler_colours(names: Sequence[str]) -> dict[str, str]:
    """One fixed colour per sampler name: its place in
    :data:`spherevae.distributions.samplers.SAMPLERS` (unknown names after it, sorted) in a palette with
    a colour for each, so a sampler has one colour for every objective and figure."""
    from spherevae.distributions.samplers import SAMPLERS

    order = list(SAMPLERS) + sorted(set(names) - set(SAMPLERS))
    palette = distinct_colours(len(order))
    return {name: palette[order.index(name)] for name in names}


@dataclass(frozen=True)
class _Styles:
    """Colour, marker and fill of each series, and the legend's entries."""

    colour: dict[str, str]  # sampler (or beta) -> colour
    marker: dict[tuple[str, str | None], tuple[str, Fill]]  # (objective, beta or None) -> (marker, fill)
    by_sampler: bool
    beta_in_marker: bool

    @classmethod
    def of(cls, keys: Sequence[SeriesKey]) -> _Styles:
        by_sampler = any(s is not None for _, s, _ in keys)
        betas = sorted({b for *_, b in keys})
        colour = (sampler_colours(sorted({str(s) for _, s, _ in keys})) if by_sampler
                  else dict(zip(betas, distinct_colours(len(betas)), strict=True)))
        beta_in_marker = by_sampler and len(betas) > 1
        groups = sorted({(o, b if beta_in_marker else None) for o, _, b in keys})
        fills: tuple[Fill, Fill] = ("full", "none")
        marker = {g: (_MARKERS[i % len(_MARKERS)], fills[i >= len(_MARKERS)]) for i, g in enumerate(groups)}
        return cls(colour, marker, by_sampler, beta_in_marker)

    def of_series(self, key: SeriesKey) -> tuple[str, str, Fill]:
        """``(colour, marker, fillstyle)`` of one series."""
        objective, sampler, beta = key
        marker, fill = self.marker[(objective, beta if self.beta_in_marker else None)]
        return self.colour[str(sampler) if self.by_sampler else beta], marker, fill

    def legend(self, ax: Any) -> None:
        """Proxy entries, not drawn on the axes: a line per colour, a grey marker per marker."""
        from matplotlib.lines import Line2D

        def beta(k: str) -> str:  # a sweep that does not vary β leaves it out of its rows
            return "β of the base config" if k == "None" else f"β={k}"

        handles = [Line2D([], [], color=c, lw=2, label=k if self.by_sampler else beta(k))
                   for k, c in self.colour.items()]
        handles += [Line2D([], [], color="0.3", ls="", marker=m, fillstyle=f,
                           label=obj if beta is None else f"{obj} β={beta}")
                    for (obj, beta), (m, f) in self.marker.items()]
        handles += [Line2D([], [], color="0.3", ls="--", label="standard VAE (dashed, across n)"),
                    Line2D([], [], color="0.3", ls="-", label="compressed (solid, across n)")]
        title = (f"colour: sampler, marker: objective{' and β' if self.beta_in_marker else ''}"
                 if self.by_sampler else "colour: β, marker: objective")
        ax.legend(handles=handles, title=title, fontsize=8, title_fontsize=8,
                  loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def mse_fid_plane(rows: Sequence[dict[str, Any]], *, fid_label: str = "FID", mse_label: str = "MSE"):
    """Fig 2: one curve per (objective, sampler, beta) across n, seeds averaged; standard
    dashed, compressed solid, n written by each point. Rows need ``n``, ``beta``,
    ``objective``, ``mse``, ``fid`` and may name a ``sampler`` and a ``fid_err`` (a FID
    spread, e.g. the std over feature networks: drawn as a ±``fid_err`` bar, the mean of
    the rows' errors where rows of one point are averaged). Each series has its own
    (colour, marker): see the module's docstring; the legend says which is which."""
    from spherevae.plots.figure import new_figure

    series: dict[SeriesKey, dict[Any, list[tuple[float, float, float]]]] = {}
    for r in rows:
        sampler = None if r.get("sampler") is None else str(r["sampler"])
        series.setdefault((str(r["objective"]), sampler, str(r["beta"])), {}).setdefault(
            r["n"], []).append((float(r["mse"]), float(r["fid"]), float(r.get("fid_err", np.nan))))
    keys = sorted(series, key=lambda k: (k[0], k[1] or "", k[2]))
    styles = _Styles.of(keys)
    fig = new_figure(9, 5)
    ax = fig.add_subplot()
    tops: dict[tuple[float, Any], float] = {}  # (x, n) -> the highest FID drawn there
    for key in keys:
        ns = sorted(series[key], key=lambda n: (n is None, n))
        pts = np.array([np.mean(series[key][n], axis=0) for n in ns])
        colour, marker, fill = styles.of_series(key)
        objective, sampler, beta = key
        ax.plot(pts[:, 0], pts[:, 1], "--" if objective.startswith("standard") else "-", color=colour,
                marker=marker, fillstyle=fill, label=" · ".join(filter(None, (objective, sampler, f"β={beta}"))))
        if np.isfinite(pts[:, 2]).any():  # nan (no spread given) draws no bar
            ax.errorbar(pts[:, 0], pts[:, 1], yerr=pts[:, 2], fmt="none", ecolor=colour, elinewidth=1, capsize=2)
        for n, (x, y, _) in zip(ns, pts, strict=True):
            if n is not None:  # the latent size, when the rows say it (a sweep may not vary it)
                tops[(round(float(x), 6), n)] = max(y, tops.get((round(float(x), 6), n), -np.inf))
    # One "n=" label per run position, above its highest point: every sampler of a run sits
    # at the same RMSE, so a label per point piled up into one unreadable block.
    for (x, n), y in tops.items():
        ax.annotate(f"n={n}", (x, y), xytext=(0, 6), textcoords="offset points", ha="center",
                    fontsize=9, color="0.2")
    ax.margins(x=0.12, y=0.12)  # room for the labels inside the axes
    fids = np.array([p[1] for by_n in series.values() for at_n in by_n.values() for p in at_n], dtype=float)
    outlier = _log_axis(fids)
    if outlier:
        ax.set_yscale("log")
    ax.set_xlabel(mse_label)
    ax.set_ylabel(fid_label + (" (log scale)" if outlier else ""))
    ax.set_title("MSE-FID plane" + (": log FID axis, one point is far above the rest" if outlier else ""))
    styles.legend(ax)
    return fig


def _log_axis(fids: np.ndarray) -> bool:
    """A log FID axis when every FID is positive and the largest is over 5x the median: one
    outlier would otherwise squeeze the range where the comparison lives."""
    finite = fids[np.isfinite(fids)]
    return bool(finite.size > 2 and (finite > 0).all() and finite.max() > 5 * np.median(finite))


def draw_sweep_plane(out_dir: Path, rows: list[dict[str, Any]], fid_key: str | None,
                     log: Callable[[str], None]) -> None:
    """``out_dir/mse_fid_plane.png`` from a sweep's result rows (Fig 2): each finished run's
    RMSE against ``fid_key`` (default: the headline FID vs reconstructions)."""
    from spherevae.evaluation.metric_info import describe, metric_key
    from spherevae.plots.figure import save_figure

    done = [r for r in rows if r["status"] in ("done", "skipped")]
    if not done:
        return
    # The headline FID of each run (its main sampler) on its backbone, e.g. fid_domain_recon.
    backbone = next((r["fid_backbone"] for r in done if "fid_backbone" in r), None)
    key = fid_key or (metric_key("headline_fid_recon", backbone=backbone) if backbone else None)
    if key is None or not any(key in r and "rmse_percent" in r for r in done):
        log("no FID column in the results: MSE-FID plane not drawn")
        return
    plane_rows = [
        {
            "n": r.get("model.latent_dim", r.get("latent_dim")),
            "beta": r.get("objective.beta", r.get("beta")),
            "objective": r.get("variant", r.get("objective", "")),
            "mse": r["rmse_percent"],
            "fid": r[key],
            "seed": r.get("train.seed", 0),
        }
        for r in done
        if key in r
    ]
    info = describe(key)
    label = (f"{info.label} ({key})" if info else f"FID of each run's headline sampler ({key})"
             if key == metric_key("headline_fid_recon", backbone=backbone) else key)
    fig = mse_fid_plane(plane_rows, fid_label=label, mse_label="RMSE (% of range)")
    save_figure(fig, out_dir / "mse_fid_plane.png")
    log(f"MSE-FID plane: {out_dir / 'mse_fid_plane.png'}")
