"""Tables and figures of docs/results.md from the Fashion-MNIST sweeps.

Run the sweeps first (each is resumable), then this script:

    for s in fig1 fig1-long fig2 fig2-seed1 beta-regimes quench authors; do
        .venv/bin/spherevae sweep --config configs/sweeps/fmnist-$s.yaml
    done
    .venv/bin/python scripts/results_tables.py --sweeps sweeps --figures docs/figures/results > /tmp/tables.md

It prints markdown tables and copies/draws the figures. Collapse counts are recomputed
here from each run's model on the 10k test images with the current
``spherevae.evaluation.diagnostics.collapse_stats`` (so every row uses the same definition).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from spherevae.evaluation.metric_info import KEYS, describe, metric_key
from spherevae.evaluation.pipeline import TANGENT_NOISE_SCALES
from spherevae.io.layout import RunLayout
from spherevae.training.config import load_config
from spherevae.training.objectives import OBJECTIVES

# Every sweep is evaluated on domain features; keys come from the one builder.
BACKBONE = "domain"
HEADLINE = "paper_sampler_fid"  # added to each row by load_rows: see paper_sampler
KNN = metric_key("knn_accuracy", k=5)


def fid_key(sampler: str, reference: str = "recon") -> str:
    """``fid_domain_<sampler>_recon`` (or ``_test``)."""
    return metric_key(f"fid_{reference}", backbone=BACKBONE, sampler=sampler)


def paper_sampler(run_dir: Path) -> str:
    """The paper's sampler for the run's objective (read from its config.yaml): the
    objective registry's headline, the N(0, I) prior for the standard VAE and the vMF for
    the compressed/authors ones."""
    objective = load_config(RunLayout(run_dir).config).objective.name
    return OBJECTIVES[objective].default_samplers[0]


def load_rows(sweep_dir: Path) -> list[dict[str, Any]]:
    """A sweep's finished rows, each with ``paper_sampler_fid``: the FID (vs reconstructions)
    of :func:`paper_sampler`, read by its key, whatever order the sweep listed samplers in
    (its ``headline`` FID is the first sampler evaluated)."""
    path = sweep_dir / "results.json"
    if not path.is_file():
        return []
    rows = [r for r in json.loads(path.read_text()) if r.get("status") in ("done", "skipped")]
    for r in rows:
        run = sweep_dir / "runs" / r["name"]
        r["_eval"] = RunLayout(run).eval_metrics
        r["_headline_key"] = fid_key(paper_sampler(run))
        r[HEADLINE] = r.get(r["_headline_key"], r.get(metric_key("headline_fid_recon", backbone=BACKBONE)))
    return rows


def fmt(v: Any, digits: int = 3) -> str:
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1000 else f"{v:.0f}"
    return "-" if v is None else str(v)


def mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return fmt(values[0])
    return f"{statistics.mean(values):.3g} ± {statistics.stdev(values):.2g}"


def gauss_key(r: dict[str, Any]) -> str:
    """The key of the model's own Gaussian fit's FID: the projected normal on the sphere for
    the compressed/authors models, the plain Gaussian for the standard one (since the sweeps
    evaluate every sampler on every model, both keys exist in every row)."""
    own = fid_key("gaussian" if r.get("variant") == "standard" else "gaussian_sphere")
    return own if own in r else fid_key("gaussian")


def fid_gauss(r: dict[str, Any]) -> float | None:
    return r.get(gauss_key(r))


_collapse_cache: dict[str, dict[str, float]] = {}


def collapse(run_dir: Path) -> dict[str, float]:
    """Collapsed-dimension counts and the tangent effective dimension of the directions
    (projection to the sphere does not change them) from the run's model on the 10k test images."""
    key = str(run_dir)
    if key not in _collapse_cache:
        from spherevae.data import load_dataset
        from spherevae.evaluation.diagnostics import collapse_stats
        from spherevae.geometry.sphere import tangent_effective_dim
        from spherevae.models.inference import encode_dataset
        from spherevae.training.runs import load_run

        cfg, model = load_run(run_dir)
        test = load_dataset(cfg.data.name, "test", root=cfg.data.root, download=False)
        mu, logvar = encode_dataset(model, test.images, batch_size=1000, device="cpu")
        stats = collapse_stats(mu, logvar=logvar)
        _collapse_cache[key] = {"cart": stats["collapsed_cartesian"], "cos": stats["collapsed_cos_phi"],
                                "kl01": stats["collapsed_kl"], "kl1": int((stats["kl_per_dim"] < 0.1).sum()),
                                "tdim": tangent_effective_dim(mu)["effective_dim"]}
    return _collapse_cache[key]


def run_dir(sweep_dir: Path, row: dict[str, Any]) -> Path:
    return sweep_dir / "runs" / row["name"]


def copy_eval_figures(sweep_dir: Path, row: dict[str, Any], names: tuple[str, ...], dest: Path, prefix: str) -> None:
    """Copy the run's ``eval/<name>.png`` figures to ``dest/<prefix>-<name>.png`` (those that exist)."""
    for name in names:
        src = RunLayout(run_dir(sweep_dir, row)).eval_dir / f"{name}.png"
        if src.is_file():
            shutil.copyfile(src, dest / f"{prefix}-{name}.png")


VARIANTS = ("standard", "compressed", "authors")
# Samplers in the order the tables show them: the paper's (prior / vMF), then the other
# readings of "a vMF with the test latents' mean and covariance", then the generic fits.
SAMPLER_ORDER = ("prior", "prior_sphere", "vmf", "gaussian_sphere", "esag", "vmf_mixture",
                 "gaussian", "gmm")


def col(rs: list[dict[str, Any]], key: str) -> str:
    return mean_std([r[key] for r in rs if isinstance(r.get(key), int | float)])


def sigma_summary(r: dict[str, Any]) -> str:
    """Largest per-dimension sigma (its 1-based dim), median, and dims above 10x the median
    (from the run's eval/metrics.json: results.json keeps scalars only)."""
    path = r.get("_eval")
    per = json.loads(path.read_text()).get("sigma_per_dim") if path and path.is_file() else None
    if not per:
        return "-"
    top = max(range(len(per)), key=per.__getitem__)
    return f"{per[top]:.2f} (dim {top + 1}) / {statistics.median(per):.3f} / {r.get('sigma_dims_above_10x_median', '-')}"


