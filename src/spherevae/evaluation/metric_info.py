"""What each key of ``eval/metrics.json`` is called and means.

:data:`KEYS` is the one spelling of every key that has parts (a backbone, a sampler, a
noise scale, k): :func:`metric_key` builds a key from it (evaluation, experiments, the
report and ``scripts/results_tables.py`` all use it), and :data:`METRICS`, the registry
of described metrics (group, one-line description, which side is better) is keyed by
the same templates, so a key is spelled once and a metric is described once.

Keys that carry a backbone and a sampler (``fid_domain_vmf_recon``) are matched by
pattern: :func:`describe` returns a :class:`MetricInfo` with the parts filled in. The
headline aliases ``fid_<backbone>_recon`` / ``fid_<backbone>_test`` (each run's *main*
sampler, which differs between objectives) are deliberately not described: a row that
compares them would set a prior FID beside a vMF FID. Compare the per-sampler rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

__all__ = [
    "GROUPS",
    "KEYS",
    "METRICS",
    "SPREAD_SUFFIXES",
    "MetricInfo",
    "applies",
    "better",
    "comparable_keys",
    "describe",
    "format_table",
    "metric_key",
]

# ``K + suffix`` is the spread of metric ``K`` when present (issue 22's convention): a std over
# feature-network seeds or a bootstrap, or KID's standard error.
SPREAD_SUFFIXES: tuple[str, ...] = ("_std", "_se")

# Display order of the groups in tables.
GROUPS: tuple[str, ...] = ("reconstruction", "generation", "latent geometry")

# name -> template of a metrics.json key. Parts: {backbone} (a key of
# spherevae.evaluation.features.FEATURE_BACKBONES), {sampler} (a key of spherevae.distributions.samplers.SAMPLERS),
# {scale} (a tangent-noise scale, written with ``:g``), {k} (neighbours), {stat} (a
# collapse_stats entry). The headline keys hold each run's *main* sampler. Spreads: a key
# K of an FID has K + "_std" (over feature seeds or a bootstrap, metrics["fid_spread"]),
# a KID key K + "_se" (its standard error over subsets).
KEYS: dict[str, str] = {
    "fid_recon": "fid_{backbone}_{sampler}_recon",
    "fid_test": "fid_{backbone}_{sampler}_test",
    "kid_recon": "kid_{backbone}_{sampler}_recon",
    "precision": "precision_{backbone}_{sampler}",
    "recall": "recall_{backbone}_{sampler}",
    "headline_fid_recon": "fid_{backbone}_recon",
    "headline_fid_test": "fid_{backbone}_test",
    "fid_reconstruction_vs_test": "fid_{backbone}_reconstruction_vs_test",
    "tangent_noise_fid": "tangent_noise_fid_{backbone}_{scale}x",
    "tangent_noise_rmse": "tangent_noise_rmse_percent_{scale}x",
    "knn_accuracy": "knn_accuracy_k{k}",
    "precision_recon": "precision_{backbone}_{sampler}_recon",
    "recall_recon": "recall_{backbone}_{sampler}_recon",
    "density": "density_{backbone}_{sampler}",
    "coverage": "coverage_{backbone}_{sampler}",
    "density_recon": "density_{backbone}_{sampler}_recon",
    "coverage_recon": "coverage_{backbone}_{sampler}_recon",
    "feature_accuracy": "feature_test_accuracy_{backbone}",
    "feature_effective_dim": "feature_effective_dim_{backbone}",
    "feature_dead_units": "feature_dead_units_{backbone}",
    "collapse": "collapse_{stat}",
}

_FIELD = re.compile(r"\{(\w+)\}")


def metric_key(name: str, **parts: object) -> str:
    """The metrics.json key ``name`` (a key of :data:`KEYS`) with its parts filled in, e.g.
    ``metric_key("fid_recon", backbone="domain", sampler="vmf") == "fid_domain_vmf_recon"``.
    Float parts are written with ``:g`` (``0.5`` -> ``"0.5"``, ``1.0`` -> ``"1"``).
    Every part of the template must be given, and no other."""
    if name not in KEYS:
        raise ValueError(f"metric key name must be one of {sorted(KEYS)}, got {name!r}")
    template = KEYS[name]
    needed = set(_FIELD.findall(template))
    if set(parts) != needed:
        raise ValueError(f"metric key {name!r} ({template}) needs parts {sorted(needed)}, got {sorted(parts)}")
    return template.format(**{k: f"{v:g}" if isinstance(v, float) else v for k, v in parts.items()})


# How each part of a template matches inside a key (samplers may hold underscores).
_PART_PATTERNS = {"backbone": r"[a-z0-9-]+", "sampler": r"[a-z0-9_]+?", "k": r"\d+",
                  "scale": r"[0-9.e+-]+", "stat": r"[a-z0-9_]+"}


def _pattern(template: str) -> str:
    """A template of :data:`KEYS` (or a plain key) as a full-match regex with named groups."""
    pieces = _FIELD.split(template)  # literal, field, literal, field, ...
    return "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>{_PART_PATTERNS[p]})"
                   for i, p in enumerate(pieces))


@dataclass(frozen=True)
class MetricInfo:
    """``direction``: ``"lower"``, ``"higher"`` or ``None`` (no better side: a diagnostic).
    ``label`` and ``description`` may hold ``{backbone}``/``{sampler}``/``{k}`` fields,
    filled by :func:`describe`. ``order`` sorts rows inside a group. ``unit`` is the row's
    unit or scale, said beside every value; ``objectives`` names the objectives (prefixes of
    ``objective.name``) the metric is meaningful for, None for all: elsewhere it is "not
    applicable" and never compared."""

    group: str
    label: str
    description: str
    direction: str | None
    unit: str = ""
    objectives: tuple[str, ...] | None = None
    order: int = 0
    sampler: str | None = None
    backbone: str | None = None
    template: str = ""


