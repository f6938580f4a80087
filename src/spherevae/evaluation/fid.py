"""Metrics, pure math (no training, caching or file IO: feature backbones live in
:mod:`spherevae.evaluation.features`): reconstruction, FID and KID, precision/recall, k-NN accuracy
(those two from :mod:`spherevae.evaluation.knn`), posterior collapse, the replica angle and the
latents' tangent spectrum.

:class:`FID` and :class:`KID` follow torchmetrics' lifecycle: ``update(images, real=...)``
any number of times, ``compute()``, ``reset()``; the feature extractor is injected (any
callable from images to features, or ``FID.from_backbone(name)`` for a registered one).
``domain`` FIDs are NOT comparable to published Inception FIDs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from spherevae.evaluation.features import FEATURE_BACKBONES  # what FID.from_backbone builds
from spherevae.evaluation.knn import _as_f64

__all__ = [
    "FID",
    "KID",
    "FeatureStats",
    "fid_bootstrap_std",
    "fid_bootstrap_stds",
    "fid_sample_warning",
    "frechet_distance",
    "frechet_distance_from_stats",
    "kid",
    "kid_with_se",
    "psd_sqrt",
]


def psd_sqrt(s: np.ndarray) -> np.ndarray:
    """The symmetric square root ``(D, D)`` of a symmetric PSD matrix, by eigh (tiny
    negative eigenvalues from rounding clipped to 0)."""
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance_from_stats(
    mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray, *, root1: np.ndarray | None = None
) -> float:
    """|mu1-mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^{1/2}), in float64.

    tr((S1 S2)^{1/2}) = sum of sqrt of the eigenvalues of A S2 A with A = S1^{1/2}
    (symmetric PSD, so eigh is stable; tiny negative eigenvalues from rounding are clipped).
    ``root1``: ``psd_sqrt(s1)`` when the caller has it (a fixed set compared with many).
    """
    a = psd_sqrt(s1) if root1 is None else root1
    m = a @ s2 @ a
    eig = np.linalg.eigvalsh((m + m.T) / 2)
    tr_sqrt = np.sqrt(np.clip(eig, 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt)


def frechet_distance(feats_a: Any, feats_b: Any) -> float:
    """Fréchet distance between Gaussians fitted to two (N, D) feature arrays."""
    a, b = _as_f64(feats_a), _as_f64(feats_b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"FID needs features of the same dimension, got {a.shape} and {b.shape}")
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError(f"FID needs at least 2 samples in each set (a covariance), got "
                         f"{a.shape[0]} and {b.shape[0]}")
    return frechet_distance_from_stats(
        a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
    )


def fid_sample_warning(n_a: int, n_b: int, dim: int) -> str | None:
    """A warning when a set is smaller than the feature dimension ``dim``: its covariance
    is then singular and the FID mostly measures the sample size, not the images."""
    small = min(n_a, n_b)
    if small >= dim:
        return None
    return (f"FID on {n_a} vs {n_b} samples with {dim}-dimensional features: a set smaller "
            f"than the feature dimension has a singular covariance, so this FID is not "
            f"meaningful; use at least {dim} images per set (more than 2000 to compare runs)")


def _kid_values(feats_a: Any, feats_b: Any, subsets: int, subset_size: int, seed: int) -> np.ndarray:
    """Unbiased MMD^2 ``(subsets,)`` of random subset pairs, k(x,y) = (x.y/d + 1)^3."""
    a, b = _as_f64(feats_a), _as_f64(feats_b)
    m = min(subset_size, a.shape[0], b.shape[0])
    d = a.shape[1]
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(subsets):
        x = a[rng.choice(a.shape[0], m, replace=False)]
        y = b[rng.choice(b.shape[0], m, replace=False)]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        vals.append(
            (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
            + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
            - 2 * kxy.mean()
        )
    return np.asarray(vals)


def kid(feats_a: Any, feats_b: Any, *, subsets: int = 20, subset_size: int = 1000, seed: int = 0) -> float:
    """Kernel Inception Distance: unbiased MMD^2 with k(x,y) = (x.y/d + 1)^3, averaged
    over random subsets (same estimator as Bińkowski et al. 2018)."""
    return float(_kid_values(feats_a, feats_b, subsets, subset_size, seed).mean())


def kid_with_se(feats_a: Any, feats_b: Any, *, subsets: int = 20, subset_size: int = 1000,
                seed: int = 0) -> tuple[float, float]:
    """:func:`kid` (the same draws) and its standard error over the subsets,
    ``std(ddof=1) / sqrt(subsets)`` (``nan`` for one subset)."""
    vals = _kid_values(feats_a, feats_b, subsets, subset_size, seed)
    se = float(vals.std(ddof=1) / np.sqrt(vals.size)) if vals.size > 1 else float("nan")
    return float(vals.mean()), se


def fid_bootstrap_std(real_feats: Any, fake_feats: Any, *, rounds: int = 10, seed: int = 0) -> float:
    """Spread of the FID over the draw of the generated set: the std (``ddof=1``) of
    ``frechet_distance(real, fake[idx])`` over ``rounds`` resamples ``idx`` of the rows of
    ``fake`` ``(M, D)`` with replacement (``numpy.random.default_rng(seed)``); the
    reference ``real`` ``(N, D)`` is fixed, as it is shared by every sampler compared."""
    return fid_bootstrap_stds({"real": FeatureStats.of(real_feats)}, fake_feats, rounds=rounds, seed=seed)["real"]


def _rooted(name: str, stats: FeatureStats) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, covariance, psd_sqrt(covariance)) of the statistics of reference ``name``."""
    if stats.count < 2 or stats.mean is None:
        raise ValueError(f"fid_bootstrap_stds: reference {name!r} has {stats.count} feature rows, needs at least 2")
    cov = stats.covariance
    return stats.mean, cov, psd_sqrt(cov)


