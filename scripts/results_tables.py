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
import shutil
import statistics
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
        r[HEADLINE] = r.get(fid_key(paper_sampler(run)),
                            r.get(metric_key("headline_fid_recon", backbone=BACKBONE)))
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


def fid_gauss(r: dict[str, Any]) -> float | None:
    """FID of the model's own Gaussian fit: the projected normal on the sphere for the
    compressed/authors models, the plain Gaussian for the standard one (since the sweeps
    evaluate every sampler on every model, both keys exist in every row)."""
    own = "gaussian" if r.get("variant") == "standard" else "gaussian_sphere"
    return r.get(fid_key(own), r.get(fid_key("gaussian")))


_collapse_cache: dict[str, dict[str, int]] = {}


def collapse(run_dir: Path) -> dict[str, int]:
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
             if i is not None and i.template == KEYS["fid_recon"] and i.backbone == BACKBONE}
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
    diagnostics_table("Why: latent geometry and the decoder's sensitivity (Fig 1 runs)", rows)
    figures.mkdir(parents=True, exist_ok=True)
    for variant in VARIANTS:
        seed0 = next((r for r in rows if r["variant"] == variant and r.get("train.seed") == 0), None)
        if seed0 is not None:
            copy_eval_figures(sweeps / "fmnist-fig1", seed0, ("samples", "samples_by_sampler", "sphere_projection", "tsne",
                                                              "latent_histograms", "interpolation", "latent_spectrum"),
                              figures, f"fig1-{variant}")