# key template (a value of KEYS, or a plain key) -> info. Order in this dict is the display
# order inside a group. Templates not listed (headline aliases, tangent noise) are not described.
METRICS: dict[str, MetricInfo] = {
    "rmse_percent": MetricInfo(
        "reconstruction", "RMSE (% of range)",
        "root mean squared error of the test reconstructions, in % of the pixel range", "lower", "% of pixel range"),
    "mse_sum": MetricInfo(
        "reconstruction", "MSE per image (summed)",
        "squared error summed over pixels, mean over test images (the loss's scale)", "lower", "sum over pixels, pixels in [0, 1]"),
    KEYS["fid_reconstruction_vs_test"]: MetricInfo(
        "reconstruction", "FID {backbone}: reconstructions vs test",
        "FID of the reconstructed test set against the real one: how much the decoder blurs",
        "lower", "Fréchet distance, {backbone} features"),
    KEYS["fid_recon"]: MetricInfo(
        "generation", "FID {backbone} vs recon, {sampler}",
        "FID of {sampler} samples against the reconstructed test set (the paper's protocol)",
        "lower", "Fréchet distance, {backbone} features"),
    KEYS["fid_test"]: MetricInfo(
        "generation", "FID {backbone} vs test, {sampler}",
        "FID of {sampler} samples against the real test set", "lower", "Fréchet distance, {backbone} features"),
    KEYS["kid_recon"]: MetricInfo(
        "generation", "KID {backbone} vs recon, {sampler}",
        "kernel inception distance of {sampler} samples against the reconstructions (unbiased, "
        "usable on small sets)", "lower", "unbiased MMD², cubic kernel, raw (not ×10³)"),
    KEYS["precision"]: MetricInfo(
        "generation", "precision {backbone}, {sampler}",
        "fraction of {sampler} samples inside the manifold of real test features (fidelity)",
        "higher", "fraction, 0-1"),
    KEYS["recall"]: MetricInfo(
        "generation", "recall {backbone}, {sampler}",
        "fraction of real test features inside the manifold of {sampler} samples (coverage)",
        "higher", "fraction, 0-1"),
    KEYS["knn_accuracy"]: MetricInfo(
        "latent geometry", "k-NN accuracy (k={k})",
        "class accuracy of a {k}-nearest-neighbour vote in latent space (test vs train latents)",
        "higher", "fraction, 0-1"),
    metric_key("collapse", stat="collapsed_cartesian"): MetricInfo(
        "latent geometry", "collapsed dims (Cartesian)",
        "latent dimensions whose mean barely varies over the data (std < 5% of the mean std)",
        "lower", "dimensions"),
    metric_key("collapse", stat="collapsed_cos_phi"): MetricInfo(
        "latent geometry", "collapsed angles (cos φ)",
        "hyperspherical angles whose cosine barely varies over the data (A.6-A.7)", "lower", "angles"),
    metric_key("collapse", stat="collapsed_kl"): MetricInfo(
        "latent geometry", "collapsed dims (KL < 0.01 nats)",
        "dimensions whose posterior equals the N(0, 1) prior; a compressed model has no such "
        "prior, so it does not apply there", "lower", "dimensions", objectives=("standard",)),
    "replica_angle_mean": MetricInfo(
        "latent geometry", "replica angle, mean (rad)",
        "angle between each test latent and the mean latent (A.8); π/2 is an isotropic cloud",
        None, "rad"),
    "replica_angle_std": MetricInfo(
        "latent geometry", "replica angle, std (rad)",
        "spread of that angle over the test set", None, "rad"),
    "tangent_effective_dim": MetricInfo(
        "latent geometry", "effective spread dimension",
        "directions the latents really spread along around their mean direction (a vMF uses "
        "all n-1)", None, "dimensions"),
    "tangent_top_fraction": MetricInfo(
        "latent geometry", "top direction's share of spread",
        "largest eigenvalue over the sum in the tangent space (1: one direction)", None, "fraction, 0-1"),
}

