"""One self-contained HTML page comparing evaluated runs.

Everything is inline: images as data URIs, CSS, and a few lines of plain JavaScript
that sort the tables on a click; no external resource is fetched. The page reads,
top to bottom: a warning when the runs' FIDs are not comparable (other data, FID
features or test set: :mod:`spherevae.report.comparability`), a header per run (dataset, n,
epochs, beta, objective, model, FID features), a short verdict (best generator and
sampler within each comparable group, and the reconstruction cost),
the headline table (grouped by :data:`spherevae.evaluation.metric_info.GROUPS`, one row per
metric *and sampler*, so a prior FID never shares a row with a vMF FID; the best value
per row among comparable runs is marked), the MSE-FID plane of the runs, the training curves overlaid, and
each figure of every run side by side with a caption.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spherevae.evaluation.metric_info import (
    KEYS,
    MetricInfo,
    applies,
    better,
    comparable_keys,
    describe,
)
from spherevae.evaluation.verdict import FAMILIES, REFERENCES, compare_runs, pick, spread
from spherevae.io.errors import UserError
from spherevae.io.files import atomic_write_text, read_jsonl
from spherevae.io.layout import RunLayout
from spherevae.io.safe_read import check_run_file, read_run_json
from spherevae.report.comparability import comparable_groups, group_label, incomparability
from spherevae.report.freshness import PNG_SIGNATURE, mark_stale, png_bytes, run_figures

__all__ = [
    "FIGURE_CAPTIONS",
    "RunSummary",
    "check_report_target",
    "load_run_summary",
    "write_report",
]

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em 2em;color:#222;max-width:1400px}
h1{font-size:1.5em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:3px 8px}
td.num{text-align:right;font-variant-numeric:tabular-nums}
thead th{background:#f3f3f3;cursor:pointer;user-select:none;white-space:nowrap}
thead th[data-order=asc]::after{content:" ▲"}thead th[data-order=desc]::after{content:" ▼"}
tr.group th{background:#e8eef7;text-align:left;cursor:default}
td.best{font-weight:bold;background:#e3f4e1}td.desc{color:#555;font-size:.9em;max-width:34em}
.dir{color:#666;font-size:.85em;white-space:nowrap}#runs td:first-child{white-space:nowrap}
.verdict{background:#f7f7ee;border-left:4px solid #bb4;padding:.5em 1em;max-width:60em}
.note{color:#a33;max-width:60em}.row{display:flex;gap:1.5em;flex-wrap:wrap;align-items:flex-start}
figure{margin:.4em 0;flex:1;min-width:320px}figcaption{color:#444;font-size:.9em;margin-top:.3em}
img{max-width:100%;border:1px solid #eee;cursor:zoom-in}details pre{font-size:.8em}
.row.stack{flex-direction:column}.row.stack figure{width:100%}td.na{color:#888;font-style:italic}
td.unit{color:#555;font-size:.85em}.scroll{overflow-x:auto;max-width:100%}.verdict-table td{background:#fff}
img.big{position:fixed;inset:0;margin:auto;width:98vw;height:98vh;max-width:none;object-fit:contain;z-index:10;
background:#fff;box-shadow:0 0 0 100vmax rgba(0,0,0,.6);cursor:zoom-out}
"""