def ablation(sweeps: Path) -> None:
    """The printed 1/sqrt(k+1) profile vs o_k, paired by seed with the Fig 1 runs."""
    printed = load_rows(sweeps / "fmnist-ablation-profile")
    if not printed:
        return
    true = {(r["variant"], r.get("train.seed")): r for r in load_rows(sweeps / "fmnist-fig1")}
    print("### Ablation: the all-ones profile as printed (1/sqrt(k+1)) vs o_k = 1/sqrt(n-k+1), n = 128\n")
    print("| objective | profile | seed | RMSE % | replica angle | tangent eff. dim | sigma: max (dim) / median / dims > 10x median "
          "| FID vMF | FID gaussian_sphere | FID esag | FID vmf_mixture |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in sorted(printed, key=lambda r: (r["variant"], r.get("train.seed", 0))):
        objective = r["variant"].replace("-printed", "")
        for label, row in (("printed", r), ("o_k", true.get((objective, r.get("train.seed"))))):
            if row is None:
                continue
            print(f"| {objective} | {label} | {r.get('train.seed')} | {fmt(row.get('rmse_percent'))} | {fmt(row.get('replica_angle_mean'))} | "
                  f"{fmt(row.get('tangent_effective_dim'))} | {sigma_summary(row)} | {fmt(row.get(fid_key('vmf')))} | "
                  f"{fmt(row.get(fid_key('gaussian_sphere')))} | {fmt(row.get(fid_key('esag')))} | "
                  f"{fmt(row.get(fid_key('vmf_mixture')))} |")
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
    diagnostics_table("Latent geometry, 40-epoch runs", rows)


def dominated(point: tuple[float, float], others: list[tuple[float, float]]) -> bool:
    return any(o[0] <= point[0] and o[1] <= point[1] and o != point for o in others)


def fig2_rows(sweeps: Path) -> list[dict[str, Any]]:
    """Every Fig 2 grid point of every seed: fmnist-fig2 (seed 0), fmnist-fig2-seed1, and
    the n = 128 seed-1 points that fmnist-beta-regimes already holds (same base config)."""
    rows = [{**r, "train.seed": r.get("train.seed", 0)} for r in load_rows(sweeps / "fmnist-fig2")]
    rows += load_rows(sweeps / "fmnist-fig2-seed1")
    rows += [r for r in load_rows(sweeps / "fmnist-beta-regimes") if r["model.latent_dim"] == 128]
    return rows


def pareto_summary(label: str, points: list[tuple[float, float, str, str]]) -> None:
    """Print the joint Pareto front and the domination counts of (rmse, fid, variant, name) points."""
    pts = {v: [p[:2] for p in points if p[2] == v] for v in ("standard", "compressed")}
    free = [p for p in pts["compressed"] if not dominated(p, pts["standard"])]
    free_s = [p for p in pts["standard"] if not dominated(p, pts["compressed"])]
    front = sorted((p for p in points if not dominated(p[:2], [q[:2] for q in points])), key=lambda p: p[0])
    print(f"- {label}: joint Pareto front (s = standard, c = compressed), by RMSE: "
          + ", ".join(f"{p[3]} ({p[0]:.2f}%, {p[1]:.1f})" for p in front)
          + f" ({sum(p[2] == 'compressed' for p in front)} of {len(front)} compressed)")
    print(f"- {label}: {len(free)} of {len(pts['compressed'])} compressed points are not dominated by any "
          f"standard point (lower-or-equal RMSE and FID); {len(free_s)} of {len(pts['standard'])} standard "
          "points are not dominated by any compressed point.")


def fig2(sweeps: Path, figures: Path) -> None:
    rows = fig2_rows(sweeps)
    if not rows:
        return
    from spherevae.plots.figure import save_figure
    from spherevae.report.plane import mse_fid_plane

    seeds = sorted({r["train.seed"] for r in rows})
    print(f"### Fig 2: the MSE-FID plane (seeds {', '.join(map(str, seeds))}: mean ± std; 6 epochs of 15k images)\n")
    print("| n | beta | seeds | standard RMSE % | standard FID prior | standard FID Gaussian fit | compressed RMSE % | compressed FID vMF | compressed FID Gaussian fit on sphere | compressed FID ESAG |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    groups: dict[tuple[str, int, float], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["variant"], r["model.latent_dim"], r["objective.beta"]), []).append(r)

    def values(key: tuple[str, int, float], get) -> list[float]:
        return [v for v in (get(r) for r in groups.get(key, [])) if v is not None]

    headline = lambda r: r.get(HEADLINE)  # noqa: E731
    rmse = lambda r: r.get("rmse_percent")  # noqa: E731
    esag = lambda r: fid_gauss(r) if r["variant"] == "standard" else r.get(fid_key("esag"))  # noqa: E731
    for n in sorted({r["model.latent_dim"] for r in rows}):
        for beta in sorted({r["objective.beta"] for r in rows}, reverse=True):
            s, c = ("standard", n, beta), ("compressed", n, beta)
            k = min(len(groups.get(s, [])), len(groups.get(c, [])))
            print(f"| {n} | {beta} | {k} | {mean_std(values(s, rmse))} | {mean_std(values(s, headline))} | "
                  f"{mean_std(values(s, fid_gauss))} | {mean_std(values(c, rmse))} | {mean_std(values(c, headline))} | "
                  f"{mean_std(values(c, fid_gauss))} | {mean_std(values(c, esag))} |")
    print()
    for label, getter, tag, short in (
        ("headline sampler (standard: prior, compressed: vMF)", headline, "headline", "prior / vMF"),
        ("Gaussian fits (standard: gaussian, compressed: gaussian_sphere)", fid_gauss, "gaussian", "Gaussian fits"),
        ("covariance-aware fits (standard: gaussian, compressed: esag)", esag, "esag", "Gaussian / ESAG"),
    ):
        plane = []
        for variant, n, beta in sorted(groups):
            fids = values((variant, n, beta), getter)
            if fids:
                plane.append({"n": n, "beta": beta, "objective": variant,
                              "mse": statistics.mean(values((variant, n, beta), rmse)), "fid": statistics.mean(fids)})
        pareto_summary(f"{label}, seed means",
                       [(p["mse"], p["fid"], p["objective"], f"{p['objective'][0]} n={p['n']} b={p['beta']}") for p in plane])
        for seed in seeds:
            pareto_summary(f"{label}, seed {seed} alone",
                           [(r["rmse_percent"], getter(r), r["variant"],
                             f"{r['variant'][0]} n={r['model.latent_dim']} b={r['objective.beta']}")
                            for r in rows if r["train.seed"] == seed and getter(r) is not None])
        save_figure(mse_fid_plane(plane, fid_label=f"FID (domain features), {short}, seed mean",
                                  mse_label="RMSE (% of range), seed mean"),
                    figures / f"fig2-mse-fid-{tag}.png")
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
        print(f"| {name} | " + " | ".join(cells) + f" | {fmt(r['replica_angle_mean'])} | {fmt(r[HEADLINE])} | "
              f"{fmt(r['rmse_percent'])} |")
    print("\n(x m): the schedule's latent-pressure multiplier in that epoch.\n")
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


def authors(sweeps: Path) -> None:
    rows = load_rows(sweeps / "fmnist-authors")
    paper = {(r["model.latent_dim"], r["objective.beta"]): r for r in load_rows(sweeps / "fmnist-fig2")
             if r["variant"] == "compressed"}
    # fig1's compressed seed-0 run is the same run as fig2's (n = 128, beta = 1.0) point.
    paper.update({(r["model.latent_dim"], r["objective.beta"]): r for r in load_rows(sweeps / "fmnist-fig1")
                  if r["variant"] == "compressed" and r.get("train.seed") == 0})
    if not rows:
        return
    print("### Paper equations (`compressed`) vs the authors' code (`authors`), same grid points\n")
    print("| n | beta | paper RMSE % | authors RMSE % | paper FID vMF | authors FID vMF | paper FID Gaussian fit | authors FID Gaussian fit | paper replica angle | authors replica angle |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (r["model.latent_dim"], -r["objective.beta"])):
        p = paper.get((r["model.latent_dim"], r["objective.beta"]), {})
        print(f"| {r['model.latent_dim']} | {r['objective.beta']} | {fmt(p.get('rmse_percent'))} | {fmt(r['rmse_percent'])} | "
              f"{fmt(p.get(HEADLINE))} | {fmt(r[HEADLINE])} | {fmt(fid_gauss(p))} | {fmt(fid_gauss(r))} | "
              f"{fmt(p.get('replica_angle_mean'))} | {fmt(r['replica_angle_mean'])} |")
    print()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sweeps", default="sweeps")
    p.add_argument("--figures", default="docs/figures/results")
    args = p.parse_args()
    torch.set_num_threads(1)
    sweeps, figures = Path(args.sweeps), Path(args.figures)
    figures.mkdir(parents=True, exist_ok=True)
    fig1(sweeps, figures)
    ablation(sweeps)
    fig1_long(sweeps, figures)
    fig2(sweeps, figures)
    beta_regimes(sweeps)
    collapse_all_n(sweeps)
    quench(sweeps, figures)
    authors(sweeps)


if __name__ == "__main__":
    main()