def samplers_in(rows: list[dict[str, Any]]) -> list[str]:
    infos = [describe(k) for r in rows for k in r]
    found = {i.sampler for i in infos
             if i is not None and i.sampler is not None and i.template == KEYS["fid_recon"] and i.backbone == BACKBONE}
    return [s for s in SAMPLER_ORDER if s in found] + sorted(found - set(SAMPLER_ORDER))


def sampler_table(title: str, rows: list[dict[str, Any]], variants: tuple[str, ...] = VARIANTS) -> None:
    """Every sampler of every variant: FID vs reconstructions and vs test, precision/recall."""
    names = samplers_in(rows)
    print(f"**{title}**: FID vs the reconstructed test set (vs the real test set), precision / recall vs test\n")
    print("| sampler | " + " | ".join(v for v in variants if any(r["variant"] == v for r in rows)) + " |")
    print("|---|" + "---|" * sum(any(r["variant"] == v for r in rows) for v in variants))
    for name in names:
        cells = []
        for v in variants:
            rs = [r for r in rows if r["variant"] == v]
            if not rs:
                continue
            if not any(fid_key(name) in r for r in rs):
                cells.append("n/a")
                continue
            pr = {m: metric_key(m, backbone=BACKBONE, sampler=name) for m in ("precision", "recall")}
            cells.append(f"{col(rs, fid_key(name))} ({col(rs, fid_key(name, 'test'))}); "
                         f"{col(rs, pr['precision'])} / {col(rs, pr['recall'])}")
        print(f"| `{name}` | " + " | ".join(cells) + " |")
    print()


_metrics_cache: dict[str, dict[str, Any]] = {}


def metrics_file(path: Path | None) -> dict[str, Any]:
    """A whole metrics.json, read once per path ({} where there is none; a path cached by
    :func:`rows_with_features` is its respelled copy)."""
    if path is None or (str(path) not in _metrics_cache and not path.is_file()):
        return {}
    if str(path) not in _metrics_cache:
        _metrics_cache[str(path)] = json.loads(path.read_text())
    return _metrics_cache[str(path)]


def full_metrics(r: dict[str, Any]) -> dict[str, Any]:
    """The run's whole eval/metrics.json (results.json keeps scalars only)."""
    return metrics_file(r.get("_eval"))


def seed_values(r: dict[str, Any], key: str) -> list[float]:
    """The FID ``key`` of run ``r`` in each feature network (``fid_per_feature_seed``), or
    the one value of its own network where no seed spread was measured."""
    per = full_metrics(r).get("fid_per_feature_seed", {}).get(key)
    if per:
        return [float(v) for _, v in sorted(per.items())]
    return [float(r[key])] if isinstance(r.get(key), int | float) else []


def cv(values: list[float]) -> float | None:
    return statistics.stdev(values) / statistics.mean(values) if len(values) > 1 else None


def cell(rs: list[dict[str, Any]], key: str) -> tuple[float, float, list[float]] | None:
    """Mean and std over every (training seed, feature seed) value of ``key`` in the runs
    ``rs``, and the per-run coefficients of variation over the feature seeds."""
    values = [v for r in rs for v in seed_values(r, key)]
    if not values:
        return None
    cvs = [c for c in (cv(seed_values(r, key)) for r in rs) if c is not None]
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0), cvs


def feature_seed_table(title: str, rows: list[dict[str, Any]], variants: tuple[str, ...] = VARIANTS) -> None:
    """Every sampler's FID over (training seed x feature-network seed): mean ± std over all
    of them, the largest coefficient of variation over the feature seeds of one run, and
    whether every run's CV is <= 10% (issue 22's criterion for the instrument)."""
    print(f"**{title}**: FID mean ± std over every (training seed, feature-network seed); "
          "[largest CV over the feature seeds of one run]\n")
    print("| variant | sampler | runs | FID vs reconstructions | FID vs real test set |")
    print("|---|---|---|---|---|")
    all_cvs: dict[str, list[float]] = {"recon": [], "test": []}
    for v in variants:
        rs = [r for r in rows if r["variant"] == v]
        for name in samplers_in(rs):
            cells = []
            for ref in ("recon", "test"):
                c = cell(rs, fid_key(name, ref))
                if c is None:
                    cells.append("-")
                    continue
                all_cvs[ref] += c[2]
                top = f" [{max(c[2]):.1%}]" if c[2] else ""
                cells.append(f"{c[0]:.3g} ± {c[1]:.2g}{top}")
            print(f"| {v} | `{name}` | {len(rs)} | " + " | ".join(cells) + " |")
    for ref, cvs in all_cvs.items():
        if cvs:
            print(f"\n- vs {ref}: {sum(c <= 0.10 for c in cvs)} of {len(cvs)} (run, sampler) cells have a CV over "
                  f"the feature seeds <= 10% (median {statistics.median(cvs):.1%}, largest {max(cvs):.1%})")
    print()


def per_seed_cvs(per_feature_seed: dict[str, dict[str, float]], ref: str) -> list[float]:
    """The CV over the feature networks of every FID against ``ref`` in one evaluation's
    ``fid_per_feature_seed``."""
    return [c for k, v in per_feature_seed.items() if k.endswith(f"_{ref}") and (c := cv(list(v.values()))) is not None]


def instrument_line(label: str, rows: list[dict[str, Any]]) -> None:
    """How many (run, sampler) FIDs of ``rows`` have a CV <= 10% over the feature networks,
    per reference, with the median and the largest."""
    for ref in ("recon", "test"):
        cvs = [c for r in rows for c in per_seed_cvs(full_metrics(r).get("fid_per_feature_seed", {}), ref)]
        if cvs:
            print(f"- {label}, vs {ref}: {sum(c <= 0.10 for c in cvs)} of {len(cvs)} (run, sampler) FIDs have a CV "
                  f"over the feature networks <= 10% (median {statistics.median(cvs):.1%}, largest {max(cvs):.1%})")


# A run's evaluations with each feature read-out (label, directory under the run): the
# older read-out (moved to eval-domain-v2/ before re-evaluating), the current one (eval/)
# and the ensembles (eval-domain-x2/, eval-domain-x3/: whose "networks" are pairs, triples).
OTHER_EVALS = (("domain-v2", "eval-domain-v2"), ("domain-v3", "eval"), ("domain-x2", "eval-domain-x2"),
               ("domain-x3", "eval-domain-x3"))
# The ensembles among them (backbone "domain-x<k>"), for the Fig 1 ensemble tables.
ENSEMBLE_EVALS = tuple((label, where) for label, where in OTHER_EVALS if label.startswith("domain-x"))