METRICS.update({
    KEYS["precision_recon"]: MetricInfo(
        "generation", "precision {backbone} vs recon, {sampler}",
        "fraction of {sampler} samples inside the manifold of the reconstructed test set's "
        "features (fidelity to what the decoder can make)", "higher"),
    KEYS["recall_recon"]: MetricInfo(
        "generation", "recall {backbone} vs recon, {sampler}",
        "fraction of reconstructed test features inside the manifold of {sampler} samples", "higher"),
    KEYS["density"]: MetricInfo(
        "generation", "density {backbone}, {sampler}",
        "Naeem et al. 2020: mean number of real test k-NN balls (k=5) holding a {sampler} sample, "
        "over k (fidelity; ~1 for samples distributed as the data)", None),
    KEYS["coverage"]: MetricInfo(
        "generation", "coverage {backbone}, {sampler}",
        "Naeem et al. 2020: fraction of real test k-NN balls (k=5) holding a {sampler} sample "
        "(diversity)", "higher"),
    KEYS["density_recon"]: MetricInfo(
        "generation", "density {backbone} vs recon, {sampler}",
        "density of {sampler} samples against the reconstructed test set", None),
    KEYS["coverage_recon"]: MetricInfo(
        "generation", "coverage {backbone} vs recon, {sampler}",
        "coverage of the reconstructed test set by {sampler} samples", "higher"),
    KEYS["feature_accuracy"]: MetricInfo(
        "generation", "feature network {backbone}: test accuracy",
        "accuracy of the feature network's own classifier head on the real test set", None),
    KEYS["feature_effective_dim"]: MetricInfo(
        "generation", "feature network {backbone}: effective dim",
        "participation ratio of the covariance of the test features (a 10-class simplex alone "
        "gives 9)", None),
    KEYS["feature_dead_units"]: MetricInfo(
        "generation", "feature network {backbone}: dead units",
        "features whose std over the test set is below 1e-6", None),
})

