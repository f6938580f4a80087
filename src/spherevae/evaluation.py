"""Evaluate a trained run: reconstruction, generation (FID), latent analysis, figures.

``evaluate_run(run_dir)`` loads the run's model and dataset, encodes the test set,
fits the samplers to the test latents (the paper's protocol for the vMF), decodes
``num_samples`` samples per sampler and measures, per sampler, the FID against the
*reconstructed* test set (the paper's protocol) and against the real test set.
It also measures k-NN accuracy on the latents, posterior collapse, the replica
angle, and draws every figure. Results go to ``RUN_DIR/eval/metrics.json`` and
``RUN_DIR/eval/*.png``.

Conventions, stated once:

- Test latents are the encoder means ``mu`` (projected to radius sqrt(n) when the
  model projects z), never sampled z.
- The reconstruction of the test set decodes those latents (deterministic).
- Metric names carry the FID backbone and the reference set:
  ``fid_<backbone>_<sampler>_recon`` and ``fid_<backbone>_<sampler>_test``; the
  headline ``fid_<backbone>_recon`` uses the run's main sampler (``prior`` for the
  standard VAE, ``vmf`` for the compressed one, as in the paper). Every sampler also
  gets ``precision_<backbone>_<sampler>`` and ``recall_<backbone>_<sampler>`` (vs test).
- Which samplers: :func:`samplers_for`: the objective's ``default_samplers`` (its main
  sampler and the prior of its latent space, :mod:`spherevae.objectives`) and every
  fitted sampler of the registry ``spherevae.sampling.SAMPLERS``; no other list exists. Each sampler draws
  from its own generator, seeded by ``seed`` and its name, so adding a sampler leaves
  the others' samples unchanged.
- Diagnostics that explain generation (docs/evaluation.md): ``sigma_per_dim`` and its
  summary, ``tangent_spectrum`` (its participation ratio is ``tangent_effective_dim``)
  and the decoder's sensitivity to isotropic tangent noise,
  ``tangent_noise_fid_<backbone>_<c>x`` for ``c`` in :data:`TANGENT_NOISE_SCALES`.
- Domain-feature FIDs are not comparable to published Inception FIDs.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from spherevae.coordinates import sphere_radius
from spherevae.rundir import (
    atomic_write_json,
    check_fingerprint,
    data_fingerprint,
    read_json,
    read_jsonl,
)
from spherevae.sampling import SAMPLERS

__all__ = ["TANGENT_NOISE_SCALES", "EvalConfig", "encode_dataset", "evaluate_run", "samplers_for"]


_LOG = logging.getLogger("spherevae.evaluate")

# Tangent-noise scales, in units of the fitted vMF's per-direction std (decoder sensitivity).
TANGENT_NOISE_SCALES: tuple[float, ...] = (0.25, 0.5, 1.0)


def samplers_for(objective: str, requested: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """The samplers to evaluate: ``requested`` (each a key of ``SAMPLERS``) if given, else
    the objective's ``default_samplers`` (headline first, e.g. the paper's prior for the
    standard VAE and vMF for the compressed one) followed by every other fitted sampler of
    the registry, so every run is compared on the same samplers."""
    from spherevae._validation import check_choice
    from spherevae.objectives import OBJECTIVES

    if requested:
        for name in requested:
            check_choice(name, "evaluate sampler", SAMPLERS)
        return tuple(dict.fromkeys(requested))
    check_choice(objective, "objective", OBJECTIVES)
    declared = OBJECTIVES[objective].default_samplers
    fits = (name for name, spec in SAMPLERS.items() if spec.fitted)
    return tuple(dict.fromkeys((*declared, *fits)))


@dataclass(frozen=True)
class EvalConfig:
    """Options of :func:`evaluate_run` (all have defaults that follow the paper)."""

    num_samples: int = 10_000
    samplers: tuple[str, ...] | None = None
    backbone: str = "domain"
    inception_weights: str | None = None
    knn_k: int = 5
    knn_train_max: int = 20_000
    tsne_points: int = 10_000
    max_test: int | None = None
    batch_size: int = 500
    seed: int = 0
    figures: bool = True
    device: str = "cpu"
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("num_samples", "knn_k", "knn_train_max", "tsne_points", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"evaluate option {name!r} must be an integer >= 1, got {value!r}")
        if self.max_test is not None and self.max_test < 2:
            raise ValueError(f"evaluate option 'max_test' must be >= 2 or None, got {self.max_test!r}")


# What each timed stage does, for the progress lines (a stage not listed logs its name).
_STAGE_TEXT = {
    "load": "loading the model and the dataset",
    "encode": "encoding and reconstructing the test set",
    "sample": "fitting the samplers and decoding samples",
    "fid": "FID, KID, precision/recall (feature extraction)",
    "latents": "k-NN accuracy, collapse, replica angle",
    "figures": "drawing the figures",
}


@dataclass
class _Timer:
    timings: dict[str, float] = field(default_factory=dict)
    log: Callable[[str], None] = lambda _msg: None

    def __call__(self, name: str) -> _Stage:
        return _Stage(self, name)


@dataclass
class _Stage:
    timer: _Timer
    name: str
    start: float = 0.0

    def __enter__(self) -> None:
        self.timer.log(f"[{len(self.timer.timings) + 1}/{len(_STAGE_TEXT)}] "
                       f"{_STAGE_TEXT.get(self.name, self.name)}")
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.timer.timings[self.name] = round(time.perf_counter() - self.start, 3)


@torch.no_grad()
def encode_dataset(
    model: torch.nn.Module, images: torch.Tensor, *, batch_size: int = 500, device: str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder means and log-variances of uint8 images ``(N, C, H, W)``: ``(N, n)`` each."""
    mus, logvars = [], []
    for start in range(0, images.shape[0], batch_size):
        x = images[start : start + batch_size].to(device=device, dtype=torch.float32) / 255.0
        mu, logvar = model.encode(x)
        mus.append(mu.float().cpu())
        logvars.append(logvar.float().cpu())
    return torch.cat(mus), torch.cat(logvars)