def fid_bootstrap_stds(references: Mapping[str, FeatureStats], fake_feats: Any, *, rounds: int = 10,
                       seed: int = 0) -> dict[str, float]:
    """:func:`fid_bootstrap_std` of ``fake_feats`` ``(M, D)`` against each reference (name ->
    its statistics), the same resamples for all: each resample's mean and covariance, and
    each reference's square root, are computed once, not once per pair. Equal, to the bit,
    to one ``fid_bootstrap_std(rows, ...)`` per reference with the same ``seed`` when each
    reference's statistics come from one ``update`` (``FeatureStats.of(rows)``)."""
    if rounds < 2:
        raise ValueError(f"fid_bootstrap_stds needs rounds >= 2, got {rounds}")
    if not references:
        raise ValueError("fid_bootstrap_stds needs at least one reference")
    b = _as_f64(fake_feats)
    refs = {k: _rooted(k, r) for k, r in references.items()}
    for k, (mu_a, _, _) in refs.items():
        if b.ndim != 2 or b.shape[0] < 2 or b.shape[1] != mu_a.shape[0]:
            raise ValueError(f"fid_bootstrap_stds needs generated features (M >= 2, {mu_a.shape[0]}) to match "
                             f"reference {k!r}, got {b.shape}")
    rng = np.random.default_rng(seed)
    vals: dict[str, list[float]] = {k: [] for k in refs}
    for _ in range(rounds):  # a handful of resamples; each is one (M, D) covariance
        x = b[rng.integers(0, b.shape[0], b.shape[0])]
        mu, cov = x.mean(0), np.cov(x, rowvar=False)
        for k, (mu_a, cov_a, root_a) in refs.items():
            vals[k].append(frechet_distance_from_stats(mu_a, cov_a, mu, cov, root1=root_a))
    return {k: float(np.std(v, ddof=1)) for k, v in vals.items()}


class FeatureStats:
    """Running mean and covariance of feature rows ``(N, D)``, in float64, storing no rows.

    Each :meth:`update` merges the batch's mean and centred co-moment into the running
    ones (Chan, Golub and LeVeque's pairwise update), so no large sums are subtracted
    from each other: after any split of the rows into batches the statistics equal those
    of all rows at once to rounding, and after one update they are exactly ``x.mean(0)``
    and ``np.cov(x, rowvar=False)`` (what :func:`frechet_distance` uses). Memory:
    ``D + D^2`` floats.
    """

    def __init__(self) -> None:
        self.count = 0
        self.mean: np.ndarray | None = None
        self._cov: np.ndarray | None = None

    @classmethod
    def of(cls, feats: Any) -> FeatureStats:
        """The statistics of ``feats`` ``(N, D)`` in one update."""
        stats = cls()
        stats.update(feats)
        return stats

    def update(self, feats: Any) -> None:
        """Add the rows of ``feats`` ``(N, D)`` (array or tensor, finite)."""
        x = _as_f64(feats)
        n_b = x.shape[0]
        if n_b == 0:
            return
        if self.mean is not None and x.shape[1] != self.mean.shape[0]:
            raise ValueError(f"features of dimension {x.shape[1]} added to statistics of dimension {self.mean.shape[0]}")
        mean_b = x.mean(0)
        cov_b = np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1]) if n_b > 1 else np.zeros((x.shape[1],) * 2)
        if self.mean is None or self._cov is None:
            self.count, self.mean, self._cov = n_b, mean_b, cov_b
            return
        n = self.count + n_b
        delta = mean_b - self.mean
        comoment = (self._cov * (self.count - 1) + cov_b * (n_b - 1)
                    + np.outer(delta, delta) * (self.count * n_b / n))
        self.mean = self.mean + delta * (n_b / n)
        self._cov = comoment / (n - 1)
        self.count = n

    @property
    def covariance(self) -> np.ndarray:
        """Unbiased covariance ``(D, D)`` (needs at least 2 rows)."""
        if self.count < 2 or self._cov is None:
            raise ValueError(f"a covariance needs at least 2 feature rows, got {self.count}")
        return self._cov