# Plain JavaScript: a click on a header sorts each tbody of its table by that column
# (numbers by data-v, text otherwise; empty cells last); a second click reverses. A click
# on an image shows it at the window's size (the page's width shrinks wide figures).
_JS = """
function sortBy(th){
  var table=th.closest('table'),col=Array.prototype.indexOf.call(th.parentNode.children,th);
  var asc=th.getAttribute('data-order')!=='asc';
  table.querySelectorAll('thead th').forEach(function(h){h.removeAttribute('data-order');});
  th.setAttribute('data-order',asc?'asc':'desc');
  table.querySelectorAll('tbody').forEach(function(tb){
    var rows=Array.prototype.slice.call(tb.querySelectorAll('tr:not(.group)'));
    rows.sort(function(a,b){
      var x=a.cells[col],y=b.cells[col];
      var u=x&&x.hasAttribute('data-v')?parseFloat(x.getAttribute('data-v')):null;
      var v=y&&y.hasAttribute('data-v')?parseFloat(y.getAttribute('data-v')):null;
      if(u===null&&v===null){var s=(x?x.textContent:'').localeCompare(y?y.textContent:'');return asc?s:-s;}
      if(u===null)return 1;if(v===null)return -1;return asc?u-v:v-u;});
    rows.forEach(function(r){tb.appendChild(r);});});
}
document.querySelectorAll('table.sortable thead th').forEach(function(th){
  th.addEventListener('click',function(){sortBy(th);});});
document.querySelectorAll('img').forEach(function(img){
  img.addEventListener('click',function(){img.classList.toggle('big');});});
document.addEventListener('keydown',function(ev){if(ev.key==='Escape')
  document.querySelectorAll('img.big').forEach(function(i){i.classList.remove('big');});});
"""

# eval/<stem>.png -> caption; figures not listed keep their file name as caption.
FIGURE_CAPTIONS: dict[str, str] = {
    "samples": "Test images x, their reconstructions x̂, and decoded samples of the main sampler.",
    "samples_by_sampler": "Decoded samples of every evaluated sampler, one panel each, titled "
                          "with its FID against the reconstructed test set.",
    "sphere_projection": "Test latents averaged in three groups of dimensions and projected "
                         "on the 2-sphere (Fig 1b), coloured by class; when the latents sit in a "
                         "cap (the compressed model's island), the right panel zooms into it.",
    "latent_spectrum": "Posterior scale σ_j per latent dimension (log scale, with its median and "
                       "10x the median), and the eigenvalues of the latents' tangent covariance "
                       "at their mean direction (flat for a vMF).",
    "tsne": "t-SNE of the test latents (after PCA to 50 dimensions), coloured by class.",
    "latent_histograms": "Per-dimension histograms of μ, σ, z and cos φ_k(μ) (white dots: "
                         "means, black: stds), norms, and the angle of each latent to the mean.",
    "training_curves": "This run's per-epoch RMSE, latent loss, β and schedule multiplier "
                       "(epochs 1..N, as the training log counts them).",
    "interpolation": "Decoded interpolation between two test images of different classes: "
                     "linear (top) and along the sphere (bottom).",
}


@dataclass(frozen=True)
class RunSummary:
    """What the report needs of one run: its config and metrics as dicts, its eval
    figures (stem -> PNG path), its per-epoch training history and its data fingerprint
    (``data_fingerprint.json``; None for runs made before fingerprints)."""

    name: str
    config: dict[str, Any]
    metrics: dict[str, Any]
    figures: dict[str, Path] = field(default_factory=dict)
    history: tuple[dict[str, Any], ...] = ()
    fingerprint: dict[str, Any] | None = None


def load_run_summary(run_dir: str | os.PathLike[str]) -> RunSummary:
    """Read ``config.yaml``, ``eval/metrics.json``, ``eval/*.png``, ``metrics.jsonl`` and
    ``data_fingerprint.json`` (when the run has one), as untrusted input
    (:mod:`spherevae.io.safe_read`); an evaluation of other weights than the run's is
    marked stale (:func:`spherevae.report.freshness.mark_stale`)."""
    from spherevae.training.config import read_yaml

    run_dir = Path(run_dir)
    layout = RunLayout(run_dir)
    if not layout.config.is_file():  # the words of spherevae.load and the CLI
        raise FileNotFoundError(f"{str(run_dir)!r} is not a run directory (no config.yaml in it)")
    if not layout.eval_metrics.is_file():
        raise FileNotFoundError(
            f"{run_dir} is not an evaluated run: {layout.eval_metrics} is missing (run `spherevae "
            "evaluate` first; a run fit on tensors is evaluated in Python, see README)")
    jsonl = layout.metrics
    if jsonl.exists():
        check_run_file(run_dir, jsonl)
    history = tuple(read_jsonl(jsonl)) if jsonl.is_file() else ()
    fp = layout.fingerprint
    summary = RunSummary(
        name=run_dir.name,
        config=read_yaml(layout.config, "run config", root=run_dir) or {},
        metrics=read_run_json(run_dir, layout.eval_metrics, hint="run `spherevae evaluate` again"),
        figures=run_figures(run_dir),
        history=history,
        fingerprint=read_run_json(run_dir, fp) if fp.exists() or fp.is_symlink() else None,
    )
    return mark_stale(summary, run_dir)