@torch.no_grad()
def _decode(model: torch.nn.Module, z: torch.Tensor, batch_size: int, device: str) -> torch.Tensor:
    out = [
        model.decode(z[i : i + batch_size].to(device)).float().cpu()
        for i in range(0, z.shape[0], batch_size)
    ]
    return torch.cat(out).clamp_(0.0, 1.0)


def _test_latents(model: torch.nn.Module, mu: torch.Tensor) -> torch.Tensor:
    radius = getattr(model, "radius", None)
    if radius is None:
        return mu
    from spherevae.coordinates import project_to_sphere

    return project_to_sphere(mu, radius, validate=False)


def evaluate_run(run_dir: str | os.PathLike[str], **options: Any) -> dict[str, Any]:
    """Evaluate the run in ``run_dir``; keyword options are :class:`EvalConfig` fields.

    Returns the metrics dict (also written to ``run_dir/eval/metrics.json``).
    """
    from spherevae.data import load_dataset
    from spherevae.metrics import (
        FID,
        collapse_stats,
        fid_sample_warning,
        kid,
        knn_accuracy,
        posterior_sigma_summary,
        precision_recall,
        reconstruction_metrics,
        replica_angles,
        tangent_effective_dim,
        tangent_spectrum,
    )
    from spherevae.sampling import fit_sampler
    from spherevae.training import load_run

    opts = EvalConfig(**options)
    run_dir = Path(run_dir)
    _check_device(opts.device)
    out = run_dir / "eval"
    log: Callable[[str], None] = _LOG.info if opts.progress else (lambda _msg: None)
    timer = _Timer(log=log)

    with timer("load"):
        cfg, model = load_run(run_dir, device=opts.device)
        model.eval()
        data_kw = {"root": cfg.data.root, "download": cfg.data.download, **cfg.data.options}
        test = load_dataset(cfg.data.name, "test", **data_kw)
        train = load_dataset(cfg.data.name, "train", **data_kw)
        _check_data(run_dir, cfg.data.name, train, test)
        expected = tuple(model.config.image_shape)
        if tuple(test.images.shape[1:]) != expected:
            raise ValueError(
                f"dataset {cfg.data.name!r} has images of shape {tuple(test.images.shape[1:])} "
                f"but the model in {run_dir} expects {expected}"
            )
    test_images = test.images if opts.max_test is None else test.images[: opts.max_test]
    test_labels = None if test.labels is None else test.labels[: test_images.shape[0]]
    gen = torch.Generator().manual_seed(opts.seed)

    with timer("encode"):
        log(f"evaluate {run_dir}: encoding {test_images.shape[0]} test images")
        mu, logvar = encode_dataset(model, test_images, batch_size=opts.batch_size, device=opts.device)
        latents = _test_latents(model, mu)
        x_test = test_images.float() / 255.0
        x_hat = _decode(model, latents, opts.batch_size, opts.device)
        metrics: dict[str, Any] = {"num_test": int(test_images.shape[0])}
        metrics.update(reconstruction_metrics(x_test, x_hat))

    samplers = samplers_for(cfg.objective.name, opts.samplers)
    radius = getattr(model, "radius", None) or sphere_radius(mu.shape[1])
    samples: dict[str, torch.Tensor] = {}
    fitted: dict[str, Any] = {}
    sampler_timings: dict[str, dict[str, float]] = {}
    with timer("sample"):
        for name in samplers:
            log(f"sampler {name}: fit and draw {opts.num_samples}")
            start = time.perf_counter()
            fitted[name] = fit_sampler(name, latents, radius=radius, seed=opts.seed)
            mid = time.perf_counter()
            z = fitted[name].sample(opts.num_samples, generator=_named_generator(opts.seed, name))
            sampler_timings[name] = {"fit": round(mid - start, 3), "sample": round(time.perf_counter() - mid, 3)}
            samples[name] = _decode(model, z, opts.batch_size, opts.device)
        metrics["sampler_timings_s"] = sampler_timings

    with timer("fid"):
        log(f"FID ({opts.backbone} features), {opts.num_samples} samples per sampler")
        fid = FID.from_backbone(
            opts.backbone,
            dataset=train,
            weights=opts.inception_weights,
            device=opts.device,
        )
        fid_ref = fid.features(x_hat)
        fid_real = fid.features(x_test)
        backbone = fid.backbone_name
        main = samplers[0]
        warning = fid_sample_warning(fid_ref.shape[0], opts.num_samples, fid_ref.shape[1])
        if warning:
            _LOG.warning(warning)
            metrics.setdefault("warnings", []).append(warning)
        for name, images in samples.items():
            feats = fid.features(images)
            metrics[f"fid_{backbone}_{name}_recon"] = fid.distance(feats, fid_ref)
            metrics[f"fid_{backbone}_{name}_test"] = fid.distance(feats, fid_real)
            pr = precision_recall(fid_real, feats)
            metrics[f"precision_{backbone}_{name}"] = pr["precision"]
            metrics[f"recall_{backbone}_{name}"] = pr["recall"]
            if name == main:
                metrics[f"kid_{backbone}_{name}_recon"] = kid(feats, fid_ref)
        metrics[f"fid_{backbone}_recon"] = metrics[f"fid_{backbone}_{main}_recon"]
        metrics[f"fid_{backbone}_test"] = metrics[f"fid_{backbone}_{main}_test"]
        metrics[f"fid_{backbone}_reconstruction_vs_test"] = fid.distance(fid_ref, fid_real)
        metrics["main_sampler"] = main
        metrics["fid_backbone"] = backbone
        log("decoder sensitivity to tangent noise")
        metrics.update(_tangent_noise_fids(model, latents, x_hat, fid, fid_ref, opts,
                                           _named_generator(opts.seed, "tangent_noise")))

    with timer("latents"):
        if test_labels is not None and train.labels is not None:
            n_train = min(opts.knn_train_max, train.images.shape[0])
            perm = torch.randperm(train.images.shape[0], generator=gen)[:n_train]
            mu_train, _ = encode_dataset(
                model, train.images[perm], batch_size=opts.batch_size, device=opts.device
            )
            metrics[f"knn_accuracy_k{opts.knn_k}"] = knn_accuracy(
                _test_latents(model, mu_train), train.labels[perm], latents, test_labels, k=opts.knn_k
            )
        collapse = collapse_stats(mu, logvar=logvar)
        metrics.update({f"collapse_{k}": v for k, v in collapse.items() if not hasattr(v, "shape")})
        angles = replica_angles(latents)
        metrics["replica_angle_mean"] = float(angles.mean())
        metrics["replica_angle_std"] = float(angles.std())
        spread = tangent_effective_dim(latents)
        metrics["tangent_effective_dim"] = spread["effective_dim"]
        metrics["tangent_top_fraction"] = spread["top_fraction"]
        metrics["tangent_spectrum"] = tangent_spectrum(latents).tolist()
        sigma = posterior_sigma_summary(logvar, ratio=10.0)
        metrics["sigma_per_dim"] = sigma["sigma_per_dim"].tolist()
        metrics["sigma_max"] = sigma["sigma_max"]
        metrics["sigma_median"] = sigma["sigma_median"]
        metrics["sigma_dims_above_10x_median"] = sigma["sigma_dims_above_ratio"]
        if "vmf" in samples and spread["effective_dim"] < 0.1 * spread["max_dim"]:
            # A vMF is isotropic around its mean direction; say so where it cannot fit.
            log(f"note: the test latents spread along ~{spread['effective_dim']:.1f} of "
                f"{spread['max_dim']:.0f} directions around their mean, but a vMF spreads "
                "evenly over all of them; compare fid_*_gaussian_sphere_* (docs/evaluation.md)")

    if opts.figures:
        with timer("figures"):
            _figures(out, cfg, model, test_images, x_hat, samples, samplers[0], mu, logvar,
                     latents, test_labels, angles, run_dir, opts, gen, metrics, test.classes)

    metrics["timings_s"] = timer.timings
    metrics["eval_options"] = {k: v for k, v in asdict(opts).items() if k != "progress"}
    _save_samplers(fitted, run_dir / "samplers")
    atomic_write_json(out / "metrics.json", metrics, indent=2, sort_keys=True, default=_json_default)
    log(f"evaluate {run_dir}: done in {sum(timer.timings.values()):.0f} s -> {out / 'metrics.json'}")
    return metrics


