"""Evaluate a trained run: reconstruction, generation (FID), latent analysis, figures.

``evaluate_run(run_dir)`` loads the run's model and dataset, encodes the test set,
fits the samplers to the test latents (the paper's protocol for the vMF), decodes
``num_samples`` samples per sampler and measures, per sampler, the FID against the
*reconstructed* test set (the paper's protocol) and against the real test set.
It also measures k-NN accuracy on the latents, posterior collapse, the replica
angle, and draws every figure. Results go to ``RUN_DIR/eval/metrics.json`` and
``RUN_DIR/eval/*.png``.

Stages. The work is a sequence of named stages (:data:`PIPELINE`), each a function of
one :class:`EvalContext` that reads what earlier stages put there and adds its own
results (``ctx.metrics`` and the fields its docstring names): :func:`encode`,
:func:`fit_samplers`, :func:`generate`, :func:`generation_metrics` (FID, KID,
precision/recall per sampler), :func:`latent_geometry`, :func:`tangent_noise_fids`,
:func:`~spherevae.evaluation.figures.draw_figures`. ``evaluate_run`` is :func:`load_context` followed by the pipeline;
any stage can be run alone on a context built by hand (any model with ``encode`` and
``decode``, any uint8 test images), after the stages it needs.

Conventions, stated once:

- Test latents are the encoder means ``mu`` (projected to radius sqrt(n) when the
  model projects z), never sampled z.
- The reconstruction of the test set decodes those latents (deterministic).
- Metric names come from :func:`spherevae.evaluation.metric_info.metric_key` and carry the FID
  backbone and the reference set: ``fid_<backbone>_<sampler>_recon`` and
  ``fid_<backbone>_<sampler>_test``; the headline ``fid_<backbone>_recon`` uses the run's
  main sampler (``prior`` for the standard VAE, ``vmf`` for the compressed one, as in
  the paper). Every sampler also gets ``precision_<backbone>_<sampler>`` and
  ``recall_<backbone>_<sampler>`` (vs test).
- Which samplers: :func:`samplers_for`: the objective's ``default_samplers`` (its main
  sampler and the prior of its latent space, :mod:`spherevae.training.objectives`) and every
  fitted sampler of the registry ``spherevae.distributions.samplers.SAMPLERS``; no other list exists.
  With an explicit list (``samplers=``), those, the objective's own among them first (so
  each objective keeps its paper sampler as the headline).
- Randomness is seeded per stage from ``seed`` and a name (:func:`stage_generator`):
  each sampler draws from its own generator, so adding a sampler or running a stage
  alone leaves the others' draws unchanged.
- Diagnostics that explain generation (docs/evaluation.md): ``sigma_per_dim`` and its
  summary, ``tangent_spectrum`` (its participation ratio is ``tangent_effective_dim``)
  and the decoder's sensitivity to isotropic tangent noise,
  ``tangent_noise_fid_<backbone>_<c>x`` for ``c`` in :data:`TANGENT_NOISE_SCALES`.
- Domain-feature FIDs are not comparable to published Inception FIDs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spherevae.data.fingerprint import check_fingerprint, data_fingerprint
from spherevae.evaluation.context import (
    EvalConfig,
    EvalContext,
    add_warning,
    check_sample_memory,
    decode_images,
    fid_unavailable,
    silent,
    stage_generator,
    stage_result,
)
from spherevae.evaluation.fid import FID
from spherevae.evaluation.figures import draw_figures
from spherevae.evaluation.metric_info import metric_key
from spherevae.geometry.coordinates import sphere_radius
from spherevae.io.files import atomic_write_json
from spherevae.io.layout import RunLayout
from spherevae.io.lock import RunReadLock
from spherevae.io.safe_read import check_run_output
from spherevae.models.inference import encode_dataset, sampler_latents

__all__ = [
    "PIPELINE",
    "TANGENT_NOISE_SCALES",
    "Stage",
    "encode",
    "evaluate_run",
    "fit_samplers",
    "generate",
    "generation_metrics",
    "latent_geometry",
    "load_context",
    "tangent_noise_fids",
]


_LOG = logging.getLogger("spherevae.evaluate")

# Tangent-noise scales, in units of the fitted vMF's per-direction std (decoder sensitivity).
TANGENT_NOISE_SCALES: tuple[float, ...] = (0.25, 0.5, 1.0)


# What each timed stage does, for the progress lines (a stage not listed logs its name).
_STAGE_TEXT = {
    "load": "loading the model and the dataset",
    "encode": "encoding and reconstructing the test set",
    "sample": "fitting the samplers and decoding samples",
    "fid": "FID, KID, precision/recall (feature extraction)",
    "latents": "k-NN accuracy, collapse, replica angle, tangent noise",
    "figures": "drawing the figures",
}


@contextlib.contextmanager
def _timed(timings: dict[str, float], name: str, log: Callable[[str], None]) -> Iterator[None]:
    """One progress line, ``[i/6] what the stage does``, then its wall time into ``timings``."""
    log(f"[{len(timings) + 1}/{len(_STAGE_TEXT)}] {_STAGE_TEXT.get(name, name)}")
    start = time.perf_counter()
    yield
    timings[name] = round(time.perf_counter() - start, 3)


def evaluate_run(run_dir: str | os.PathLike[str], *, allow_classes: Iterable[str | type] = (),
                 **options: Any) -> dict[str, Any]:
    """Evaluate the run in ``run_dir``; keyword options are :class:`EvalConfig` fields.

    Runs :func:`load_context` and then every stage of :data:`PIPELINE` (figures only if
    ``figures``), logs one progress line per stage, saves the fitted samplers under
    ``run_dir/samplers`` and returns the metrics dict, written to
    ``run_dir/eval/metrics.json`` after every stage group (a later failure keeps what
    was measured), with ``metrics["complete"]`` false until the last one has run. Figures
    come last, each on its own: one that fails (a full disk, a model its plot cannot draw)
    costs that figure and one warning. ``metrics["weights"]``
    and each sampler file record the weights (hash, epoch) they were made from.
    Holds the run's shared lock (:class:`spherevae.io.lock.RunReadLock`): never during a
    training of the run. ``allow_classes``: see :func:`spherevae.load` (a run of a user
    model).
    """
    opts = EvalConfig(**options)
    run_dir = Path(run_dir)
    layout = RunLayout(run_dir)
    for directory in (layout.eval_dir, layout.samplers_dir):  # before any work
        check_run_output(run_dir, directory)
    log: Callable[[str], None] = _LOG.info if opts.progress else silent
    timings: dict[str, float] = {}
    with RunReadLock(run_dir):
        with _timed(timings, "load", log):
            ctx = load_context(run_dir, opts, log=log, allow_classes=allow_classes)
            # Before any expensive stage: a size or a backbone that cannot work stops here.
            check_sample_memory(ctx)
            fid_unavailable(ctx)
        metrics = ctx.metrics
        metrics["weights"] = _made_from(run_dir)
        metrics["eval_options"] = {k: v for k, v in asdict(opts).items() if k != "progress"}
        metrics["timings_s"] = timings
        metrics["complete"] = False  # until every stage has run (sweeps redo incomplete ones)
        for name, stages in PIPELINE:
            if name == "figures" and not opts.figures:
                continue
            with _timed(timings, name, log):
                for stage in stages:
                    stage(ctx)
            if name == "sample":
                _save_samplers(ctx.fitted, layout, metrics["weights"])
            _write_metrics(layout, metrics)
        metrics["complete"] = True
        _write_metrics(layout, metrics)
    log(f"evaluate {run_dir}: done in {sum(timings.values()):.0f} s -> {layout.eval_metrics}")
    return metrics


def _made_from(run_dir: Path) -> dict[str, Any]:
    from spherevae.training.runs import weights_identity

    identity = weights_identity(run_dir)
    return {"sha256": identity["sha256"], "epoch": identity["epoch"]}


def _write_metrics(layout: RunLayout, metrics: dict[str, Any]) -> None:
    atomic_write_json(layout.eval_metrics, metrics, indent=2, sort_keys=True, default=_json_default)


def load_context(run_dir: str | os.PathLike[str], opts: EvalConfig | None = None, *,
                 log: Callable[[str], None] = silent,
                 allow_classes: Iterable[str | type] = ()) -> EvalContext:
    """The context of the run in ``run_dir``: its config and model (eval mode, on
    ``opts.device``), its dataset's test images (the first ``max_test``) and labels and
    its training split, checked against the run's data fingerprint (the one its weights
    carry) and image shape."""
    from spherevae.data import load_dataset
    from spherevae.models.vae import VAE
    from spherevae.training.runs import load_run

    opts = opts or EvalConfig()
    run_dir = Path(run_dir)
    _check_device(opts.device)
    cfg, model = load_run(run_dir, device=opts.device, allow_classes=allow_classes)
    model.eval()
    data_kw = {"root": cfg.data.root, "download": cfg.data.download, **cfg.data.options}
    test = load_dataset(cfg.data.name, "test", **data_kw)
    train = load_dataset(cfg.data.name, "train", **data_kw)
    _check_data(run_dir, cfg.data.name, train, test)
    # Only spherevae's own VAE declares its image shape; a wrapped user model does not.
    expected = tuple(model.config.image_shape) if isinstance(model, VAE) else None
    if expected is not None and tuple(test.images.shape[1:]) != expected:
        raise ValueError(
            f"dataset {cfg.data.name!r} has images of shape {tuple(test.images.shape[1:])} "
            f"but the model in {run_dir} expects {expected}"
        )
    images = test.images if opts.max_test is None else test.images[: opts.max_test]
    labels = None if test.labels is None else test.labels[: images.shape[0]]
    return EvalContext(model, images, cfg.objective.name, opts, labels, test.classes, train,
                       run_dir, RunLayout(run_dir).eval_dir, cfg, log)


def _check_device(name: str) -> None:
    from spherevae.training.trainer import resolve_device

    resolve_device(name, what="--device")


def _check_data(run_dir: Path, name: str, train: Any, test: Any) -> None:
    """The data found now must be the data the run was trained on: the fingerprint its
    weights carry, which ``data_fingerprint.json`` must equal (a deleted one is warned)."""
    from spherevae.training.provenance import check_fingerprint_file
    from spherevae.training.runs import weights_identity

    path = RunLayout(run_dir).fingerprint
    stored = check_fingerprint_file(run_dir, weights_identity(run_dir)["provenance"])
    if stored is None:  # a run made before fingerprints were stored
        warnings.warn(f"{run_dir} has no data_fingerprint.json: cannot check that the data "
                      "is the data it was trained on", stacklevel=4)
        return
    check_fingerprint(stored, data_fingerprint(name, train, test), path)


# ------------------------------------------------------------------ the stages


def encode(ctx: EvalContext) -> None:
    """Encode the test images and decode their latents. Adds ``mu``, ``logvar`` (encoder
    outputs), ``latents`` (``mu``, on the model's sphere if it projects), ``x_test`` and
    ``x_hat`` (float images), and ``num_test``, ``mse_sum``, ``rmse_percent``."""
    from spherevae.evaluation.diagnostics import reconstruction_metrics

    where = ctx.run_dir or "model"
    ctx.log(f"evaluate {where}: encoding {ctx.test_images.shape[0]} test images")
    # Everything later stages derived from earlier latents is stale after a new encode.
    for cache in (ctx.fitted, ctx.fit_errors, ctx.samples, ctx.fids, ctx.reference_features):
        cache.clear()
    ctx.mu, ctx.logvar = encode_dataset(ctx.model, ctx.test_images, batch_size=ctx.opts.batch_size,
                                        device=ctx.device)
    ctx.latents = sampler_latents(ctx.model, ctx.mu)
    ctx.x_test = ctx.test_images.float() / 255.0
    ctx.x_hat = decode_images(ctx, ctx.latents)
    ctx.metrics["num_test"] = int(ctx.test_images.shape[0])
    ctx.metrics.update(reconstruction_metrics(ctx.x_test, ctx.x_hat))


# What a fit of degenerate latents raises (singular covariance, no finite estimate, ...).
_FIT_ERRORS = (ValueError, RuntimeError, ArithmeticError)


def _test_fit_latents(ctx: EvalContext) -> torch.Tensor:
    """The paper's protocol: the samplers are fitted on the test latents they are scored against."""
    ctx.metrics["fit_split"] = "test"
    return stage_result(ctx, "latents", "encode")


def _train_fit_latents(ctx: EvalContext) -> torch.Tensor:
    """Latents of as many training images as test images, held out from training where the
    run used the first ``data.max_train`` images (those just after them), else the last
    ones of the split, which the VAE saw (``fit_split_seen_by_vae`` and a warning)."""
    n, total = stage_result(ctx, "latents", "encode").shape[0], ctx.train.images.shape[0]
    used = getattr(getattr(ctx.config, "data", None), "max_train", None)
    start = used if used is not None and used + n <= total else max(total - n, 0)
    seen = start != used
    ctx.metrics.update({"fit_split": "train", "fit_split_range": [int(start), int(min(start + n, total))],
                        "fit_split_seen_by_vae": seen})
    if seen:
        add_warning(ctx, f"--fit-split train: no {n} training images were held out from training "
                         f"(data.max_train {used}, {total} images): fitting on images {start}.. the VAE saw")
    mu, _ = encode_dataset(ctx.model, ctx.train.images[start:start + n], batch_size=ctx.opts.batch_size,
                           device=ctx.device)
    return sampler_latents(ctx.model, mu)


# evaluate --fit-split: which latents the samplers are fitted on.
_FIT_SPLITS: dict[str, Callable[[EvalContext], torch.Tensor]] = {
    "test": _test_fit_latents, "train": _train_fit_latents}


def fit_samplers(ctx: EvalContext) -> None:
    """Fit every sampler of ``ctx.samplers`` to the test latents (``opts.fit_split="test"``,
    the paper's protocol) or to held-out training latents (``"train"``), seeded by ``seed``.
    Needs :func:`encode`. Adds ``fitted``, the fit times to ``sampler_timings_s``, and for
    a fit that fails, its reason to ``fit_errors`` and a warning: its metrics are NaN and
    the other samplers go on."""
    from spherevae.distributions.samplers import fit_sampler

    latents = _FIT_SPLITS[ctx.opts.fit_split](ctx)
    radius = getattr(ctx.model, "radius", None) or sphere_radius(latents.shape[1])
    timings = ctx.metrics.setdefault("sampler_timings_s", {})
    for name in ctx.samplers:
        start = time.perf_counter()
        try:
            ctx.fitted[name] = fit_sampler(name, latents, radius=radius, seed=ctx.opts.seed)
        except _FIT_ERRORS as exc:
            ctx.fit_errors[name] = f"{type(exc).__name__}: {exc}"
            add_warning(ctx, f"sampler {name}: fit failed ({ctx.fit_errors[name]}), metrics NaN")
        timings.setdefault(name, {})["fit"] = round(time.perf_counter() - start, 3)


def generate(ctx: EvalContext) -> None:
    """Draw ``num_samples`` latents from each fitted sampler (its own generator, seeded by
    ``seed`` and its name) and decode them. Needs :func:`fit_samplers`. Adds ``samples``
    (float images, main sampler first) and the draw times to ``sampler_timings_s``."""
    fitted = ctx.fitted if ctx.fit_errors else stage_result(ctx, "fitted", "fit_samplers")
    timings = ctx.metrics.setdefault("sampler_timings_s", {})
    for name, sampler in fitted.items():
        ctx.log(f"sampler {name}: fit and draw {ctx.opts.num_samples}")
        start = time.perf_counter()
        z = sampler.sample(ctx.opts.num_samples, generator=stage_generator(ctx.opts.seed, name))
        timings.setdefault(name, {})["sample"] = round(time.perf_counter() - start, 3)
        ctx.samples[name] = decode_images(ctx, z)


def _fids(ctx: EvalContext) -> dict[str, FID]:
    """``ctx.fids``, built on first use: the backbone ``opts.backbone``'s extractor, the
    features of the reconstructed (``"recon"``) and the real (``"test"``) test images in
    ``ctx.reference_features``, and one FID per reference that keeps it across resets."""
    if ctx.fids:
        return ctx.fids
    x_hat, x_test = stage_result(ctx, "x_hat", "encode"), stage_result(ctx, "x_test", "encode")
    opts = ctx.opts
    fid = FID.from_backbone(opts.backbone, dataset=ctx.train, weights=opts.inception_weights,
                            device=ctx.device)
    ctx.reference_features = {"recon": fid.features(x_hat), "test": fid.features(x_test)}
    ctx.reference_radii = {}  # radii of the features just extracted, filled by the first sampler
    _feature_quality(ctx, fid, x_test)
    for ref, feats in ctx.reference_features.items():
        ctx.fids[ref] = FID(fid.extractor, fid.backbone_name, fid.device, fid.batch_size,
                            reset_real_features=False)
        ctx.fids[ref].update_features(feats, real=True)
    return ctx.fids


def _feature_quality(ctx: EvalContext, fid: FID, x_test: torch.Tensor) -> None:
    """The feature network's test accuracy (its own head), effective dimension and dead
    units, logged and stored (``feature_*_<b>``); below the floor a backbone with
    ``quality_floor`` is refused unless ``opts.allow_weak_features``."""
    from spherevae.evaluation.features import (
        FEATURE_BACKBONES,
        check_feature_quality,
        feature_quality,
    )

    q = feature_quality(fid.extractor, ctx.reference_features["test"], x_test, ctx.test_labels,
                        batch_size=fid.batch_size, device=fid.device)
    b = fid.backbone_name
    acc = "n/a" if q["test_accuracy"] is None else f"{q['test_accuracy']:.4f}"
    ctx.log(f"feature network {b}: test accuracy {acc}, effective dim {q['effective_dim']:.2f}, "
            f"dead units {q['dead_units']} of {q['feature_dim']}")
    for name in ("test_accuracy", "effective_dim", "dead_units"):
        key = {"test_accuracy": "feature_accuracy"}.get(name, f"feature_{name}")
        if q[name] is not None:
            ctx.metrics[metric_key(key, backbone=b)] = q[name]
    spec = FEATURE_BACKBONES.get(b)
    if spec is not None and spec.quality_floor and not ctx.opts.allow_weak_features:
        check_feature_quality(q, b)


# Per-sampler metric names (KEYS) that generation_metrics fills, NaN for a failed sampler.
_SAMPLER_KEYS = ("fid_recon", "fid_test", "kid_recon", "precision", "recall", "density", "coverage",
                 "precision_recon", "recall_recon", "density_recon", "coverage_recon")


def _sampler_metrics(ctx: EvalContext, fids: dict[str, FID], feats: np.ndarray, name: str) -> dict[str, float]:
    """FID (+ bootstrap ``_std``) against each reference, KID (+ ``_se``) against the
    reconstructions, precision/recall and density/coverage against both references."""
    from spherevae.evaluation.fid import fid_bootstrap_stds, kid_with_se
    from spherevae.evaluation.knn import fidelity_diversity

    ref, b, out = ctx.reference_features, fids["recon"].backbone_name, {}
    for reference, fid in fids.items():
        fid.update_features(feats, real=False)
        out[metric_key(f"fid_{reference}", backbone=b, sampler=name)] = fid.compute()
        fid.reset()  # the generated side only: the reference stays
    if ctx.opts.fid_bootstrap:  # one set of resamples serves both references
        stds = fid_bootstrap_stds({r: fid.real for r, fid in fids.items()}, feats, rounds=ctx.opts.fid_bootstrap,
                                  seed=ctx.opts.seed)
        out.update({metric_key(f"fid_{r}", backbone=b, sampler=name) + "_std": v for r, v in stds.items()})
    kid_key = metric_key("kid_recon", backbone=b, sampler=name)
    out[kid_key], out[kid_key + "_se"] = kid_with_se(feats, ref["recon"], seed=ctx.opts.seed)
    own_radii: dict[int, torch.Tensor] = {}  # this sampler's k-NN radii, shared by both references
    for reference, suffix in (("test", ""), ("recon", "_recon")):
        knn = fidelity_diversity(ref[reference], feats, real_radii=ctx.reference_radii.setdefault(reference, {}),
                                 fake_radii=own_radii)
        for which, value in knn.items():
            out[metric_key(which + suffix, backbone=b, sampler=name)] = value
    return out


def generation_metrics(ctx: EvalContext) -> None:
    """FID, KID, precision/recall and density/coverage of the samples, in the features of
    ``opts.backbone``.

    Needs :func:`generate`. Adds, per sampler, ``fid_<b>_<sampler>_recon`` and ``_test``
    (each with ``_std``, its spread over ``opts.fid_bootstrap`` resamples of the samples),
    ``kid_<b>_<sampler>_recon`` (with ``_se``), ``precision``/``recall``/``density``/
    ``coverage_<b>_<sampler>`` against the real test set and the same with ``_recon``
    against the reconstructions (``knn.fidelity_diversity``, one distance pass for the four: on at most
    10,000 points per set); the feature network's quality (:func:`_feature_quality`), the
    headline aliases, the reconstructions' own FID vs test, ``main_sampler``,
    ``fid_backbone`` and ``fid_spread``. A sampler whose fit failed or whose samples are
    not finite gets NaN. Without a usable backbone
    (:func:`spherevae.evaluation.context.fid_unavailable`) only ``main_sampler`` is added.
    """
    from spherevae.evaluation.features import FEATURE_BACKBONES
    from spherevae.evaluation.fid import fid_sample_warning, frechet_distance

    samples = ctx.samples if ctx.fit_errors else stage_result(ctx, "samples", "generate")
    names = [name for name in ctx.samplers if name in samples or name in ctx.fit_errors]
    main, m = names[0], ctx.metrics
    m["main_sampler"] = main
    if fid_unavailable(ctx):
        return
    fids = _fids(ctx)
    ref = ctx.reference_features
    backbone = fids["recon"].backbone_name
    ctx.log(f"FID ({FEATURE_BACKBONES[backbone].label}), {ctx.opts.num_samples} samples per sampler")
    warning = fid_sample_warning(ref["recon"].shape[0], ctx.opts.num_samples, ref["recon"].shape[1])
    if warning:
        add_warning(ctx, warning)
    sample_features: dict[str, np.ndarray] = {}  # the seed-spread reuses them (seed 0's network)
    for name in names:
        feats = None if name in ctx.fit_errors else fids["recon"].features(samples[name])
        if feats is None or not np.isfinite(feats).all():  # its metrics are NaN, the rest go on
            if feats is not None:
                m.setdefault("warnings", []).append(f"sampler {name}: non-finite samples, metrics NaN")
            m.update({metric_key(k, backbone=backbone, sampler=name): float("nan") for k in _SAMPLER_KEYS})
            continue
        sample_features[name] = feats
        m.update(_sampler_metrics(ctx, fids, feats, name))
    for reference in ("recon", "test"):
        m[metric_key(f"headline_fid_{reference}", backbone=backbone)] = m[
            metric_key(f"fid_{reference}", backbone=backbone, sampler=main)]
    m[metric_key("fid_reconstruction_vs_test", backbone=backbone)] = frechet_distance(ref["recon"], ref["test"])
    m["fid_backbone"] = backbone
    m["fid_spread"] = (f"bootstrap over samples ({ctx.opts.fid_bootstrap} resamples, reference fixed)"
                       if ctx.opts.fid_bootstrap else "none")
    if ctx.opts.feature_seeds:
        _seed_spread(ctx, sample_features, samples)


def _seed_spread(ctx: EvalContext, seed0_features: dict[str, np.ndarray],
                 samples: dict[str, torch.Tensor]) -> None:
    """Every FID's ``_std`` as the std (``ddof=1``) over the feature networks of seeds
    ``opts.feature_seeds`` (the shipped ones where shipped; the network of seed 0 gives the
    FID itself, so its features, ``seed0_features`` per sampler and the context's reference
    features, are reused, not extracted again), the values per seed in
    ``fid_per_feature_seed`` and, where a bootstrap ran, its std per key in
    ``fid_bootstrap_std`` (the sampling part of the spread, kept beside the seeds' one)."""
    from spherevae.evaluation.fid import frechet_distance

    opts, m = ctx.opts, ctx.metrics
    x = {"recon": stage_result(ctx, "x_hat", "encode"), "test": stage_result(ctx, "x_test", "encode")}
    per_seed: dict[str, dict[str, float]] = {}
    for seed in opts.feature_seeds:
        backbone, ref, feats = _seed_features(ctx, seed, seed0_features, samples, x)
        for name, f in feats.items():
            for r in x:
                key = metric_key(f"fid_{r}", backbone=backbone, sampler=name)
                per_seed.setdefault(key, {})[str(seed)] = frechet_distance(ref[r], f)
    boot = {key: m[key + "_std"] for key in per_seed if key + "_std" in m}
    for key, values in per_seed.items():
        m[key + "_std"] = float(np.std(list(values.values()), ddof=1))
    m["fid_per_feature_seed"] = per_seed
    m["fid_spread"] = f"std over feature-network seeds {list(opts.feature_seeds)}"
    if boot:
        m["fid_bootstrap_std"] = boot


def _seed_features(ctx: EvalContext, seed: int, seed0_features: dict[str, np.ndarray],
                   samples: dict[str, torch.Tensor], images: dict[str, torch.Tensor]
                   ) -> tuple[str, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(backbone name, reference features per reference, sample features per sampler) in
    the feature network of ``seed``; seed 0's are the ones the FIDs were computed with."""
    if seed == 0:
        return ctx.fids["recon"].backbone_name, ctx.reference_features, seed0_features
    opts = ctx.opts
    fid = FID.from_backbone(opts.backbone, dataset=ctx.train, weights=opts.inception_weights,
                            device=ctx.device, seed=seed)
    return (fid.backbone_name, {r: fid.features(x) for r, x in images.items()},
            {name: fid.features(samples[name]) for name in seed0_features})


def latent_geometry(ctx: EvalContext) -> None:
    """k-NN accuracy (with train labels), collapse, replica angle, tangent spectrum and
    the posterior's sigma per dimension. Needs :func:`encode`. Adds
    ``knn_accuracy_k<k>``, ``collapse_*``, ``replica_angle_mean/std``,
    ``tangent_effective_dim``, ``tangent_top_fraction``, ``tangent_spectrum``,
    ``sigma_per_dim``, ``sigma_max``, ``sigma_median``, ``sigma_dims_above_10x_median``."""
    from spherevae.evaluation.diagnostics import collapse_stats, posterior_sigma_summary
    from spherevae.geometry.sphere import replica_angles, tangent_effective_dim, tangent_spectrum

    latents, mu, logvar = (stage_result(ctx, k, "encode") for k in ("latents", "mu", "logvar"))
    m = ctx.metrics
    if ctx.test_labels is not None and getattr(ctx.train, "labels", None) is not None:
        m[metric_key("knn_accuracy", k=ctx.opts.knn_k)] = _knn(ctx)
    collapse = collapse_stats(mu, logvar=logvar)
    m.update({metric_key("collapse", stat=k): v for k, v in collapse.items() if not hasattr(v, "shape")})
    angles = replica_angles(latents)
    m["replica_angle_mean"], m["replica_angle_std"] = float(angles.mean()), float(angles.std())
    spread = tangent_effective_dim(latents)
    m["tangent_effective_dim"] = spread["effective_dim"]
    m["tangent_top_fraction"] = spread["top_fraction"]
    m["tangent_spectrum"] = tangent_spectrum(latents).tolist()
    sigma = posterior_sigma_summary(logvar, ratio=10.0)
    m["sigma_per_dim"] = sigma["sigma_per_dim"].tolist()
    m["sigma_max"] = sigma["sigma_max"]
    m["sigma_median"] = sigma["sigma_median"]
    m["sigma_dims_above_10x_median"] = sigma["sigma_dims_above_ratio"]
    if "vmf" in ctx.samplers and spread["effective_dim"] < 0.1 * spread["max_dim"]:
        # A vMF is isotropic around its mean direction; say so where it cannot fit.
        ctx.log(f"note: the test latents spread along ~{spread['effective_dim']:.1f} of "
                f"{spread['max_dim']:.0f} directions around their mean, but a vMF spreads "
                "evenly over all of them; compare fid_*_gaussian_sphere_* (docs/evaluation.md)")


def _knn(ctx: EvalContext) -> float:
    """k-NN accuracy of the test latents, fitted on at most ``knn_train_max`` training
    latents drawn with a generator seeded by ``seed``."""
    from spherevae.evaluation.knn import knn_accuracy

    opts, train, latents, test_labels = ctx.opts, ctx.train, ctx.latents, ctx.test_labels
    assert latents is not None and test_labels is not None  # latent_geometry checked both
    gen = torch.Generator().manual_seed(opts.seed)
    n_train = min(opts.knn_train_max, train.images.shape[0])
    perm = torch.randperm(train.images.shape[0], generator=gen)[:n_train]
    mu_train, _ = encode_dataset(ctx.model, train.images[perm], batch_size=opts.batch_size, device=ctx.device)
    return knn_accuracy(sampler_latents(ctx.model, mu_train), train.labels[perm], latents,
                        test_labels, k=opts.knn_k)


def tangent_noise_fids(ctx: EvalContext) -> None:
    """FID (vs the reconstructed test set) of test latents moved by isotropic tangent noise.

    The scale unit is the per-direction std of the vMF fitted to the test latents on the
    unit sphere, ``s = sqrt(A_n(kappa) / kappa)`` (``spherevae.distributions.vmf.vmf_tangent_std``): a
    latent ``z`` gets noise of std ``c s |z|`` in each of its ``n - 1`` tangent
    directions and is put back on its sphere (``metrics.perturb_tangent``). At ``c = 1``
    each latent is displaced about as far as a vMF sample is from the vMF's mean
    direction, so this FID says how much of the vMF's FID the decoder's sensitivity to
    isotropic spread alone explains. Needs :func:`encode`. Adds
    ``tangent_noise_fid_<b>_<c>x``, the pixel RMSE (percent) between the perturbed and
    the unperturbed reconstructions ``tangent_noise_rmse_percent_<c>x``,
    ``vmf_concentration`` and ``vmf_tangent_std``.
    """
    from spherevae.distributions.vmf import VonMisesFisher, vmf_tangent_std
    from spherevae.evaluation.diagnostics import reconstruction_metrics
    from spherevae.geometry.sphere import perturb_tangent

    latents, x_hat = stage_result(ctx, "latents", "encode"), stage_result(ctx, "x_hat", "encode")
    ctx.log("decoder sensitivity to tangent noise")
    fid = None if fid_unavailable(ctx) else _fids(ctx)["recon"]
    vmf = VonMisesFisher.fit(latents)
    std = float(vmf_tangent_std(vmf.concentration.double(), latents.shape[1]))
    m = ctx.metrics
    m["vmf_concentration"], m["vmf_tangent_std"] = float(vmf.concentration), std
    gen = stage_generator(ctx.opts.seed, "tangent_noise")
    for c in TANGENT_NOISE_SCALES:
        images = decode_images(ctx, perturb_tangent(latents, c * std, generator=gen))
        if fid is not None:
            fid.update(images, real=False)
            m[metric_key("tangent_noise_fid", backbone=fid.backbone_name, scale=c)] = fid.compute()
            fid.reset()
        m[metric_key("tangent_noise_rmse", scale=c)] = reconstruction_metrics(x_hat, images)["rmse_percent"]


Stage = Callable[[EvalContext], None]

# The stages of evaluate_run, in order, grouped under the names of their progress lines
# and of metrics.json's ``timings_s``.
PIPELINE: tuple[tuple[str, tuple[Stage, ...]], ...] = (
    ("encode", (encode,)),
    ("sample", (fit_samplers, generate)),
    ("fid", (generation_metrics,)),
    ("latents", (latent_geometry, tangent_noise_fids)),
    ("figures", (draw_figures,)),
)


def _save_samplers(fitted: dict[str, Any], layout: RunLayout, made_from: dict[str, Any]) -> None:
    """Each fitted sampler to ``<run>/samplers/<name>.safetensors`` (tensors + JSON
    metadata, no pickle, the weights it was fitted for), where :meth:`spherevae.Run.sampler`
    finds and reuses it."""
    from spherevae.distributions.samplers import save_sampler

    for name, sampler in fitted.items():
        try:
            save_sampler(sampler, layout.sampler(name), made_from=made_from)
        except TypeError as exc:  # a registered sampler without a saved form: Run.sampler refits it
            _LOG.warning("sampler %s not saved: %s", name, exc)


def _json_default(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot serialise {type(value).__name__}")