class _FeatureMetric:
    """What :class:`FID` and :class:`KID` share: the injected extractor, ``update`` on
    images or on features, and ``reset`` (of the real side too unless
    ``reset_real_features`` is false: a fixed reference compared with many fakes)."""

    def __init__(self, extractor: Any = None, backbone_name: str = "custom", device: str = "cpu",
                 batch_size: int = 500, *, reset_real_features: bool = True) -> None:
        self.extractor = extractor
        self.backbone_name = backbone_name
        self.device = device
        self.batch_size = batch_size
        self.reset_real_features = reset_real_features
        self._clear(real=True)
        self._clear(real=False)

    @classmethod
    def from_backbone(cls, name: str, *, dataset: Any = None, weights: str | None = None,
                      device: str = "cpu", seed: int = 0, **kwargs: Any) -> Any:
        """With the extractor of the registered backbone ``name``
        (:data:`spherevae.evaluation.features.FEATURE_BACKBONES`) at its batch size."""
        from spherevae.evaluation.features import backbone_extractor

        extractor = backbone_extractor(name, dataset=dataset, weights=weights, device=device, seed=seed)
        return cls(extractor, name, device, FEATURE_BACKBONES[name].batch_size, **kwargs)

    def features(self, images: torch.Tensor) -> np.ndarray:
        """Features ``(N, D)`` float64 of float images ``(N, C, H, W)`` in [0, 1]."""
        from spherevae.evaluation.features import extract_features

        if self.extractor is None:
            raise ValueError(f"{type(self).__name__} has no feature extractor: use update_features")
        return extract_features(self.extractor, images, batch_size=self.batch_size, device=self.device)

    def update(self, images: torch.Tensor, real: bool) -> None:
        """Add images ``(N, C, H, W)`` in [0, 1] to the real or the generated side."""
        self.update_features(self.features(images), real)

    def update_features(self, feats: Any, real: bool) -> None:
        """Add feature rows ``(N, D)`` directly (features computed once, used by several metrics)."""
        raise NotImplementedError

    def reset(self) -> None:
        self._clear(real=False)
        if self.reset_real_features:
            self._clear(real=True)

    def _clear(self, *, real: bool) -> None:
        raise NotImplementedError


class FID(_FeatureMetric):
    """Fréchet distance between Gaussians fitted to real and generated features.

    Streaming: each side keeps a :class:`FeatureStats` (running float64 mean and
    co-moment), never the features, so ``update`` may be called on any number of
    batches. ``compute()`` equals :func:`frechet_distance` of all rows at once.
    ``extractor``: a module with ``features(x)``, or any callable images -> ``(N, D)``.
    """

    def update_features(self, feats: Any, real: bool) -> None:
        (self.real if real else self.fake).update(feats)

    def compute(self) -> float:
        for side, stats in (("real", self.real), ("generated", self.fake)):
            if stats.count < 2:
                raise ValueError(f"FID needs at least 2 {side} samples (a covariance), got {stats.count}")
        assert self.real.mean is not None and self.fake.mean is not None
        # Generated first, as frechet_distance(generated, real) orders them.
        return frechet_distance_from_stats(self.fake.mean, self.fake.covariance,
                                           self.real.mean, self.real.covariance)

    def _clear(self, *, real: bool) -> None:
        if real:
            self.real = FeatureStats()
        else:
            self.fake = FeatureStats()

    @staticmethod
    def distance(feats_a: Any, feats_b: Any) -> float:
        return frechet_distance(feats_a, feats_b)


class KID(_FeatureMetric):
    """Kernel Inception Distance (:func:`kid`) between real and generated features.

    The unbiased estimator averages over random subsets of the rows, so each side keeps
    its feature rows (``N x D`` float64), unlike :class:`FID`. ``compute()`` equals
    ``kid(generated, real, subsets=..., subset_size=..., seed=...)``.
    """

    def __init__(self, extractor: Any = None, backbone_name: str = "custom", device: str = "cpu",
                 batch_size: int = 500, *, subsets: int = 20, subset_size: int = 1000, seed: int = 0,
                 reset_real_features: bool = True) -> None:
        self.subsets, self.subset_size, self.seed = subsets, subset_size, seed
        super().__init__(extractor, backbone_name, device, batch_size, reset_real_features=reset_real_features)

    def update_features(self, feats: Any, real: bool) -> None:
        (self.real if real else self.fake).append(_as_f64(feats))

    def compute(self) -> float:
        if not self.real or not self.fake:
            raise ValueError("KID needs real and generated features: call update first")
        return kid(np.concatenate(self.fake), np.concatenate(self.real), subsets=self.subsets,
                   subset_size=self.subset_size, seed=self.seed)

    def _clear(self, *, real: bool) -> None:
        if real:
            self.real: list[np.ndarray] = []
        else:
            self.fake: list[np.ndarray] = []


# ------------------------------------------------------------------ latent diagnostics