def check_report_target(out_html: str | os.PathLike[str]) -> Path:
    """``out_html`` as a path that may be written: not a directory, and not an existing file
    other than an HTML page (``--out RUN/config.yaml`` must not overwrite a run's config)."""
    out = Path(out_html)
    if out.is_dir():
        raise UserError(f"--out {out} is a directory; give a file name such as {out / 'report.html'}")
    if out.exists():
        with out.open("rb") as f:
            head = f.read(64).lstrip().lower()
        if not head.startswith((b"<!doctype html", b"<html")):
            raise UserError(f"--out {out} exists and is not an HTML report; refusing to overwrite "
                            "it (choose another file name, or delete it first)")
    return out


# --- values -------------------------------------------------------------------------


def _get(d: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


def _latent_dim(cfg: dict[str, Any]) -> int | None:
    n = _get(cfg, "model.latent_dim")
    if n is None:
        from spherevae.models.config import MODEL_PRESETS

        n = MODEL_PRESETS.get(str(_get(cfg, "model.preset")), {}).get("latent_dim")
    return n


def _header_rows(run: RunSummary) -> dict[str, Any]:
    c, m = run.config, run.metrics
    epochs = _get(c, "train.epochs")
    done = len(run.history)
    return {
        "run": run.name,
        "dataset": _get(c, "data.name"),
        "train images": _get(c, "data.max_train") or "all",
        "test images (evaluation)": m.get("num_test"),
        "test images (training curves)": _get(c, "data.max_test") or "all",
        "n": _latent_dim(c),
        "epochs": epochs if not done or done == epochs else f"{done} of {epochs}",
        "β": _get(c, "objective.beta"),
        "objective": _get(c, "objective.name"),
        "schedule": _get(c, "schedule.name"),
        "model": _get(c, "model.preset"),
        "FID features": m.get("fid_backbone"),
        "main sampler": m.get("main_sampler"),
    }


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def _comparable_rows(runs: Sequence[RunSummary]) -> dict[str, list[tuple[str, MetricInfo]]]:
    """group -> [(key, info)] for every described key any run has, in registry order."""
    groups = comparable_keys({str(i): r.metrics for i, r in enumerate(runs)})
    return {g: [(k, describe(k)) for k in keys] for g, keys in groups.items()}  # type: ignore[misc]


# --- HTML pieces --------------------------------------------------------------------


def _runs_table(runs: Sequence[RunSummary]) -> str:
    rows = [_header_rows(r) for r in runs]
    cols = list(rows[0])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(_cell(row[c], text_left=c == "run") for c in cols) + "</tr>"
        for row in rows
    )
    return (f"<div class='scroll'><table class='sortable' id='runs'><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table></div>")


def _cell(v: Any, *, best: bool = False, text_left: bool = False) -> str:
    num = _number(v)
    cls = ["num"] if num is not None and not text_left else []
    if best:
        cls.append("best")
    attrs = f" class='{' '.join(cls)}'" if cls else ""
    if num is not None:
        attrs += f" data-v='{num!r}'"
    mark = " ★" if best else ""
    return f"<td{attrs}>{_fmt(v)}{mark}</td>"


_ARROWS = {"lower": "↓ lower is better", "higher": "↑ higher is better", None: "diagnostic"}

_NA = "not applicable"


def _row_values(runs: Sequence[RunSummary], key: str, info: MetricInfo) -> list[float | str | None]:
    """Each run's value of ``key``: a number, ``_NA`` where the metric does not apply to the
    run's objective, or None (not measured, or NaN)."""
    out: list[float | str | None] = []
    for r in runs:
        if not applies(info, _get(r.config, "objective.name")):
            out.append(_NA)
        else:
            v = _number(r.metrics.get(key))
            out.append(v if v is not None and math.isfinite(v) else None)
    return out


