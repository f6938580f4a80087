"""The typed context the evaluation stages share (:mod:`spherevae.evaluation.pipeline`), with
its options and the small helpers every stage uses: which samplers, encode and decode
in batches, the test latents, and one seeded generator per named stage."""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from spherevae._utils.memory import physical_memory
from spherevae._utils.validation import check_choice
from spherevae.distributions.samplers import SAMPLERS
from spherevae.evaluation.fid import FID

__all__ = [
    "EvalConfig",
    "EvalContext",
    "check_sample_memory",
    "fid_unavailable",
    "samplers_for",
]

_LOG = logging.getLogger("spherevae.evaluate")


def samplers_for(objective: str, requested: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """The samplers to evaluate, the headline (whose FID is ``fid_<backbone>_recon``) first.

    Without ``requested``: the objective's ``default_samplers`` (the paper's prior for the
    standard VAE, vMF for the compressed one) followed by every other fitted sampler of the
    registry, so every run is compared on the same samplers. With ``requested`` (keys of
    ``SAMPLERS``): those, the objective's own samplers among them first, so that a sweep
    listing one set for every objective still headlines each with its paper sampler.
    """
    from spherevae.training.objectives import OBJECTIVES

    if requested:
        for name in requested:
            check_choice(name, "evaluate sampler", SAMPLERS)
        # An objective registered in another process is unknown here: keep the given order.
        declared = OBJECTIVES[objective].default_samplers if objective in OBJECTIVES else ()
        own = [name for name in declared if name in requested]
        return tuple(dict.fromkeys((*own, *requested)))
    check_choice(objective, "objective", OBJECTIVES)
    declared = OBJECTIVES[objective].default_samplers
    fits = (name for name, spec in SAMPLERS.items() if spec.fitted)
    return tuple(dict.fromkeys((*declared, *fits)))


@dataclass(frozen=True)
class EvalConfig:
    """Options of :func:`evaluate_run` (all have defaults that follow the paper).

    ``allow_weak_features``: evaluate with a feature network below the quality floor
    (``spherevae.evaluation.features.FEATURE_FLOORS``) instead of refusing it.
    ``fid_bootstrap``: resamples of each sampler's features for the FIDs' ``_std`` (0: none).
    ``feature_seeds``: e.g. ``(0, 1, 2)``: every FID's ``_std`` over the feature networks of
    these seeds instead of the bootstrap (each extra seed re-extracts every feature set).
    ``fit_split``: fit the samplers on the test latents (``"test"``, the paper's) or on
    held-out training images (``"train"``; recorded in ``metrics["fit_split"]``).
    """

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
    allow_weak_features: bool = False
    fid_bootstrap: int = 10
    fit_split: str = "test"
    feature_seeds: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for name in ("num_samples", "knn_k", "knn_train_max", "tsne_points", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"evaluate option {name!r} must be an integer >= 1, got {value!r}")
        if not isinstance(self.fid_bootstrap, int) or self.fid_bootstrap == 1 or self.fid_bootstrap < 0:
            raise ValueError(f"evaluate option 'fid_bootstrap' must be 0 (off) or an integer >= 2, "
                             f"got {self.fid_bootstrap!r}")
        if self.feature_seeds and (len(set(self.feature_seeds)) < 2 or 0 not in self.feature_seeds):
            raise ValueError(f"evaluate option 'feature_seeds' must list at least 2 distinct seeds, 0 "
                             f"among them (the network of the FIDs themselves), got {self.feature_seeds!r}")
        check_choice(self.fit_split, "evaluate option 'fit_split'", ("test", "train"))
        if self.max_test is not None and self.max_test < 2:
            raise ValueError(f"evaluate option 'max_test' must be >= 2 or None, got {self.max_test!r}")
        from spherevae.evaluation.features import FEATURE_BACKBONES

        for name in self.samplers or ():
            check_choice(name, "evaluate sampler", SAMPLERS)
        check_choice(self.backbone, "evaluate option 'backbone'", FEATURE_BACKBONES)
        if self.inception_weights is not None and self.backbone != "inception":
            # Given but unused would look like an Inception FID that is not one.
            raise ValueError(f"evaluate option 'inception_weights' is used only with backbone "
                             f"'inception' (backbone is {self.backbone!r}): drop it or set the backbone")


def silent(_msg: str) -> None:
    return None


@dataclass
class EvalContext:
    """What the evaluation stages share: the inputs, then what each stage adds.

    Inputs (:func:`load_context` fills them from a run directory; build one by hand to
    evaluate any model): ``model`` with ``encode(x) -> (mu, logvar)`` and ``decode(z) ->``
    images in [0, 1] (a ``radius`` attribute means it projects z to that sphere);
    ``test_images`` uint8 ``(N, C, H, W)``; ``objective`` (a key of
    ``spherevae.training.objectives.OBJECTIVES``, picks the default samplers); ``train``: the
    training split (``images``, ``labels``) for the domain backbone and k-NN, or ``None``;
    ``out_dir``: where figures go.

    Added by the stages: ``mu``, ``logvar``, ``latents``, ``x_test``, ``x_hat``
    (:func:`encode`), ``fitted`` and ``fit_errors`` (sampler name -> why its fit failed;
    its metrics are NaN) (:func:`fit_samplers`), ``samples`` (:func:`generate`), ``fids``
    (one FID per reference set, ``"recon"`` and ``"test"``, sharing one extractor),
    ``reference_features`` and ``reference_radii`` (per reference set, its squared k-NN radii by
    ``k``, computed by the first sampler's precision/recall and reused by the others), and
    ``metrics`` throughout. ``fid_unavailable``: why there are
    no FID-type metrics, ``None`` when there are (set by :func:`fid_unavailable`, once).
    """

    model: nn.Module
    test_images: torch.Tensor
    objective: str
    opts: EvalConfig = field(default_factory=EvalConfig)
    test_labels: torch.Tensor | None = None
    classes: tuple[str, ...] | None = None
    train: Any = None
    run_dir: Path | None = None
    out_dir: Path | None = None
    config: Any = None
    log: Callable[[str], None] = silent
    mu: torch.Tensor | None = None
    logvar: torch.Tensor | None = None
    latents: torch.Tensor | None = None
    x_test: torch.Tensor | None = None
    x_hat: torch.Tensor | None = None
    fitted: dict[str, Any] = field(default_factory=dict)
    fit_errors: dict[str, str] = field(default_factory=dict)
    samples: dict[str, torch.Tensor] = field(default_factory=dict)
    fids: dict[str, FID] = field(default_factory=dict)
    reference_features: dict[str, np.ndarray] = field(default_factory=dict)
    reference_radii: dict[str, dict[int, torch.Tensor]] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    fid_unavailable: str | None = None
    fid_checked: bool = False

    @property
    def device(self) -> str:
        return self.opts.device

    @property
    def samplers(self) -> tuple[str, ...]:
        """The samplers to evaluate, main sampler first (:func:`samplers_for`)."""
        return samplers_for(self.objective, self.opts.samplers)


def add_warning(ctx: EvalContext, warning: str) -> None:
    """A warning to the log and to ``metrics["warnings"]`` (printed after the table)."""
    _LOG.warning(warning)
    ctx.metrics.setdefault("warnings", []).append(warning)


def fid_unavailable(ctx: EvalContext) -> str | None:
    """Why ``ctx`` gets no FID-type metrics (FID, KID, precision/recall, tangent-noise FID),
    or ``None`` when its backbone can be built (or ``ctx.fids`` are given); checked once,
    before any expensive stage.

    A backbone the data cannot feed (the domain classifier and a training split without
    labels, ``BackboneUnavailableError``) only drops those metrics: the reason goes to the
    log and to ``metrics["warnings"]``. Anything else stops here, before any work: the
    user's inputs are wrong (an unknown backbone, a missing Inception weights file).
    """
    from spherevae.evaluation.features import BackboneUnavailableError, check_backbone

    if ctx.fids:  # built already (or given by hand): usable
        return None
    if not ctx.fid_checked:
        try:
            check_backbone(ctx.opts.backbone, dataset=ctx.train, weights=ctx.opts.inception_weights)
        except BackboneUnavailableError as exc:
            ctx.fid_unavailable = f"no FID, KID or precision/recall: {exc}"
            add_warning(ctx, ctx.fid_unavailable)
        ctx.fid_checked = True
    return ctx.fid_unavailable


def check_sample_memory(ctx: EvalContext, memory: int | None = None) -> None:
    """Stop before any work when the decoded samples cannot fit in memory.

    Generation keeps ``num_samples`` float32 images per sampler until the FID stage:
    ``len(samplers) x num_samples x C x H x W x 4`` bytes. Above half of ``memory`` (default:
    this machine's RAM; the rest is for features, the model and the figures) a
    ``ValueError`` says so in one line, with a size that would fit.
    """
    memory = physical_memory() if memory is None else memory
    if memory is None:
        return
    opts, per_image = ctx.opts, 4 * int(ctx.test_images[0].numel())
    need = len(ctx.samplers) * opts.num_samples * per_image
    if need > memory // 2:
        fits = memory // 2 // (len(ctx.samplers) * per_image)
        raise ValueError(
            f"--num-samples {opts.num_samples} needs about {need / 2**30:.1f} GiB for the decoded "
            f"samples of {len(ctx.samplers)} samplers, more than half of this machine's "
            f"{memory / 2**30:.1f} GiB: use at most {fits} samples, or fewer --samplers"
        )


def stage_result(ctx: EvalContext, name: str, stage: str) -> Any:
    """``ctx.<name>``, or an error naming the stage that makes it."""
    value = getattr(ctx, name)
    if value is None or (isinstance(value, dict) and not value):
        raise ValueError(f"evaluation context has no {name!r}: run the {stage!r} stage first")
    return value


def decode_images(ctx: EvalContext, z: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] on the CPU, float32, of latents ``z`` ``(N, n)``, decoded in batches
    by the one decode helper, :func:`spherevae.models.inference.decode_samples`."""
    from spherevae.models.inference import decode_samples

    images = decode_samples(ctx.model, z, ctx.opts.batch_size, out_device="cpu", validate=False)
    return images.float().clamp_(0.0, 1.0)


def stage_generator(seed: int, name: str) -> torch.Generator:
    """A generator for one named random stage, so that adding or reordering samplers
    or stages does not change the draws of the others."""
    return torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