def instrument_table(title: str, sweep_dir: Path, rows: list[dict[str, Any]]) -> None:
    """The CV of every (run, sampler) FID over the three feature networks (or ensembles),
    per variant and reference, for every evaluation a run has of :data:`OTHER_EVALS`: how
    many cells have a CV <= 10%, the median and the largest."""
    print(f"**{title}**: CV over the three feature networks (pairs for domain-x2, triples for domain-x3) of every (run, sampler) FID\n")
    print("| variant | reference | features | cells with CV <= 10% | median CV | largest CV |")
    print("|---|---|---|---|---|---|")
    for v in VARIANTS:
        rs = [r for r in rows if r["variant"] == v]
        for ref in ("recon", "test"):
            for label, where in OTHER_EVALS:
                cvs = []
                for r in rs:
                    per = metrics_file(run_dir(sweep_dir, r) / where / "metrics.json").get("fid_per_feature_seed", {})
                    cvs += per_seed_cvs(per, ref)
                if cvs:
                    print(f"| {v} | {ref} | {label} | {sum(c <= 0.10 for c in cvs)} of {len(cvs)} | "
                          f"{statistics.median(cvs):.1%} | {max(cvs):.1%} |")
    print()


def fidelity_diversity_table(title: str, rows: list[dict[str, Any]], variants: tuple[str, ...] = VARIANTS) -> None:
    """Precision / recall / density / coverage (mean over runs) against the reconstructions
    and against the real test set, and KID against the reconstructions (x 10^3)."""
    print(f"**{title}**: precision / recall / density / coverage vs the reconstructions; the same vs the real "
          "test set; KID vs the reconstructions x 10^3 (mean ± std over runs)\n")
    print("| variant | sampler | vs reconstructions | vs real test set | KID x 10^3 |")
    print("|---|---|---|---|---|")

    def mean_of(rs: list[dict[str, Any]], key: str) -> str:
        vals = [r[key] for r in rs if isinstance(r.get(key), int | float)]
        return fmt(statistics.mean(vals), 2) if vals else "-"

    for v in variants:
        rs = [r for r in rows if r["variant"] == v]
        for name in samplers_in(rs):
            parts = {}
            for suffix in ("_recon", ""):
                keys = [metric_key(m + suffix, backbone=BACKBONE, sampler=name)
                        for m in ("precision", "recall", "density", "coverage")]
                parts[suffix] = " / ".join(mean_of(rs, k) for k in keys)
            kid = [1e3 * r[k] for r in rs if isinstance(r.get(k := metric_key("kid_recon", backbone=BACKBONE,
                                                                                  sampler=name)), int | float)]
            print(f"| {v} | `{name}` | {parts['_recon']} | {parts['']} | {mean_std(kid)} |")
    print()