def _stars(runs: Sequence[RunSummary], key: str, info: MetricInfo,
           values: list[float | None]) -> dict[int, str]:
    """run index -> the title of its ★ (the best of its comparable group). A best whose lead
    does not exceed ±2 spreads over the runner-up gets no star; without spreads it does,
    titled "no spread measured"."""
    stars: dict[int, str] = {}
    for g in comparable_groups(runs):
        best = better([values[j] for j in g], info.direction)
        if len(best) != 1:
            continue
        i = g[next(iter(best))]
        sign = 1.0 if info.direction == "lower" else -1.0
        rest = sorted((sign * values[j], j) for j in g if j != i and values[j] is not None)  # type: ignore[operator]
        if not rest:
            continue
        j = rest[0][1]
        si, sj = spread(runs[i].metrics, key), spread(runs[j].metrics, key)
        if si is None or sj is None:
            stars[i] = "best; no spread measured"
        elif abs(values[i] - values[j]) > 2 * (si + sj):  # type: ignore[operator]
            stars[i] = "best, beyond ±2σ of the runner-up"
    return stars


def _value_cell(v: float | str | None, s: float | None, star: str | None) -> str:
    if v == _NA:
        return f"<td class='na'>{_NA}</td>"
    if not isinstance(v, float):
        return "<td></td>"
    cls = "num best" if star else "num"
    text = _fmt(v) + (f" ± {s:.2g}" if s is not None else "")
    mark = f" <span title='{html.escape(star)}'>★</span>" if star else ""
    return f"<td class='{cls}' data-v='{v!r}'>{text}{mark}</td>"


def _metric_head(info: MetricInfo, key: str) -> str:
    e = html.escape
    return (f"<td title='{e(key)}'>{e(info.label)}</td><td class='desc'>{e(info.description)}</td>"
            f"<td class='unit'>{e(info.unit)}</td><td class='dir'>{e(_ARROWS[info.direction])}</td>")


def _metrics_tables(runs: Sequence[RunSummary]) -> tuple[str, str]:
    """(comparison table, per-run table): a row is compared only where at least two runs
    have a value; a metric only one run has goes to the per-run table."""
    e = html.escape
    head = ("<th>metric</th><th>what it measures</th><th>unit / scale</th><th>better</th>"
            + "".join(f"<th>{e(r.name)}</th>" for r in runs))
    parts = [f"<table class='sortable' id='metrics'><thead><tr>{head}</tr></thead>"]
    single: list[str] = []
    for group, rows in _comparable_rows(runs).items():
        body = []
        for key, info in rows:
            values = _row_values(runs, key, info)
            nums = [v if isinstance(v, float) else None for v in values]
            present = [i for i, v in enumerate(nums) if v is not None]
            if len(present) < 2:
                single.extend(f"<tr>{_metric_head(info, key)}<td>{e(runs[i].name)}</td>"
                              f"{_value_cell(values[i], spread(runs[i].metrics, key), None)}</tr>"
                              for i in present)
                continue
            stars = _stars(runs, key, info, nums)
            cells = "".join(_value_cell(v, spread(r.metrics, key), stars.get(i))
                            for i, (v, r) in enumerate(zip(values, runs, strict=True)))
            body.append(f"<tr>{_metric_head(info, key)}{cells}</tr>")
        if body:
            parts.append(f"<tbody><tr class='group'><th colspan='{4 + len(runs)}'>{e(group)}</th></tr>"
                         + "".join(body) + "</tbody>")
    parts.append("</table>")
    table = "".join(parts) if len(parts) > 2 else ""
    per_run = ("<table class='sortable' id='single'><thead><tr><th>metric</th><th>what it measures"
               "</th><th>unit / scale</th><th>better</th><th>run</th><th>value</th></tr></thead>"
               f"<tbody>{''.join(single)}</tbody></table>") if single else ""
    return table, per_run


def _rmse(run: RunSummary) -> str:
    rmse = _number(run.metrics.get("rmse_percent"))
    return f"{rmse:.3g}%" if rmse is not None else "n/a"