def _check_device(name: str) -> None:
    from spherevae.training import _resolve_device

    _resolve_device(name, what="--device")


def _check_data(run_dir: Path, name: str, train: Any, test: Any) -> None:
    """The data found now must be the data the run was trained on (its fingerprint)."""
    path = run_dir / "data_fingerprint.json"
    if not path.is_file():  # a run made before fingerprints were stored
        warnings.warn(f"{run_dir} has no data_fingerprint.json: cannot check that the data "
                      "is the data it was trained on", stacklevel=3)
        return
    check_fingerprint(read_json(path), data_fingerprint(name, train, test), path)


def _named_generator(seed: int, name: str) -> torch.Generator:
    """A generator for one named random stage, so that adding or reordering samplers
    does not change the draws of the others."""
    return torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))


def _tangent_noise_fids(model, latents, x_hat, fid, fid_ref, opts, gen) -> dict[str, float]:
    """FID (vs the reconstructed test set) of test latents moved by isotropic tangent noise.

    The scale unit is the per-direction std of the vMF fitted to the test latents on the
    unit sphere, ``s = sqrt(A_n(kappa) / kappa)`` (``spherevae.vmf.vmf_tangent_std``): a
    latent ``z`` gets noise of std ``c s |z|`` in each of its ``n - 1`` tangent
    directions and is put back on its sphere (``metrics.perturb_tangent``). At ``c = 1``
    each latent is displaced about as far as a vMF sample is from the vMF's mean
    direction, so this FID says how much of the vMF's FID the decoder's sensitivity to
    isotropic spread alone explains. Also reports the pixel RMSE (percent) between the
    perturbed and the unperturbed reconstructions.
    """
    from spherevae.metrics import perturb_tangent, reconstruction_metrics
    from spherevae.sampling import VonMisesFisher
    from spherevae.vmf import vmf_tangent_std

    vmf = VonMisesFisher.fit(latents)
    std = float(vmf_tangent_std(vmf.concentration.double(), latents.shape[1]))
    backbone = fid.backbone_name
    out = {"vmf_concentration": float(vmf.concentration), "vmf_tangent_std": std}
    for c in TANGENT_NOISE_SCALES:
        z = perturb_tangent(latents, c * std, generator=gen)
        images = _decode(model, z, opts.batch_size, opts.device)
        out[f"tangent_noise_fid_{backbone}_{c:g}x"] = fid.distance(fid.features(images), fid_ref)
        out[f"tangent_noise_rmse_percent_{c:g}x"] = reconstruction_metrics(x_hat, images)["rmse_percent"]
    return out


