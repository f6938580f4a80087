"""One self-contained HTML page comparing evaluated runs (images embedded as data URIs,
inline CSS, no scripts or external resources)."""

from __future__ import annotations

import base64
import html
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spherevae.rundir import UserError, atomic_write_text, read_json

__all__ = ["RunSummary", "load_run_summary", "write_report"]

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}.runs{display:flex;gap:2em;flex-wrap:wrap}
.run{flex:1;min-width:420px}img{max-width:100%;border:1px solid #eee}.note{color:#a33}
"""


@dataclass(frozen=True)
class RunSummary:
    name: str
    config: dict[str, Any]
    metrics: dict[str, Any]
    figures: dict[str, Path] = field(default_factory=dict)


def load_run_summary(run_dir: str | os.PathLike[str]) -> RunSummary:
    """Read ``config.yaml``, ``eval/metrics.json`` and ``eval/*.png`` of a run directory."""
    from spherevae.config import read_yaml

    run_dir = Path(run_dir)
    for needed in (run_dir / "config.yaml", run_dir / "eval" / "metrics.json"):
        if not needed.is_file():
            hint = " (run `spherevae evaluate` first)" if needed.name == "metrics.json" else ""
            raise FileNotFoundError(f"{run_dir} is not an evaluated run: {needed} is missing{hint}")
    return RunSummary(
        name=run_dir.name,
        config=read_yaml(run_dir / "config.yaml", "run config"),
        metrics=read_json(run_dir / "eval" / "metrics.json", hint="run `spherevae evaluate` again"),
        figures={p.stem: p for p in sorted((run_dir / "eval").glob("*.png"))},
    )


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


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def write_report(
    runs: Sequence[RunSummary], out_html: str | os.PathLike[str], *, title: str = "spherevae report"
) -> Path:
    """Write the page and return its path. Deterministic for the same inputs."""
    if not runs:
        raise ValueError("write_report needs at least one run")
    keys: list[str] = []
    for r in runs:
        keys.extend(k for k, v in r.metrics.items() if not isinstance(v, (dict, list)) and k not in keys)
    e = html.escape
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(title)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{e(title)}</h1>",
        "<p class='note'>FID names say their feature backbone. <b>fid_domain_*</b> uses a classifier "
        "trained here on the dataset: those values are NOT comparable to published Inception FIDs. "
        "<i>_recon</i>: against the reconstructed test set (the paper's protocol); <i>_test</i>: "
        "against the real test set.</p>",
        "<h2>Metrics</h2><table><tr><th>metric</th>"
        + "".join(f"<th>{e(r.name)}</th>" for r in runs) + "</tr>",
    ]
    for k in sorted(keys):
        parts.append(f"<tr><td>{e(k)}</td>" + "".join(f"<td>{_fmt(r.metrics.get(k, '-'))}</td>" for r in runs) + "</tr>")
    parts.append("</table><h2>Runs</h2><div class='runs'>")
    for r in runs:
        parts.append(f"<div class='run'><h3>{e(r.name)}</h3><details><summary>config</summary><pre>"
                     f"{e(json.dumps(r.config, indent=2, sort_keys=True))}</pre></details>")
        for name, path in r.figures.items():
            data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
            parts.append(f"<h4>{e(name)}</h4><img alt='{e(name)}' src='data:image/png;base64,{data}'>")
        parts.append("</div>")
    parts.append("</div></body></html>")
    return atomic_write_text(check_report_target(out_html), "\n".join(parts))