def _cost(run: RunSummary) -> str:
    rmse = _number(run.metrics.get("rmse_percent"))
    return f"RMSE {rmse:.3g}%" if rmse is not None else "no RMSE"


def _verdict_rows(runs: Sequence[RunSummary], group: list[int]) -> list[str]:
    """One row per (reference set, sampler family) among the comparable runs ``group``."""
    e = html.escape
    rows = []
    metrics = [runs[i].metrics for i in group]
    for ref, (_, words) in REFERENCES.items():
        for family in FAMILIES:
            v = compare_runs(metrics, ref, family)
            if v.winner is None or v.runner_up is None:
                continue
            w, u = v.picks[v.winner], v.picks[v.runner_up]
            assert w is not None and u is not None
            win, run_up = runs[group[v.winner]], runs[group[v.runner_up]]
            rows.append(
                f"<tr><td>{e(words)}</td><td>{e(family)}</td><td><b>{e(win.name)}</b> ({e(w.sampler)})</td>"
                f"<td class='num'>{w.value:.4g} vs {u.value:.4g} ({e(run_up.name)}, {e(u.sampler)})</td>"
                f"<td>{e(v.spread_note)}</td><td>RMSE {e(_rmse(win))} vs {e(_rmse(run_up))}</td></tr>")
    return rows


def _verdict(runs: Sequence[RunSummary]) -> str:
    """Which run generates better, by which reference set and sampler family, whether the
    lead exceeds its spread, and at what reconstruction cost: a table per comparable group."""
    e = html.escape
    lines = []
    for r in runs:
        fids = []
        for family in FAMILIES:
            p = pick(r.metrics, "recon", family)
            q = pick(r.metrics, "test", family)
            if p is not None:
                fids.append(f"{e(family)} {e(p.sampler)}: FID {p.value:.4g} vs reconstructions"
                            + (f", {q.value:.4g} vs test ({e(q.sampler)})" if q is not None else ""))
        lines.append(f"<li><b>{e(r.name)}</b>: {'; '.join(fids) or 'no FID'}; "
                     f"reconstruction {e(_cost(r))}</li>")
    groups = comparable_groups(runs)
    head = ""
    for k, group in enumerate(groups):  # a winner only among runs whose FIDs measure the same thing
        rows = _verdict_rows(runs, group)
        if not rows:
            continue
        where = f" on {e(group_label(runs[group[0]]))}" if len(groups) > 1 else ""
        backbone = e(str(runs[group[0]].metrics.get("fid_backbone", "domain")))
        head += (f"<p><b>Which model generates better{where}</b> (FID {backbone}, lower is better; "
                 "a lead is separated when the two values ± 2 spreads do not overlap):</p>"
                 f"<table class='verdict-table' id='verdict-{k}'><thead><tr><th>against</th><th>sampler</th>"
                 "<th>better</th><th>FID (vs runner-up)</th><th>spread</th>"
                 f"<th>reconstruction cost</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")
    if len(runs) > 1 and not head:
        head = "<p><b>No verdict</b>: no two runs share data, FID features and test set.</p>"
    return f"<div class='verdict' id='verdict'>{head}<ul>{''.join(lines)}</ul></div>"


def _incomparable_note(runs: Sequence[RunSummary]) -> str:
    """A prominent note (and a warning) when the runs' FIDs are not all comparable."""
    reason = incomparability(runs)
    if reason is None:
        return ""
    warnings.warn(f"the runs' FIDs are not comparable ({reason}): the report picks a best only "
                  "within runs on the same data, FID features and test set", stacklevel=3)
    e = html.escape
    groups = "".join(f"<li>{e(group_label(runs[g[0]]))}: {e(', '.join(runs[i].name for i in g))}</li>"
                     for g in comparable_groups(runs))
    return (f"<div class='verdict note' id='incomparable'><p><b>These runs are not comparable</b> "
            f"({e(reason)}). A domain FID uses a classifier trained on its run's own dataset and "
            "every FID is measured against that dataset's test images, so FIDs (and the ★ marks "
            "and the verdict) are compared only within each group:</p>"
            f"<ul>{groups}</ul></div>")