_COMPILED = [(re.compile(_pattern(t)), t, i, info) for i, (t, info) in enumerate(METRICS.items())]
# Matching tries the most specific template first (most literal characters): a key such as
# precision_domain_vmf_recon is the _recon template's, not a sampler called "vmf_recon".
_MATCH_ORDER = sorted(_COMPILED, key=lambda c: -len(_FIELD.sub("", c[1])))


def describe(key: str) -> MetricInfo | None:
    """The :class:`MetricInfo` of a metrics.json key with its fields filled in, or ``None``
    for keys that are not a comparable metric (counts, options, headline aliases)."""
    if key.endswith(SPREAD_SUFFIXES):  # a spread of a metric, not a metric
        return None
    for pattern, template, order, info in _MATCH_ORDER:
        m = pattern.fullmatch(key)
        if m is None:
            continue
        parts = m.groupdict()
        return replace(
            info,
            label=info.label.format(**parts),
            description=info.description.format(**parts),
            unit=info.unit.format(**parts),
            order=order,
            sampler=parts.get("sampler"),
            backbone=parts.get("backbone"),
            template=template,
        )
    return None


def applies(info: MetricInfo, objective: str | None) -> bool:
    """Whether the metric is meaningful for a run of ``objective`` (``objective.name``)."""
    return info.objectives is None or objective is None or str(objective).startswith(info.objectives)


def better(values: list[float | None], direction: str | None) -> set[int]:
    """Indices of the best value(s) in ``values`` (``None`` = missing) for ``direction``;
    empty when there is no direction, fewer than two values, or all values are equal
    (nothing stands out)."""
    present = [(i, v) for i, v in enumerate(values) if v is not None and v == v]  # drop NaN
    if direction not in ("lower", "higher") or len(present) < 2:
        return set()
    pick = min if direction == "lower" else max
    best = pick(v for _, v in present)
    marked = {i for i, v in present if v == best}
    return set() if len(marked) == len(present) else marked


def comparable_keys(metrics_by_run: dict[str, dict[str, object]]) -> dict[str, list[str]]:
    """group -> the described numeric keys any run has, in registry then sampler order."""
    infos: dict[str, MetricInfo] = {}
    for metrics in metrics_by_run.values():
        for key, value in metrics.items():
            info = describe(key)
            if info is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
                infos.setdefault(key, info)
    out: dict[str, list[str]] = {g: [] for g in GROUPS}
    for key, info in sorted(infos.items(), key=lambda kv: (kv[1].order, kv[1].sampler or "", kv[0])):
        out.setdefault(info.group, []).append(key)
    return {g: keys for g, keys in out.items() if keys}


def format_table(metrics_by_run: dict[str, dict[str, object]]) -> str:
    """A plain-text table, grouped, one row per described metric, one column per run;
    ``*`` marks the best value of a row, the last column says which side is better."""
    names = list(metrics_by_run)
    groups = comparable_keys(metrics_by_run)
    labels = {k: describe(k).label for keys in groups.values() for k in keys}  # type: ignore[union-attr]
    width = max([len(v) for v in labels.values()] + [12]) + 2
    colw = max([len(n) for n in names] + [10]) + 2
    lines = ["".ljust(width) + "".join(n.rjust(colw) for n in names) + "  better"]
    for group, keys in groups.items():
        lines.append(f"-- {group}")
        for key in keys:
            info = describe(key)
            assert info is not None
            values = [metrics_by_run[n].get(key) for n in names]
            nums = [float(v) if isinstance(v, (int, float)) else None for v in values]
            best = better(nums, info.direction)
            cells = [("" if v is None else f"{v:.4g}" + ("*" if i in best else " ")).rjust(colw)
                     for i, v in enumerate(nums)]
            lines.append(labels[key].ljust(width) + "".join(cells) + f"  {info.direction or '-'}")
    return "\n".join(lines)
