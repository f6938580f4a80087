"""Feature backbones for FID, KID and precision/recall, registered as specs.

:data:`FEATURE_BACKBONES` maps a backbone name to a :class:`BackboneSpec`: a builder
(``build(dataset, *, weights, device, seed) -> extractor``, the extractor any callable
from float images ``(N, C, H, W)`` in [0, 1] to features ``(N, D)``), the batch size it
runs at and a label for titles and logs. Metric keys carry the name (``fid_domain_...``).
Adding a backbone is one entry in that dict (docs/design.md, "Adding a feature backbone").

- ``"domain"``: the ``domain-v3`` features of the domain ResNet
  (:mod:`spherevae.evaluation.featnet`: spatial mean and std of every stage): shipped
  trained for Fashion-MNIST (seeds 0-8), trained once by its recipe and cached for other
  labelled datasets. Its FIDs compare runs with each other; they are NOT comparable to
  published Inception FIDs.
- ``"domain-x2"``: the ``domain-v3`` features of two networks at once
  (:class:`~spherevae.evaluation.featnet.FeatEnsemble`; ensemble seed ``s`` = networks
  ``2s`` and ``2s + 1``, shipped for Fashion-MNIST seeds 0-2): twice the extraction cost
  for FIDs that depend less on which networks were trained (Fig 1: median CV over the
  feature seeds 5.1% -> 2.8% vs the reconstructions, 9.9% -> 3.6% vs the real test set,
  docs/evaluation.md). Its FIDs are 2-15% above the mean of its members' ``domain`` FIDs:
  not interchangeable with them.
- ``"domain-x3"``: the same with three networks (ensemble seed ``s`` = networks ``3s`` to
  ``3s + 2``, shipped for Fashion-MNIST seeds 0-2): three times the extraction cost
  (docs/evaluation.md has what it measured).
- ``"domain-v2"``: the same networks read out as before 2026-12-07 (spatial mean of the
  last two stages), kept for comparison.
- ``"domain-v1"``: the old small CNN (:class:`~spherevae.evaluation.domain.DomainClassifier`,
  2 epochs), kept for comparison; it is below the quality floor (:data:`FEATURE_FLOORS`),
  so evaluate refuses it unless ``allow_weak_features``.
- ``"inception"``: Inception-v3 FID features from a local weights file, never downloaded
  (:mod:`spherevae.evaluation.inception`, which says which network that is). Only
  ``fid_inception_*`` numbers are comparable to published FIDs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from spherevae.evaluation.domain import domain_backbone
from spherevae.evaluation.featnet import (
    FeatEnsemble,
    featnet_backbone,
    featnet_ensemble,
)
from spherevae.evaluation.inception import _check_inception, inception_backbone

__all__ = [
    "FEATURE_BACKBONES",
    "FEATURE_FLOORS",
    "BackboneSpec",
    "BackboneUnavailableError",
    "WeakFeaturesError",
    "backbone_extractor",
    "check_backbone",
    "check_feature_quality",
    "extract_features",
    "feature_quality",
]

# images (N, C, H, W) float in [0, 1] -> features (N, D)
Extractor = Callable[[torch.Tensor], torch.Tensor]


class BackboneUnavailableError(ValueError):
    """The data lacks what the backbone needs (the domain classifier and a training split
    without labels): nothing the user typed is wrong, so evaluation goes on without the
    metrics of these features (``spherevae.evaluation.pipeline``)."""


# ------------------------------------------------------------------ domain classifier


def _check_domain(dataset: Any = None, weights: str | None = None) -> None:
    """``FEATURE_BACKBONES["domain"].check``: the training split has class labels, else
    :class:`BackboneUnavailableError` (a flat image folder has none)."""
    del weights
    if dataset is None or getattr(dataset, "labels", None) is None:
        raise BackboneUnavailableError(
            "the domain FID backbone is a classifier trained on the class labels of the training "
            "data, which has none (e.g. a flat image folder): for FID, KID and precision/recall put "
            "the images in class subfolders, or use --backbone inception --inception-weights FILE"
        )


def _build_domain(dataset: Any = None, *, weights: str | None = None, device: str = "cpu",
                  seed: int = 0) -> nn.Module:
    _check_domain(dataset, weights)
    return featnet_backbone(dataset, seed=seed, device=device, readout="domain-v3")


def _build_domain_v2(dataset: Any = None, *, weights: str | None = None, device: str = "cpu",
                     seed: int = 0) -> nn.Module:
    _check_domain(dataset, weights)
    return featnet_backbone(dataset, seed=seed, device=device, readout="domain-v2")


def _domain_ensemble(size: int) -> Callable[..., nn.Module]:
    """The builder of backbone ``domain-x<size>``: ensemble ``seed`` of ``size`` networks."""

    def build(dataset: Any = None, *, weights: str | None = None, device: str = "cpu", seed: int = 0) -> nn.Module:
        _check_domain(dataset, weights)
        return featnet_ensemble(dataset, seed=seed, size=size, device=device, readout="domain-v3")

    return build


def _build_domain_v1(dataset: Any = None, *, weights: str | None = None, device: str = "cpu",
                     seed: int = 0) -> nn.Module:
    _check_domain(dataset, weights)
    return domain_backbone(dataset, seed=seed, device=device)


# ------------------------------------------------------------------ the registry


@dataclass(frozen=True)
class BackboneSpec:
    """One entry of :data:`FEATURE_BACKBONES`.

    ``build(dataset=None, *, weights=None, device="cpu", seed=0)`` returns the extractor:
    a module with a ``features(x)`` method, or any callable ``x -> (N, D)`` features of
    float images ``x`` ``(N, C, H, W)`` in [0, 1]. ``dataset`` is the training split
    (``images`` uint8, ``labels``; for backbones trained on the data), ``weights`` a local
    weights file. ``batch_size``: images per extractor call. ``label``: what the features
    are, for titles and logs. ``check(dataset, weights)``, optional: raises, cheaply and
    before any work, what ``build`` would raise for these inputs
    (:class:`BackboneUnavailableError` when the data lacks what it needs; any other error
    when the user's inputs are wrong, e.g. a missing weights file); ``None``: nothing to check.
    ``quality_floor``: evaluate refuses this network below :data:`FEATURE_FLOORS` (its
    quality is measured and stored for every backbone).
    """

    build: Callable[..., Any]
    batch_size: int
    label: str
    check: Callable[[Any, str | None], None] | None = None
    quality_floor: bool = False


# Only "inception" FIDs are comparable to published numbers; "domain" FIDs compare runs
# with each other. Inception runs at 299x299: smaller batches keep memory modest on CPU.
# The domain ResNet runs at 128: its activations then stay in a CPU's caches (with its
# channels-last layout 1.2-1.5x faster than 500, docs/benchmarks.md#feature-extraction);
# batches of 7 to 600 give identical features, a batch of one differs in float32's last bits.
FEATURE_BACKBONES: dict[str, BackboneSpec] = {
    "domain": BackboneSpec(_build_domain, 128, "domain-v3 features", _check_domain, True),
    "domain-x2": BackboneSpec(_domain_ensemble(2), 128, "domain-v3 features of two networks (ensemble)",
                              _check_domain, True),
    "domain-x3": BackboneSpec(_domain_ensemble(3), 128, "domain-v3 features of three networks (ensemble)",
                              _check_domain, True),
    "domain-v2": BackboneSpec(_build_domain_v2, 128, "domain-v2 features (before 2026-12-07)", _check_domain, True),
    "domain-v1": BackboneSpec(_build_domain_v1, 500, "domain-v1 features (old)", _check_domain, True),
    "inception": BackboneSpec(inception_backbone, 50, "Inception (pytorch-fid weights)", _check_inception),
}


def check_backbone(name: str, *, dataset: Any = None, weights: str | None = None) -> None:
    """Raise now what building the backbone ``name`` for ``dataset`` and ``weights`` would
    raise later (its spec's ``check``): :class:`BackboneUnavailableError` when the data
    lacks what it needs, :class:`InceptionWeightsNotFoundError` for a missing weights file,
    ``ValueError`` for an unknown name."""
    from spherevae._utils.validation import check_choice

    check_choice(name, "FID backbone", FEATURE_BACKBONES)
    spec = FEATURE_BACKBONES[name]
    if spec.check is not None:
        spec.check(dataset, weights)


def backbone_extractor(name: str, *, dataset: Any = None, weights: str | None = None,
                       device: str = "cpu", seed: int = 0) -> Any:
    """Build the extractor of the registered backbone ``name``."""
    from spherevae._utils.validation import check_choice

    check_choice(name, "FID backbone", FEATURE_BACKBONES)
    return FEATURE_BACKBONES[name].build(dataset, weights=weights, device=device, seed=seed)


@torch.no_grad()
def extract_features(extractor: Any, images: torch.Tensor, *, batch_size: int = 500,
                     device: str | torch.device = "cpu") -> np.ndarray:
    """Features ``(N, D)`` float64 of float images ``(N, C, H, W)`` in [0, 1], ``batch_size``
    images at a time on ``device``. ``extractor``: a module whose ``features`` method
    gives them (the module is put in eval mode), or any callable ``images -> features``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(extractor, nn.Module):
        extractor.eval()
    extract = getattr(extractor, "features", extractor)
    out = [torch.as_tensor(extract(images[i : i + batch_size].to(device).float())).double().cpu()
           for i in range(0, images.shape[0], batch_size)]
    return torch.cat(out).numpy()


# ------------------------------------------------------------------ feature quality

# The floor below which evaluate refuses a feature network (unless allow_weak_features):
# its own classifier head's test accuracy (classifier backbones only) and the participation
# ratio of the test features' covariance (a 10-class simplex alone gives 9).
FEATURE_FLOORS: dict[str, float] = {"test_accuracy": 0.85, "effective_dim": 4.0}


class WeakFeaturesError(ValueError):
    """A feature network below :data:`FEATURE_FLOORS` (evaluate ``--allow-weak-features``)."""


def feature_quality(extractor: Any, test_features: Any, images: torch.Tensor | None = None,
                    labels: torch.Tensor | None = None, *, batch_size: int = 500,
                    device: str | torch.device = "cpu") -> dict[str, float | int | None]:
    """How informative a feature network is on the test set.

    ``test_features`` ``(N, D)``: its features of the real test images. Returns
    ``effective_dim``, the participation ratio ``(sum l)^2 / sum l^2`` of the eigenvalues
    ``l`` of their covariance (1: one direction; D: isotropic), ``dead_units``, features
    whose std over the set is below 1e-6, ``feature_dim`` ``D``, and ``test_accuracy``:
    the accuracy of the network's own classifier head (an ``nn.Module`` with a ``head``
    whose forward gives logits ``(N, classes)``, or a ``FeatEnsemble``, whose forward gives
    the log of the members' mean class probabilities) on float ``images`` ``(N, C, H, W)`` with
    ``labels`` ``(N,)``, ``None`` for a network without a head or without labels.
    """
    f = np.asarray(test_features, dtype=np.float64)
    lam = np.clip(np.linalg.eigvalsh(np.cov(f, rowvar=False)), 0.0, None)
    out: dict[str, float | int | None] = {
        "effective_dim": float(lam.sum() ** 2 / max((lam ** 2).sum(), 1e-300)),
        "dead_units": int((f.std(0) < 1e-6).sum()), "feature_dim": int(f.shape[1]), "test_accuracy": None}
    classifier = hasattr(extractor, "head") or isinstance(extractor, FeatEnsemble)
    if isinstance(extractor, nn.Module) and classifier and images is not None and labels is not None:
        extractor.eval()
        with torch.no_grad():
            pred = torch.cat([extractor(images[i:i + batch_size].to(device).float()).argmax(1).cpu()
                              for i in range(0, images.shape[0], batch_size)])
        out["test_accuracy"] = float((pred == labels.cpu()).double().mean())
    return out


def check_feature_quality(quality: dict[str, Any], backbone: str) -> None:
    """Raise :class:`WeakFeaturesError` (one line) when ``quality`` (of
    :func:`feature_quality`) is below :data:`FEATURE_FLOORS`."""
    low = [f"{name} {quality[name]:.3g} < {floor:g}" for name, floor in FEATURE_FLOORS.items()
           if quality.get(name) is not None and quality[name] < floor]
    if low:
        raise WeakFeaturesError(f"feature network {backbone!r} is below the floor ({', '.join(low)}): "
                                "its FIDs would not be trustworthy; use another --backbone (domain is shipped "
                                "for fashion-mnist), or pass --allow-weak-features to evaluate with it anyway")