def _img(data: bytes, alt: str) -> str:
    b64 = base64.b64encode(data).decode("ascii")
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{b64}'>"


def _embedded_png(path: Path) -> bytes | None:
    """The bytes of a figure to embed: a regular PNG file, not a link, at most 64 MiB
    (checked again here, as the page is written); anything else is skipped with a warning."""
    try:
        return png_bytes(path)
    except UserError as exc:
        warnings.warn(f"figure not embedded: {exc}", stacklevel=2)
        return None


def _figure_html(data: bytes, alt: str, caption: str) -> str:
    return f"<figure>{_img(data, alt)}<figcaption>{caption}</figcaption></figure>"


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _plane_png(runs: Sequence[RunSummary]) -> bytes | None:
    """Fig 2 for the runs: a point per (run, sampler) at (RMSE, FID vs recon); one line
    per (objective, sampler, beta) across n; colour per sampler, marker per objective
    (per dataset and objective when the runs are not all comparable)."""
    from spherevae.report.plane import mse_fid_plane

    rows, backbones = [], set()
    several = len(comparable_groups(runs)) > 1
    for r in runs:
        objective = str(_get(r.config, "objective.name"))
        if several:  # incomparable groups get markers of their own
            objective = f"{_get(r.config, 'data.name')}: {objective}"
        rmse = _number(r.metrics.get("rmse_percent"))
        backbone = r.metrics.get("fid_backbone", "domain")
        for k, v in r.metrics.items():
            info = describe(k)
            if (rmse is None or info is None or info.template != KEYS["fid_recon"]
                    or info.backbone != backbone or _number(v) is None):
                continue
            backbones.add(backbone)
            rows.append({"n": _latent_dim(r.config), "beta": _get(r.config, "objective.beta"),
                         "objective": objective, "sampler": info.sampler,
                         "mse": rmse, "fid": float(v)})
    if not rows:
        return None
    label = f"FID {'/'.join(sorted(map(str, backbones)))} vs reconstructions (lower is better)"
    return _png(mse_fid_plane(rows, fid_label=label, mse_label="test RMSE, % of range (lower is better)"))


_CURVES = (
    ("test_rmse_percent", "test RMSE (% of range)"),
    ("train_rmse_percent", "train RMSE (% of range)"),
    ("train_latent", "latent loss (each objective's own scale)"),
    ("test_replica_angle_mean", "test replica angle (rad)"),
)


def _curves_png(runs: Sequence[RunSummary]) -> bytes | None:
    """Per-epoch curves of all runs overlaid, one panel per quantity."""
    from matplotlib.ticker import MaxNLocator

    from spherevae.plots.figure import new_figure

    if not any(r.history for r in runs):
        return None
    fig = new_figure(8, 6)
    axes = fig.subplots(2, 2).ravel()
    for ax, (key, label) in zip(axes, _CURVES, strict=True):
        for r in runs:
            pts = [(h.get("epoch", i) + 1, h[key]) for i, h in enumerate(r.history)  # 1..N, as logged
                   if _number(h.get(key)) is not None]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ls = "--" if str(_get(r.config, "objective.name")).startswith("standard") else "-"
                ax.plot(xs, ys, ls, marker=".", label=r.name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label, fontsize=9)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle("training curves (dashed: standard, solid: compressed or authors)")
    return _png(fig)


# Figures at least this wide (pixels) are shown one run per row, at the page's full width,
# so that no figure is shown at less than half its natural width.
_WIDE_PX = 900


def _png_width(data: bytes) -> int:
    """The width of a PNG from its IHDR chunk (bytes 16-20)."""
    return int.from_bytes(data[16:20], "big") if data.startswith(PNG_SIGNATURE) else 0