def separated(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Mean ± 2 std intervals that do not overlap (the report's rule, evaluation.verdict)."""
    (ma, sa), (mb, sb) = a, b
    return ma + 2 * sa < mb - 2 * sb or mb + 2 * sb < ma - 2 * sa


def comparison(label: str, rows_a: list[dict[str, Any]], key_a: str, rows_b: list[dict[str, Any]],
               key_b: str) -> None:
    """One verdict line: A vs B over every (training seed, feature seed) value, whether
    their ±2 std intervals separate, and in how many paired (training seed, feature seed)
    cases A is lower."""
    a, b = cell(rows_a, key_a), cell(rows_b, key_b)
    if a is None or b is None:
        return
    pairs = [(x, y) for ra, rb in zip(sorted(rows_a, key=lambda r: r.get("train.seed", 0)),
                                      sorted(rows_b, key=lambda r: r.get("train.seed", 0)), strict=False)
             for x, y in zip(seed_values(ra, key_a), seed_values(rb, key_b), strict=False)]
    lower = sum(x < y for x, y in pairs)
    verdict = "separated" if separated(a[:2], b[:2]) else "NOT separated (within 2 std)"
    print(f"- {label}: {a[0]:.3g} ± {a[1]:.2g} vs {b[0]:.3g} ± {b[1]:.2g}: {verdict}; "
          f"first lower in {lower} of {len(pairs)} paired (training seed, feature seed) cases")


# (label, variant A, sampler A, variant B, sampler B): the comparisons the summary reads.
COMPARISONS = (
    ("compressed vMF vs standard prior (the paper's samplers)", "compressed", "vmf", "standard", "prior"),
    ("compressed projected normal vs standard prior", "compressed", "gaussian_sphere", "standard", "prior"),
    ("compressed ESAG vs standard prior", "compressed", "esag", "standard", "prior"),
    ("compressed projected normal vs standard Gaussian fit", "compressed", "gaussian_sphere", "standard", "gaussian"),
    ("compressed vMF mixture vs standard vMF mixture", "compressed", "vmf_mixture", "standard", "vmf_mixture"),
    ("compressed GMM vs standard GMM", "compressed", "gmm", "standard", "gmm"),
    ("authors vMF vs standard prior", "authors", "vmf", "standard", "prior"),
    ("authors projected normal vs standard Gaussian fit", "authors", "gaussian_sphere", "standard", "gaussian"),
)


def verdicts(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"**{title}** (lower FID first; separated = mean ± 2 std over every (training seed, feature seed) "
          "value do not overlap)\n")
    for ref, ref_label in (("recon", "vs reconstructions"), ("test", "vs real test set")):
        for label, va, sa, vb, sb in COMPARISONS:
            ra = [r for r in rows if r["variant"] == va]
            rb = [r for r in rows if r["variant"] == vb]
            comparison(f"{label}, {ref_label}", ra, fid_key(sa, ref), rb, fid_key(sb, ref))
    print()


def diagnostics_table(title: str, rows: list[dict[str, Any]], variants: tuple[str, ...] = VARIANTS) -> None:
    """Latent geometry that explains generation (evaluate's diagnostics)."""
    print(f"**{title}**\n")
    print("| variant | runs | tangent eff. dim (of 127) | top tangent eigenvalue share | sigma: max (dim) / median / dims > 10x median "
          "| vMF kappa | FID of test latents + tangent noise at 0.25x / 0.5x / 1x the vMF's spread |")
    print("|---|---|---|---|---|---|---|")
    for v in variants:
        rs = [r for r in rows if r["variant"] == v]
        if not rs:
            continue
        noise = " / ".join(col(rs, metric_key("tangent_noise_fid", backbone=BACKBONE, scale=c))
                           for c in TANGENT_NOISE_SCALES)
        sig = "; ".join(sigma_summary(r) for r in rs)
        print(f"| {v} | {len(rs)} | {col(rs, 'tangent_effective_dim')} | {col(rs, 'tangent_top_fraction')} | {sig} | "
              f"{col(rs, 'vmf_concentration')} | {noise} |")
    print()


def rows_with_features(sweep_dir: Path, rows: list[dict[str, Any]], where: str, backbone: str) -> list[dict[str, Any]]:
    """``rows`` as their evaluation in ``<run>/<where>/`` (features ``backbone``) reads them,
    its metric keys spelled with :data:`BACKBONE` so every table above can show it; rows
    without that evaluation are left out."""
    pattern = re.compile(rf"(?<=_){re.escape(backbone)}(?=_|$)")  # the backbone part of a key

    def respell(d: dict[str, Any]) -> dict[str, Any]:
        return {pattern.sub(BACKBONE, k): v for k, v in d.items()}

    out = []
    for r in rows:
        path = run_dir(sweep_dir, r) / where / "metrics.json"
        if not path.is_file():
            continue
        m = respell(json.loads(path.read_text()))
        m["fid_per_feature_seed"] = respell(m.get("fid_per_feature_seed", {}))
        # Cached under its own name: metrics_file(path) keeps giving the file as written.
        respelled = Path(f"{path}#as-{BACKBONE}")
        _metrics_cache[str(respelled)] = m
        keep: dict[str, Any] = {k: r[k] for k in ("name", "variant", "train.seed", "status") if k in r}
        row: dict[str, Any] = {**keep, **{k: v for k, v in m.items() if not isinstance(v, dict | list)}}
        out.append({**row, "_eval": respelled})
    if out and len(out) < len(rows):
        print(f"({len(rows) - len(out)} of {len(rows)} runs have no {where}/: left out of the {backbone} tables)\n")
    return out


def fig1_ensembles(sweeps: Path, figures: Path) -> None:
    """The Fig 1 runs read by the feature ensembles (:data:`ENSEMBLE_EVALS`), for each one
    the runs have: every sampler over the three ensembles (with the cells whose CV is
    <= 10%) and the verdicts. Needs only the sweep's results.json and those evaluations."""
    rows = load_rows(sweeps / "fmnist-fig1")
    for backbone, where in ENSEMBLE_EVALS:
        ens = rows_with_features(sweeps / "fmnist-fig1", rows, where, backbone)
        if ens:
            size = backbone.removeprefix("domain-x")
            feature_seed_table(f"Every sampler, Fig 1 runs, over three {size}-network ensembles ({backbone})", ens)
            verdicts(f"Verdicts, Fig 1 runs, {backbone} ensembles", ens)


def fig1(sweeps: Path, figures: Path) -> None:
    rows = load_rows(sweeps / "fmnist-fig1")
    if not rows:
        return
    print("### Fig 1: standard vs compressed vs authors, n = 128, beta = 1.0 (mean ± std over seeds)\n")
    print("| variant | seeds | RMSE % | MSE/image | FID headline (prior / vMF) | k-NN (k=5) | replica angle (rad) |")
    print("|---|---|---|---|---|---|---|")
    for variant in VARIANTS:
        rs = [r for r in rows if r["variant"] == variant]
        if rs:
            print(f"| {variant} | {len(rs)} | {col(rs, 'rmse_percent')} | {col(rs, 'mse_sum')} | {col(rs, HEADLINE)} | "
                  f"{col(rs, KNN)} | {col(rs, 'replica_angle_mean')} |")
    print()
    sampler_table("Every sampler, Fig 1 runs", rows)
    feature_seed_table("Every sampler, Fig 1 runs, over the feature networks", rows)
    instrument_table("The instrument's spread, Fig 1 runs", sweeps / "fmnist-fig1", rows)
    fidelity_diversity_table("Fidelity and diversity, Fig 1 runs", rows)
    verdicts("Verdicts, Fig 1 runs", rows)
    diagnostics_table("Why: latent geometry and the decoder's sensitivity (Fig 1 runs)", rows)
    figures.mkdir(parents=True, exist_ok=True)
    for variant in VARIANTS:
        seed0 = next((r for r in rows if r["variant"] == variant and r.get("train.seed") == 0), None)
        if seed0 is not None:
            copy_eval_figures(sweeps / "fmnist-fig1", seed0, ("samples", "samples_by_sampler", "sphere_projection", "tsne",
                                                              "latent_histograms", "interpolation", "latent_spectrum"),
                              figures, f"fig1-{variant}")


def ablation(sweeps: Path) -> None:
    """The printed 1/sqrt(k+1) profile vs o_k, paired by seed with the Fig 1 runs; FIDs as
    mean ± std over the feature networks, and printed vs o_k over (seed, network)."""
    printed = load_rows(sweeps / "fmnist-ablation-profile")
    if not printed:
        return
    fig1_rows = load_rows(sweeps / "fmnist-fig1")
    true = {(r["variant"], r.get("train.seed")): r for r in fig1_rows}
    print("### Ablation: the all-ones profile as printed (1/sqrt(k+1)) vs o_k = 1/sqrt(n-k+1), n = 128\n")
    print("FIDs vs reconstructions, mean ± std over the feature networks.\n")
    print("| objective | profile | seed | RMSE % | replica angle | tangent eff. dim | sigma: max (dim) / median / dims > 10x median "
          "| FID vMF | FID gaussian_sphere | FID esag | FID vmf_mixture |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in sorted(printed, key=lambda r: (r["variant"], r.get("train.seed", 0))):
        objective = r["variant"].replace("-printed", "")
        for label, row in (("printed", r), ("o_k", true.get((objective, r.get("train.seed"))))):
            if row is None:
                continue
            fids = " | ".join(mean_std(seed_values(row, fid_key(name)))
                              for name in ("vmf", "gaussian_sphere", "esag", "vmf_mixture"))
            print(f"| {objective} | {label} | {r.get('train.seed')} | {fmt(row.get('rmse_percent'))} | {fmt(row.get('replica_angle_mean'))} | "
                  f"{fmt(row.get('tangent_effective_dim'))} | {sigma_summary(row)} | {fids} |")
    print("\nPrinted vs o_k, over every (training seed, feature network) value:\n")
    seeds = {r.get("train.seed") for r in printed}
    for objective in ("compressed", "authors"):
        rows_p = [r for r in printed if r["variant"] == f"{objective}-printed"]
        rows_o = [r for r in fig1_rows if r["variant"] == objective and r.get("train.seed") in seeds]
        for ref, ref_label in (("recon", "vs reconstructions"), ("test", "vs real test set")):
            for name in ("vmf", "gaussian_sphere", "esag", "vmf_mixture"):
                comparison(f"{objective}, {name}: printed vs o_k, {ref_label}", rows_p, fid_key(name, ref),
                           rows_o, fid_key(name, ref))
    print()


def fig1_long(sweeps: Path, figures: Path) -> None:
    rows = load_rows(sweeps / "fmnist-fig1-long")
    if not rows:
        return
    print("### Fig 1, longer: all 60k images, 40 epochs, n = 128, beta = 1.0, seed 0\n")
    print("| variant | RMSE % | MSE/image | FID headline (prior / vMF) | k-NN (k=5) | replica angle | "
          "collapsed: Cartesian / cos phi / KL < 0.01 nats / KL < 0.1 nats |")
    print("|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: VARIANTS.index(r["variant"])):
        c = collapse(run_dir(sweeps / "fmnist-fig1-long", r))
        kl = f"{c['kl01']} / {c['kl1']}" if r["variant"] == "standard" else "n/a / n/a"
        print(f"| {r['variant']} | {fmt(r['rmse_percent'])} | {fmt(r['mse_sum'])} | {fmt(r.get(HEADLINE))} | "
              f"{fmt(r.get(KNN))} | {fmt(r.get('replica_angle_mean'))} | {c['cart']} / {c['cos']} / {kl} |")
        copy_eval_figures(sweeps / "fmnist-fig1-long", r, ("samples_by_sampler", "sphere_projection", "latent_histograms",
                                                           "latent_spectrum"), figures, f"fig1-long-{r['variant']}")
    print()
    sampler_table("Every sampler, 40-epoch runs", rows)
    feature_seed_table("Every sampler, 40-epoch runs, over the feature networks", rows)
    fidelity_diversity_table("Fidelity and diversity, 40-epoch runs", rows)
    verdicts("Verdicts, 40-epoch runs", rows)
    diagnostics_table("Latent geometry, 40-epoch runs", rows)


def dominated(point: tuple[float, float], others: list[tuple[float, float]]) -> bool:
    return any(o[0] <= point[0] and o[1] <= point[1] and o != point for o in others)


def fig2_rows(sweeps: Path) -> list[dict[str, Any]]:
    """Every Fig 2 grid point of every seed evaluated over the feature networks
    (``fid_per_feature_seed``): fmnist-fig2 (seed 0), fmnist-fig2-seed1, and the n = 128
    seed-1 points that fmnist-beta-regimes already holds (same base config). A run evaluated
    with one network (an older evaluation) is left out, with a note: its single FID is on
    another scale and would cut every point's per-network values to one."""
    rows = [{**r, "train.seed": r.get("train.seed", 0)} for r in load_rows(sweeps / "fmnist-fig2")]
    rows += load_rows(sweeps / "fmnist-fig2-seed1")
    rows += [r for r in load_rows(sweeps / "fmnist-beta-regimes") if r["model.latent_dim"] == 128]
    kept = [r for r in rows if full_metrics(r).get("fid_per_feature_seed")]
    if len(kept) < len(rows):
        print(f"- left out of Fig 2: {len(rows) - len(kept)} runs evaluated with one feature network\n")
    return kept


def dominated_separated(point: tuple[float, float, float], others: list[tuple[float, float, float]]) -> bool:
    """(rmse, fid, fid spread) dominated by another point with lower-or-equal RMSE whose FID
    is lower by more than the two points' 2-spread intervals (mean ± 2 spread do not overlap)."""
    return any(o[0] <= point[0] and o[1] + 2 * o[2] < point[1] - 2 * point[2] for o in others)


def pareto_summary(label: str, points: list[tuple[float, float, str, str]],
                   spreads: list[float] | None = None) -> None:
    """Print the joint Pareto front and the domination counts of (rmse, fid, variant, name)
    points; with ``spreads`` (one FID spread per point) also the counts when a point only
    dominates another whose FID it beats by more than both spreads (2 std each)."""
    n_c, n_s = (sum(p[2] == v for p in points) for v in ("compressed", "standard"))
    free, free_s, _ = front_counts([p[:3] for p in points])
    if spreads is not None:
        sp = {v: [(*p[:2], s) for p, s in zip(points, spreads, strict=True) if p[2] == v]
              for v in ("standard", "compressed")}
        sep_c = sum(not dominated_separated(p, sp["standard"]) for p in sp["compressed"])
        sep_s = sum(not dominated_separated(p, sp["compressed"]) for p in sp["standard"])
        print(f"- {label}, counting only separated FID differences (± 2 spreads): {sep_c} of "
              f"{len(sp['compressed'])} compressed points are not dominated by a standard point; "
              f"{sep_s} of {len(sp['standard'])} standard points are not dominated by a compressed point.")
    front = sorted((p for p in points if not dominated(p[:2], [q[:2] for q in points])), key=lambda p: p[0])
    print(f"- {label}: joint Pareto front (s = standard, c = compressed), by RMSE: "
          + ", ".join(f"{p[3]} ({p[0]:.2f}%, {p[1]:.1f})" for p in front)
          + f" ({sum(p[2] == 'compressed' for p in front)} of {len(front)} compressed)")
    print(f"- {label}: {free} of {n_c} compressed points are not dominated by any "
          f"standard point (lower-or-equal RMSE and FID); {free_s} of {n_s} standard "
          "points are not dominated by any compressed point.")


# Fig 2's sampler pairs: (tag, label, short label, sampler of the standard model, of the compressed one).
# The first pair is the paper's (the objective registry's headlines: N(0, I) prior, vMF).
FIG2_PAIRS = (
    ("headline", "headline sampler (standard: prior, compressed: vMF)", "prior / vMF", "prior", "vmf"),
    ("gaussian", "Gaussian fits (standard: gaussian, compressed: gaussian_sphere)", "Gaussian fits",
     "gaussian", "gaussian_sphere"),
    ("esag", "covariance-aware fits (standard: gaussian, compressed: esag)", "Gaussian / ESAG", "gaussian", "esag"),
)


def fig2_point(rs: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """A Fig 2 point's FID ``key``: every (training seed, feature network) value, and per
    feature network the mean over the training seeds (the point as that network sees it)."""
    per_run = [vs for vs in (seed_values(r, key) for r in rs) if vs]
    return [v for vs in per_run for v in vs], [statistics.mean(col) for col in zip(*per_run, strict=True)]


def training_seed_cv(rows: list[dict[str, Any]], ref: str) -> float:
    """The largest CV over training seeds of a Fig 2 sampler's FID among the runs ``rows``
    (the Fig 1 runs, n = 128, beta = 1, 3 seeds, and the Fig 2 points that have several
    seeds), per (variant, n, beta) and feature network: the training-seed part of the
    spread that a Fig 2 point with one training seed cannot show (0 where none has seeds)."""
    return max(variant_seed_cv(rows, ("standard",), tuple(p[3] for p in FIG2_PAIRS), ref),
               variant_seed_cv(rows, ("compressed",), tuple(p[4] for p in FIG2_PAIRS), ref))


def point_spread(values: list[float], runs: int, seed_cv: float) -> float:
    """A Fig 2 point's FID spread: the std of its values (training seeds x feature networks);
    with one training seed, that std (feature networks only) and ``seed_cv`` of the mean
    (the training-seed part, measured on Fig 1) in quadrature."""
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return std if runs > 1 else math.hypot(std, seed_cv * statistics.mean(values))


def front_counts(points: list[tuple[float, float, str]]) -> tuple[int, int, int]:
    """(compressed points not dominated by a standard one, standard points not dominated by
    a compressed one, compressed points on the joint front) of (rmse, fid, variant) points."""
    by = {v: [p[:2] for p in points if p[2] == v] for v in ("standard", "compressed")}
    front = [p for p in points if not dominated(p[:2], [q[:2] for q in points])]
    return (sum(not dominated(p, by["standard"]) for p in by["compressed"]),
            sum(not dominated(p, by["compressed"]) for p in by["standard"]),
            sum(p[2] == "compressed" for p in front))


def rmse_values(rs: list[dict[str, Any]]) -> list[float]:
    return [r["rmse_percent"] for r in rs if isinstance(r.get("rmse_percent"), int | float)]


def fig2_table(groups: dict[tuple[str, int, float], list[dict[str, Any]]], ref: str) -> None:
    """One row per (n, beta): RMSE and the five Fig 2 samplers' FIDs against ``ref``."""
    print("| n | beta | runs | standard RMSE % | standard FID prior | standard FID Gaussian fit | compressed RMSE % "
          "| compressed FID vMF | compressed FID projected normal | compressed FID ESAG |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n in sorted({k[1] for k in groups}):
        for beta in sorted({k[2] for k in groups}, reverse=True):
            s, c = groups.get(("standard", n, beta), []), groups.get(("compressed", n, beta), [])
            fids = [mean_std(fig2_point(rs, fid_key(name, ref))[0])
                    for rs, name in ((s, "prior"), (s, "gaussian"), (c, "vmf"), (c, "gaussian_sphere"), (c, "esag"))]
            print(f"| {n} | {beta} | {min(len(s), len(c))} | {mean_std(rmse_values(s))} | {fids[0]} | {fids[1]} | "
                  f"{mean_std(rmse_values(c))} | {fids[2]} | {fids[3]} | {fids[4]} |")
    print()


def fig2_plane(groups: dict[tuple[str, int, float], list[dict[str, Any]]], sampler: dict[str, str], ref: str,
               seed_cv: float) -> list[dict[str, Any]]:
    """The points of one sampler pair (``sampler``: variant -> sampler name) against ``ref``:
    mean RMSE, mean FID, per-network FIDs and the point's spread (``point_spread``)."""
    plane = []
    for (variant, n, beta), rs in sorted(groups.items()):
        values, per_net = fig2_point(rs, fid_key(sampler[variant], ref))
        if values:
            plane.append({"n": n, "beta": beta, "objective": variant, "mse": statistics.mean(rmse_values(rs)),
                          "fid": statistics.mean(values), "per_net": per_net,
                          "spread": point_spread(values, len(rs), seed_cv)})
    return plane


def fig2_fronts(label: str, plane: list[dict[str, Any]]) -> None:
    """Pareto counts of one sampler pair's points: on the means (also counting only
    separated differences) and in each feature network alone."""
    pareto_summary(f"{label}, means",
                   [(p["mse"], p["fid"], p["objective"], f"{p['objective'][0]} n={p['n']} b={p['beta']}")
                    for p in plane], [p["spread"] for p in plane])
    nets = [front_counts([(p["mse"], p["per_net"][i], p["objective"]) for p in plane])
            for i in range(min(len(p["per_net"]) for p in plane))]
    n_c, n_s = (sum(p["objective"] == v for p in plane) for v in ("compressed", "standard"))
    print(f"- {label}, each feature network alone: compressed points not dominated by a standard "
          f"one {' / '.join(str(c[0]) for c in nets)} of {n_c}; standard points not dominated by a compressed "
          f"one {' / '.join(str(c[1]) for c in nets)} of {n_s}; compressed points on the joint "
          f"front {' / '.join(str(c[2]) for c in nets)}")


def fig2(sweeps: Path, figures: Path) -> None:
    """The MSE-FID plane: every FID over (training seed x feature network), against the
    reconstructions and the real test set; Pareto counts per sampler pair (``fig2_fronts``);
    the figures (vs reconstructions) draw each point's spread as a bar."""
    rows = fig2_rows(sweeps)
    if not rows:
        return
    from spherevae.plots.figure import save_figure
    from spherevae.report.plane import mse_fid_plane

    seeds = ", ".join(map(str, sorted({r["train.seed"] for r in rows})))
    groups: dict[tuple[str, int, float], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["variant"], r["model.latent_dim"], r["objective.beta"]), []).append(r)
    instrument_line("the instrument on the Fig 2 runs", rows)
    print()
    fig1_rows = load_rows(sweeps / "fmnist-fig1")
    for ref, ref_label in (("recon", "vs reconstructions"), ("test", "vs the real test set")):
        print(f"### Fig 2: the MSE-FID plane, FID {ref_label} (training seeds {seeds}; FID mean ± std over every "
              "(training seed, feature network); 6 epochs of 15k images)\n")
        fig2_table(groups, ref)
        seed_cv = max(training_seed_cv(fig1_rows, ref), training_seed_cv(rows, ref))  # each sweep's own seeds
        if not seed_cv:
            print(f"- no runs with several training seeds (fmnist-fig1, Fig 2): one-seed spreads {ref_label} leave "
                  "out the training-seed part")
        print(f"- spread of a point with one training seed, {ref_label}: its std over the feature networks combined "
              f"(in quadrature) with {seed_cv:.1%} of its FID, the largest training-seed CV of these samplers, per "
              "network, in the Fig 1 runs (n = 128, beta = 1, 3 seeds) and the Fig 2 points with several seeds; "
              "a point with several seeds: the std over all its (training seed, network) values")
        for tag, label, short, s_name, c_name in FIG2_PAIRS:
            plane = fig2_plane(groups, {"standard": s_name, "compressed": c_name}, ref, seed_cv)
            if not plane:  # sweeps evaluated without this pair's samplers
                continue
            fig2_fronts(f"{label}, {ref_label}", plane)
            if ref == "recon":
                bars = [{**p, "fid_err": p["spread"]} for p in plane]
                save_figure(mse_fid_plane(bars, fid_label=f"FID (domain-v3), {short}; bars: ±1 spread",
                                          mse_label="RMSE (% of range)"), figures / f"fig2-mse-fid-{tag}.png")
        print()


def beta_regimes(sweeps: Path) -> None:
    rows = [(sweeps / "fmnist-fig2", r) for r in load_rows(sweeps / "fmnist-fig2") if r["model.latent_dim"] == 128]
    rows += [(sweeps / "fmnist-beta-regimes", r) for r in load_rows(sweeps / "fmnist-beta-regimes")]
    if not rows:
        return
    print("### Beta regimes (A.6), n = 128: collapsed dimensions (of 128 / 127 angles), MSE and FID\n")
    print("| variant | beta | seed | collapsed (Cartesian) | collapsed (cos phi) | KL < 0.01 nats | KL < 0.1 nats | MSE/image | RMSE % | FID paper sampler (prior / vMF) | FID Gaussian fit |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for sweep_dir, r in sorted(rows, key=lambda t: (t[1]["variant"], -t[1]["objective.beta"], t[1].get("train.seed", 0))):
        c = collapse(run_dir(sweep_dir, r))
        kl = (c["kl01"], c["kl1"]) if r["variant"] == "standard" else ("n/a", "n/a")
        print(f"| {r['variant']} | {r['objective.beta']} | {r.get('train.seed', 0)} | {c['cart']} | {c['cos']} | {kl[0]} | {kl[1]} | "
              f"{fmt(r['mse_sum'])} | {fmt(r['rmse_percent'])} | {fmt(r[HEADLINE])} | {fmt(fid_gauss(r))} |")
    print()


def collapse_all_n(sweeps: Path) -> None:
    rows = load_rows(sweeps / "fmnist-fig2")
    if not rows:
        return
    print("### Collapsed dimensions across the Fig 2 grid (Cartesian / cos phi / KL < 0.01 nats, standard only)\n")
    betas = sorted({r["objective.beta"] for r in rows}, reverse=True)
    print("| variant | n | " + " | ".join(f"beta = {b}" for b in betas) + " |")
    print("|---|---|" + "---|" * len(betas))
    by = {(r["variant"], r["model.latent_dim"], r["objective.beta"]): r for r in rows}
    for variant in ("standard", "compressed"):
        for n in sorted({r["model.latent_dim"] for r in rows}):
            cells = []
            for b in betas:
                r = by.get((variant, n, b))
                if r is None:
                    cells.append("-")
                    continue
                c = collapse(run_dir(sweeps / "fmnist-fig2", r))
                kl = f" / {c['kl01']}" if variant == "standard" else ""
                cells.append(f"{c['cart']} / {c['cos']}{kl}")
            print(f"| {variant} | {n} | " + " | ".join(cells) + " |")
    print()


def quench(sweeps: Path, figures: Path) -> None:
    rows = load_rows(sweeps / "fmnist-quench")
    if not rows:
        return
    from matplotlib.figure import Figure

    from spherevae.plots.figure import save_figure

    print("### Quench-then-anneal vs constant beta: replica angle (rad) of the test means per epoch\n")
    curves = {}
    for r in rows:
        lines = RunLayout(run_dir(sweeps / "fmnist-quench", r)).metrics.read_text().splitlines()
        curves[r["name"]] = [json.loads(line) for line in lines]
    epochs = max(len(c) for c in curves.values())
    print("| run | " + " | ".join(f"epoch {e}" for e in range(epochs)) + " | final eval replica angle | FID vMF | RMSE % |")
    print("|---|" + "---|" * (epochs + 3))
    final = {r["name"]: r for r in rows}
    for name, c in sorted(curves.items()):
        cells = [f"{e['test_replica_angle_mean']:.3f} (x{e['multiplier']:.1f})" for e in c]
        r = final[name]
        print(f"| {name} | " + " | ".join(cells) + f" | {fmt(r['replica_angle_mean'])} | "
              f"{mean_std(seed_values(r, r['_headline_key']))} | {fmt(r['rmse_percent'])} |")
    print("\n(x m): the schedule's latent-pressure multiplier in that epoch. FID vMF: vs reconstructions, "
          "mean ± std over the feature networks.\n")
    quench_samplers(rows)
    fig = Figure(figsize=(6, 4), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    for name, c in sorted(curves.items()):
        ax.plot([e["epoch"] for e in c], [e["test_replica_angle_mean"] for e in c],
                "-" if name.startswith("quench") else "--", marker="o", label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("replica angle of test means (rad)")
    ax.set_title("quench (x(sqrt(e)+1) for epochs 0-2) vs constant beta")
    ax.legend(fontsize=7)
    save_figure(fig, figures / "quench-replica-angle.png")


QUENCH_SAMPLERS = ("vmf", "gaussian_sphere", "esag", "gaussian")


def quench_samplers(rows: list[dict[str, Any]]) -> None:
    """Every sampler of the quench sweep per run (FID vs reconstructions, mean ± std over
    the feature networks; ESAG precision / recall vs the test set), then quench vs constant
    over every (training seed, network) value, against both references."""
    print("**Every sampler** (FID vs reconstructions, mean ± std over the feature networks; ESAG precision / "
          "recall in feature network 0)\n")
    print("| run | vMF | projected normal | ESAG | Gaussian (unprojected) | ESAG precision / recall vs recon "
          "| vs test | tangent eff. dim |")
    print("|---|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (r["variant"], r.get("train.seed", 0))):
        fids = " | ".join(mean_std(seed_values(r, fid_key(name))) for name in QUENCH_SAMPLERS)
        print(f"| {r['variant']}, seed {r.get('train.seed', 0)} | {fids} | {fmt(r.get('precision_domain_esag_recon'), 2)} / "
              f"{fmt(r.get('recall_domain_esag_recon'), 2)} | {fmt(r.get('precision_domain_esag'), 2)} / "
              f"{fmt(r.get('recall_domain_esag'), 2)} | {fmt(r.get('tangent_effective_dim'), 2)} |")
    print()
    quench_rows = [r for r in rows if r["variant"] == "quench"]
    constant_rows = [r for r in rows if r["variant"] == "constant"]
    for ref, ref_label in (("recon", "vs reconstructions"), ("test", "vs real test set")):
        for name in QUENCH_SAMPLERS:
            comparison(f"quench vs constant, {name}, {ref_label}", quench_rows, fid_key(name, ref),
                       constant_rows, fid_key(name, ref))
    print()


def variant_seed_cv(rows: list[dict[str, Any]], variants: tuple[str, ...], names: tuple[str, ...], ref: str) -> float:
    """The largest CV over training seeds, per feature network and (variant, n, beta), of the
    FIDs of samplers ``names`` (against ``ref``) among the runs of ``variants`` in ``rows``
    (0 without seeds)."""
    groups: dict[tuple[str, Any, Any], list[dict[str, Any]]] = {}
    for r in rows:
        if r["variant"] in variants:
            groups.setdefault((r["variant"], r.get("model.latent_dim"), r.get("objective.beta")), []).append(r)
    cvs = []
    for rs in groups.values():
        for name in names:
            per_run = [vs for r in rs if (vs := seed_values(r, fid_key(name, ref)))]
            if len(per_run) > 1:
                cvs += [c for net in zip(*per_run, strict=True) if (c := cv(list(net))) is not None]
    return max(cvs, default=0.0)


def one_seed_point(r: dict[str, Any], key: str, seed_cv: float) -> tuple[float, float] | None:
    """A one-training-seed run's FID ``key``: the mean over the feature networks and its
    spread (network std and ``seed_cv`` of the mean in quadrature, as a Fig 2 point)."""
    values = seed_values(r, key)
    return (statistics.mean(values), point_spread(values, 1, seed_cv)) if values else None


def pm(point: tuple[float, float] | None) -> str:
    """``mean ± spread``, 3 and 2 significant digits, no exponent notation."""
    if point is None:
        return "-"
    m, s = point
    return f"{fmt(m)} ± {s:.2g}" if s < 100 else f"{fmt(m)} ± {s:.0f}"


def paired_cells(a: tuple[float, float] | None, b: tuple[float, float] | None) -> str:
    """``a | b | verdict``: each mean ± spread, which is lower, and whether ±2 spreads separate."""
    if a is None or b is None:
        return f"{pm(a)} | {pm(b)} | -"
    lower = "paper" if a[0] < b[0] else "authors"
    verdict = f"{lower} lower, " + ("separated" if separated(a, b) else "not separated")
    return f"{pm(a)} | {pm(b)} | {verdict}"


def authors(sweeps: Path) -> None:
    """Paper equations vs the authors' objective at the Fig 2 grid points (seed 0 both):
    FIDs over the feature networks with the one-seed spread of the Fig 1 runs' training seeds."""
    rows = load_rows(sweeps / "fmnist-authors")
    fig1_rows = load_rows(sweeps / "fmnist-fig1")
    paper = {(r["model.latent_dim"], r["objective.beta"]): r for r in load_rows(sweeps / "fmnist-fig2")
             if r["variant"] == "compressed"}
    # fig1's compressed seed-0 run is the same run as fig2's (n = 128, beta = 1.0) point.
    paper.update({(r["model.latent_dim"], r["objective.beta"]): r for r in fig1_rows
                  if r["variant"] == "compressed" and r.get("train.seed") == 0})
    if not rows:
        return
    two_seed_fig2 = fig2_rows(sweeps)
    for ref, ref_label in (("recon", "vs reconstructions"), ("test", "vs the real test set")):
        # Fig 2's one-seed rule (the same compressed point gets the same spread in both
        # tables), widened by the authors' runs' own training-seed CV in Fig 1.
        seed_cv = max(training_seed_cv(fig1_rows, ref), training_seed_cv(two_seed_fig2, ref),
                      variant_seed_cv(fig1_rows, ("authors",), ("vmf", "gaussian_sphere"), ref))
        print(f"### Paper equations (`compressed`) vs the authors' code (`authors`), same grid points, FID {ref_label}\n")
        print(f"FID: mean over the three feature networks ± the one-seed spread (network std and {seed_cv:.1%} of the "
              "mean in quadrature: Fig 2's training-seed CV, or the authors' runs' in Fig 1 where larger); "
              "separated = ±2 spreads do not overlap.\n")
        print("| n | beta | paper RMSE % | authors RMSE % | paper FID vMF | authors FID vMF | vMF | paper FID projected normal "
              "| authors FID projected normal | projected normal | paper replica angle | authors replica angle |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in sorted(rows, key=lambda r: (r["model.latent_dim"], -r["objective.beta"])):
            p = paper.get((r["model.latent_dim"], r["objective.beta"]), {})
            cells = [paired_cells(one_seed_point(p, fid_key(name, ref), seed_cv) if p else None,
                                  one_seed_point(r, fid_key(name, ref), seed_cv))
                     for name in ("vmf", "gaussian_sphere")]
            print(f"| {r['model.latent_dim']} | {r['objective.beta']} | {fmt(p.get('rmse_percent'))} | {fmt(r['rmse_percent'])} | "
                  f"{cells[0]} | {cells[1]} | {fmt(p.get('replica_angle_mean'))} | {fmt(r['replica_angle_mean'])} |")
        print()


# Every section of docs/results.md's tables, in the order of the document; each prints
# nothing when its sweep is absent.
SECTIONS: dict[str, Callable[[Path, Path], None]] = {
    "fig1": fig1,
    "fig1-ensembles": fig1_ensembles,
    "ablation": lambda sweeps, figures: ablation(sweeps),
    "fig1-long": fig1_long,
    "fig2": fig2,
    "beta-regimes": lambda sweeps, figures: beta_regimes(sweeps),
    "collapse": lambda sweeps, figures: collapse_all_n(sweeps),
    "quench": quench,
    "authors": lambda sweeps, figures: authors(sweeps),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sweeps", default="sweeps")
    p.add_argument("--figures", default="docs/figures/results")
    p.add_argument("--only", nargs="+", choices=list(SECTIONS), default=None,
                   help="print only these sections (default: every one, in this order)")
    args = p.parse_args()
    torch.set_num_threads(1)
    sweeps, figures = Path(args.sweeps), Path(args.figures)
    figures.mkdir(parents=True, exist_ok=True)
    for name in args.only or SECTIONS:
        SECTIONS[name](sweeps, figures)


if __name__ == "__main__":
    main()
