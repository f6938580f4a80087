"""The figures stage of :mod:`spherevae.evaluation.pipeline`: every figure of an evaluated
:class:`~spherevae.evaluation.context.EvalContext`, as PNGs in its ``out_dir``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from spherevae.evaluation.context import (
    EvalContext,
    add_warning,
    decode_images,
    stage_generator,
    stage_result,
)
from spherevae.evaluation.metric_info import metric_key
from spherevae.io.files import read_jsonl
from spherevae.io.layout import RunLayout
from spherevae.io.safe_read import check_run_file
from spherevae.models.inference import model_method

__all__ = [
    "draw_figures",
]


def draw_figures(ctx: EvalContext) -> None:
    """Every figure, as PNGs in ``ctx.out_dir``. Needs :func:`generation_metrics`,
    :func:`latent_geometry` and :func:`tangent_noise_fids` (their metrics are drawn).

    Each figure is drawn and saved on its own: one that fails (a full disk, a latent
    space its plot cannot draw) is skipped with one warning line in the log and in
    ``metrics["warnings"]``, and the others are still drawn; the metrics are never lost
    to a figure."""
    out = stage_result(ctx, "out_dir", "load_context")
    out.mkdir(parents=True, exist_ok=True)
    for name, draw in _figures(ctx, out):
        try:
            draw()
        except Exception as exc:  # any failure of one figure costs only that figure
            message = f"figure {name}.png not drawn: {' '.join(str(exc).split())[:300] or type(exc).__name__}"
            add_warning(ctx, message)


def _figures(ctx: EvalContext, out: Path) -> list[tuple[str, Callable[[], object]]]:
    """``(file stem, draw-and-save)`` of every figure that applies to ``ctx``."""
    from spherevae import plots

    samples = ctx.samples if ctx.fit_errors else stage_result(ctx, "samples", "generate")
    latents, m, k = ctx.latents, ctx.metrics, 16
    assert latents is not None and ctx.x_hat is not None
    x_hat = ctx.x_hat
    main, backbone = m["main_sampler"], m.get("fid_backbone")  # no backbone: no FIDs in titles
    x = ctx.test_images[:k].float() / 255.0
    labels, classes = ctx.test_labels, ctx.classes
    n_tsne = min(ctx.opts.tsne_points, latents.shape[0])

    def save(fig_fn: Callable[[], Any], stem: str) -> tuple[str, Callable[[], object]]:
        return stem, lambda: plots.save_figure(fig_fn(), out / f"{stem}.png")

    figures = []
    if main in samples:  # not when the main sampler's fit failed
        figures.append(save(lambda: plots.reconstruction_figure(x, x_hat[:k], samples[main][:k]), "samples"))
    if samples:
        fids = {name: m[metric_key("fid_recon", backbone=backbone, sampler=name)]
                for name in samples if backbone}
        figures.append(save(lambda: plots.sampler_grid_figure(
            {name: imgs[:k] for name, imgs in samples.items()}, fids, fid_label=f"FID {backbone}"),
            "samples_by_sampler"))
    figures += [
        save(lambda: plots.sphere_projection(latents, labels, class_names=classes), "sphere_projection"),
        save(lambda: plots.latent_spectrum_figure(m["sigma_per_dim"], m["tangent_spectrum"],
                                                  m["vmf_tangent_std"] ** 2), "latent_spectrum"),
        save(lambda: plots.tsne_figure(latents[:n_tsne], None if labels is None else labels[:n_tsne],
                                       seed=ctx.opts.seed, class_names=classes), "tsne"),
        ("latent_histograms", lambda: _histogram_figure(ctx, out / "latent_histograms.png")),
    ]
    rows = []
    if ctx.run_dir is not None and RunLayout(ctx.run_dir).metrics.exists():
        rows = read_jsonl(check_run_file(ctx.run_dir, RunLayout(ctx.run_dir).metrics))
    if rows:
        figures.append(save(lambda: plots.training_curves(rows), "training_curves"))
    figures.append(("interpolation", lambda: _interpolation_figure(ctx, out / "interpolation.png")))
    return figures


def _histogram_figure(ctx: EvalContext, path: Path) -> None:
    """Figs 8-9: per-dimension histograms of mu, sigma and one sampled z per test image
    (its own generator, named ``figures``), norms and the replica angle."""
    from spherevae import plots
    from spherevae.geometry.coordinates import hyperspherical_cosines

    mu, logvar = ctx.mu, ctx.logvar
    assert mu is not None and logvar is not None
    z = model_method(ctx.model, "reparameterize")(mu, logvar, generator=stage_generator(ctx.opts.seed, "figures"))
    _, cos_mu = hyperspherical_cosines(mu)
    plots.save_figure(plots.latent_histograms(mu, torch.exp(0.5 * logvar), z, cos_mu), path)


def _interpolation_figure(ctx: EvalContext, path: Path) -> None:
    """Linear and great-circle interpolation between the first test images of two
    different classes (the first two test images without labels)."""
    from spherevae import plots
    from spherevae.geometry.sphere import interpolate_linear, interpolate_sphere

    labels, latents = ctx.test_labels, ctx.latents
    assert latents is not None
    i0, i1 = 0, 1
    if labels is not None:
        others = (labels != labels[0]).nonzero()
        i1 = int(others[0]) if len(others) else 1
    z0, z1 = latents[i0], latents[i1]
    lin = decode_images(ctx, interpolate_linear(z0, z1, 10))
    sph = decode_images(ctx, interpolate_sphere(z0, z1, 10))
    plots.save_figure(plots.interpolation_figure(lin, sph), path)