def _figures_section(runs: Sequence[RunSummary]) -> list[str]:
    e = html.escape
    stems: list[str] = []
    for r in runs:
        stems.extend(s for s in r.figures if s not in stems)
    order = list(FIGURE_CAPTIONS)
    stems.sort(key=lambda s: (order.index(s) if s in order else len(order), s))
    parts = []
    for stem in stems:
        caption = FIGURE_CAPTIONS.get(stem, f"{stem.replace('_', ' ')} (a figure of this run's eval/ folder).")
        # Only regular PNG files inside the run are embedded (a link out of it, a FIFO or
        # another file named *.png is left out, see _embedded_png).
        images = [(r, data) for r in runs if stem in r.figures
                  if (data := _embedded_png(Path(r.figures[stem]))) is not None]
        if not images:
            continue
        wide = max(_png_width(d) for _, d in images) >= _WIDE_PX
        parts.append(f"<h3>{e(stem.replace('_', ' '))}</h3><div class='row{' stack' if wide else ''}'>")
        parts.extend(_figure_html(data, f"{r.name}: {stem}", f"<b>{e(r.name)}</b>: {e(caption)}")
                     for r, data in images)
        parts.append("</div>")
    return parts


_NOTE = (
    "<p class='note'>FID names say their feature backbone. <b>domain</b> FIDs use a classifier "
    "trained here on the dataset: they compare these runs with each other and are NOT comparable "
    "to published Inception FIDs. Each row compares one sampler across runs and has a value for "
    "at least two runs; an empty cell is a run not evaluated with that sampler, and "
    "<i>not applicable</i> a metric that means nothing for the run's objective. ± is the "
    "metric's spread (std over feature-network seeds, or KID's standard error) where measured. "
    "★ marks the best value of a row among runs on the same data, FID features and test set, "
    "when its lead over the runner-up exceeds ±2 spreads, or, without spreads, with the "
    "caveat \"no spread measured\" (hover the ★).</p>"
)


def _warnings(runs: Sequence[RunSummary]) -> str:
    items = [f"<li><b>{html.escape(r.name)}</b>: {html.escape(str(w))}</li>"
             for r in runs for w in r.metrics.get("warnings", [])]
    return f"<ul class='note'>{''.join(items)}</ul>" if items else ""


def write_report(
    runs: Sequence[RunSummary], out_html: str | os.PathLike[str], *, title: str = "spherevae report"
) -> Path:
    """Write the page and return its path. Deterministic for the same inputs."""
    if not runs:
        raise ValueError("write_report needs at least one run")
    out = check_report_target(out_html)  # before any work: never overwrite a non-report
    e = html.escape
    compared, per_run = _metrics_tables(runs)
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{e(title)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{e(title)}</h1>", _incomparable_note(runs),
        _verdict(runs), "<h2>Runs</h2>", _runs_table(runs), _warnings(runs),
    ]
    if compared:
        parts += ["<h2>Headline metrics</h2>", _NOTE, compared]
    if per_run:
        parts += ["<h2>Per-run metrics</h2><p class='dir'>Metrics only one run has (another "
                  "sampler, or a metric that does not apply to the other runs): nothing to compare "
                  "them with.</p>", per_run]
    plane, curves = _plane_png(runs), _curves_png(runs)
    if plane or curves:
        parts.append("<h2>Trade-off and training</h2><div class='row'>")
        if plane:
            parts.append(_figure_html(plane, "MSE-FID plane", (
                "MSE-FID plane (Fig 2): one point per run and sampler; lower left is better. "
                "Colour: sampler, marker: objective; a line joins one (objective, sampler, β) "
                "across n, dashed for the standard VAE, solid for compressed; n is written "
                "above each run's points.")))
        if curves:
            parts.append(_figure_html(curves, "training curves", (
                "Training curves of all runs overlaid, epochs counted 1..N as the training log "
                "counts them. The latent loss is on each objective's own scale (KLD for "
                "standard, the hyperspherical prior loss for compressed).")))
        parts.append("</div>")
    parts.append("<h2>Figures</h2><p class='dir'>Click a figure to enlarge it; click again "
                 "(or press Escape) to close.</p>")
    parts.extend(_figures_section(runs))
    parts.append("<h2>Configs</h2>")
    for r in runs:
        parts.append(f"<details><summary>{e(r.name)}</summary><pre>"
                     f"{e(json.dumps(r.config, indent=2, sort_keys=True))}</pre></details>")
    parts.append(f"<script>{_JS}</script></body></html>")
    return atomic_write_text(out, "\n".join(parts))