def _save_samplers(fitted: dict[str, Any], directory: Path) -> None:
    """Each fitted sampler to ``<run>/samplers/<name>.safetensors`` (tensors + JSON
    metadata, no pickle), where :meth:`spherevae.Run.sampler` finds and reuses it."""
    from spherevae.api import save_sampler

    for name, sampler in fitted.items():
        save_sampler(sampler, directory / f"{name}.safetensors")


def _json_default(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _figures(out, cfg, model, test_images, x_hat, samples, main, mu, logvar, latents, labels,
             angles, run_dir, opts, gen, metrics, classes=None) -> None:
    from spherevae import plots
    from spherevae.coordinates import hyperspherical_cosines

    out.mkdir(parents=True, exist_ok=True)
    k = 16
    x = test_images[:k].float() / 255.0
    plots.save_figure(
        plots.reconstruction_figure(x, x_hat[:k], samples[main][:k]), out / "samples.png"
    )
    fids = {name: metrics[f"fid_{metrics['fid_backbone']}_{name}_recon"] for name in samples}
    plots.save_figure(
        plots.sampler_grid_figure({name: imgs[:k] for name, imgs in samples.items()}, fids,
                                  fid_label=f"FID {metrics['fid_backbone']}"),
        out / "samples_by_sampler.png",
    )
    plots.save_figure(plots.sphere_projection(latents, labels, class_names=classes),
                      out / "sphere_projection.png")
    plots.save_figure(
        plots.latent_spectrum_figure(metrics["sigma_per_dim"], metrics["tangent_spectrum"],
                                     metrics["vmf_tangent_std"] ** 2),
        out / "latent_spectrum.png",
    )
    n_tsne = min(opts.tsne_points, latents.shape[0])
    plots.save_figure(
        plots.tsne_figure(latents[:n_tsne], None if labels is None else labels[:n_tsne],
                          seed=opts.seed, class_names=classes),
        out / "tsne.png",
    )
    sigma = torch.exp(0.5 * logvar)
    z = model.reparameterize(mu, logvar, generator=gen)
    _, cos_mu = hyperspherical_cosines(mu)
    plots.save_figure(plots.latent_histograms(mu, sigma, z, cos_mu), out / "latent_histograms.png")
    rows = read_jsonl(run_dir / "metrics.jsonl")
    if rows:
        plots.save_figure(plots.training_curves(rows), out / "training_curves.png")
    # Interpolate between the first test images of two different classes.
    i0, i1 = 0, 1
    if labels is not None:
        others = (labels != labels[0]).nonzero()
        i1 = int(others[0]) if len(others) else 1
    z0, z1 = latents[i0], latents[i1]
    lin = _decode(model, plots.interpolate_linear(z0, z1, 10), opts.batch_size, opts.device)
    sph = _decode(model, plots.interpolate_sphere(z0, z1, 10), opts.batch_size, opts.device)
    plots.save_figure(plots.interpolation_figure(lin, sph), out / "interpolation.png")
