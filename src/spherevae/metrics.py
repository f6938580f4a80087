"""Metrics: reconstruction, FID (pluggable feature backbones), precision/recall, KID,
k-NN accuracy on latents, posterior collapse and the replica angle.

FID names always carry the backbone (``fid_domain_...``). The ``domain`` backbone
is a small classifier trained here on the dataset itself: its FIDs measure the same
thing on a different feature space and are NOT comparable to published Inception FIDs.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from spherevae._validation import check_same_shape

__all__ = [
    "FEATURE_BACKBONES",
    "FID",
    "DomainClassifier",
    "collapse_stats",
    "fid_sample_warning",
    "frechet_distance",
    "frechet_distance_from_stats",
    "kid",
    "knn_accuracy",
    "perturb_tangent",
    "posterior_sigma_summary",
    "precision_recall",
    "reconstruction_metrics",
    "replica_angles",
    "tangent_effective_dim",
    "tangent_spectrum",
]


def reconstruction_metrics(x: torch.Tensor, x_hat: torch.Tensor) -> dict[str, float]:
    """``mse_sum``: squared error summed over pixels, mean over images (the loss's scale);
    ``rmse_percent``: 100*sqrt(mean squared error per pixel), images in [0, 1] (the
    scale of the paper's reported "MSE", see docs/objectives.md)."""
    check_same_shape(x, x_hat, "x", "x_hat")
    se = (x.double() - x_hat.double()).pow(2)
    return {
        "mse_sum": float(se.flatten(1).sum(1).mean()),
        "rmse_percent": float(100.0 * se.mean().sqrt()),
    }


def _as_f64(a: Any) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"features must have shape (N, D), got {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError("features must be finite")
    return a


def frechet_distance_from_stats(
    mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray
) -> float:
    """|mu1-mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^{1/2}), in float64.

    tr((S1 S2)^{1/2}) = sum of sqrt of the eigenvalues of A S2 A with A = S1^{1/2}
    (symmetric PSD, so eigh is stable; tiny negative eigenvalues from rounding are clipped).
    """
    w1, v1 = np.linalg.eigh(s1)
    a = (v1 * np.sqrt(np.clip(w1, 0, None))) @ v1.T
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


def precision_recall(real: Any, fake: Any, *, k: int = 3, chunk: int = 2048) -> dict[str, float]:
    """Improved precision/recall (Kynkäänniemi et al. 2019) with k-NN manifold radii."""
    r = torch.from_numpy(_as_f64(real))
    f = torch.from_numpy(_as_f64(fake))

    def radii(x: torch.Tensor) -> torch.Tensor:
        out = []
        for i in range(0, x.shape[0], chunk):
            d = torch.cdist(x[i : i + chunk], x)
            out.append(d.kthvalue(k + 1, dim=1).values)  # +1: the point itself
        return torch.cat(out)

    def coverage(points: torch.Tensor, ref: torch.Tensor, ref_radii: torch.Tensor) -> float:
        inside = []
        for i in range(0, points.shape[0], chunk):
            d = torch.cdist(points[i : i + chunk], ref)
            inside.append((d <= ref_radii[None]).any(1))
        return float(torch.cat(inside).double().mean())

    return {"precision": coverage(f, r, radii(r)), "recall": coverage(r, f, radii(f))}


def kid(feats_a: Any, feats_b: Any, *, subsets: int = 20, subset_size: int = 1000, seed: int = 0) -> float:
    """Kernel Inception Distance: unbiased MMD^2 with k(x,y) = (x.y/d + 1)^3, averaged
    over random subsets (same estimator as Bińkowski et al. 2018)."""
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
    return float(np.mean(vals))


def knn_accuracy(
    train_z: torch.Tensor, train_y: torch.Tensor, test_z: torch.Tensor, test_y: torch.Tensor,
    *, k: int = 5, metric: str = "euclidean", chunk: int = 1024,
) -> float:
    """Accuracy of a k-NN majority vote (ties: smallest label) fitted on ``train_z``.

    Protocol used in our results (the paper does not state one): fit on training-set
    encoder means, evaluate on test-set means, k = 5, Euclidean distance.
    """
    if metric not in ("euclidean", "cosine"):
        raise ValueError(f"metric must be one of ['cosine', 'euclidean'], got {metric!r}")
    tr, te = train_z.float(), test_z.float()
    if metric == "cosine":
        tr = tr / tr.norm(dim=1, keepdim=True).clamp_min(1e-12)
        te = te / te.norm(dim=1, keepdim=True).clamp_min(1e-12)
    num_classes = int(train_y.max()) + 1
    correct = 0
    for i in range(0, te.shape[0], chunk):
        d = torch.cdist(te[i : i + chunk], tr)
        nn_idx = d.topk(k, dim=1, largest=False).indices
        votes = torch.zeros(nn_idx.shape[0], num_classes).scatter_add_(
            1, train_y[nn_idx], torch.ones(nn_idx.shape, dtype=torch.float32)
        )
        correct += int((votes.argmax(1) == test_y[i : i + chunk]).sum())
    return correct / te.shape[0]


def collapse_stats(
    mu: torch.Tensor,
    *,
    threshold: float = 0.05,
    logvar: torch.Tensor | None = None,
    kl_threshold: float = 0.01,
) -> dict[str, Any]:
    """Posterior collapse (A.6-A.7), three ways.

    ``mu`` (N, n): encoder means over a data set. Per-dimension std of ``mu`` and the
    number of dimensions under ``threshold`` times the *mean* std, in Cartesian
    coordinates and in the cosines of the hyperspherical angles (the paper's histogram
    criterion, made scale-free so it works for the standard and the projected model; the
    mean, not the median, because with more than half collapsed the median is collapsed).

    With ``logvar`` (N, n): also the data-averaged KL of each dimension's posterior to
    N(0, 1), ``kl_per_dim`` (nats), and ``collapsed_kl``, the count under ``kl_threshold``
    (Lucas et al. 2019's delta-collapse, delta = 0.01 nats): the definition the paper quotes
    ("the variational posterior collapses to the prior"). It only means something for a
    model whose prior is N(0, I), i.e. the standard VAE. Short runs can show many
    KL-collapsed dimensions (sigma ~ 1, no information) whose mean still varies a little
    over the data, which the histogram criterion does not count.
    """
    from spherevae.coordinates import hyperspherical_cosines

    std_cart = mu.double().std(0)
    _, cos = hyperspherical_cosines(mu.double())
    std_cos = cos.std(0)
    out: dict[str, Any] = {
        "std_cartesian": std_cart,
        "std_cos_phi": std_cos,
        "collapsed_cartesian": int((std_cart < threshold * std_cart.mean()).sum()),
        "collapsed_cos_phi": int((std_cos < threshold * std_cos.mean()).sum()),
        "threshold_relative": threshold,
    }
    if logvar is not None:
        if logvar.shape != mu.shape:
            raise ValueError(f"collapse_stats: logvar shape {tuple(logvar.shape)} != mu shape {tuple(mu.shape)}")
        m, lv = mu.double(), logvar.double()
        kl = 0.5 * (m.square() + lv.exp() - 1.0 - lv).mean(0)
        out["kl_per_dim"] = kl
        out["collapsed_kl"] = int((kl < kl_threshold).sum())
        out["kl_threshold_nats"] = kl_threshold
    return out


def replica_angles(z: torch.Tensor) -> torch.Tensor:
    """Angles (radians) between each latent and the mean latent (A.8-A.9)."""
    z = z.double()
    mean = z.mean(0)
    cos = (z @ mean) / (z.norm(dim=1) * mean.norm()).clamp_min(1e-300)
    return torch.arccos(cos.clamp(-1.0, 1.0))


def tangent_effective_dim(z: torch.Tensor) -> dict[str, float]:
    """How many directions the latents' spread around their mean direction really uses.

    ``z`` (N, n) is normalised to unit directions u, which are projected onto the tangent
    space of the mean direction m (u - (u.m) m); returns the participation ratio
    ``effective_dim = (sum lambda)^2 / sum lambda^2`` of that projection's covariance
    eigenvalues lambda (1 when all spread lies along one direction, n - 1 when it is
    isotropic), ``max_dim = n - 1``, and ``top_fraction`` = lambda_max / sum lambda.

    Why it matters: a von Mises-Fisher distribution is isotropic around its mean
    direction, so its samples have ``effective_dim`` close to n - 1 whatever the data's.
    When the latents' is much smaller, vMF samples put their spread in directions the
    decoder never saw, and a full-covariance fit (``gaussian_sphere``) is the better sampler.
    The eigenvalues come from the (n, n) covariance: O(N n^2 + n^3), fine for n <= a few
    thousand and run once per evaluation.
    """
    lam = tangent_spectrum(z)
    total = float(lam.sum())
    # Variances of unit vectors: identical rows leave only rounding (~1e-32).
    if total <= 1e-24:
        return {"effective_dim": 0.0, "max_dim": float(z.shape[1] - 1), "top_fraction": 0.0}
    return {
        "effective_dim": total**2 / float((lam**2).sum()),
        "max_dim": float(z.shape[1] - 1),
        "top_fraction": float(lam.max()) / total,
    }


# ------------------------------------------------------------------ feature backbones


class DomainClassifier(nn.Module):
    """A small CNN classifier; its 128-d penultimate layer gives the domain features."""

    VERSION = 1

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
            nn.Linear(256, 128), nn.ReLU(),
        )
        self.head = nn.Linear(128, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _train_domain_classifier(dataset: Any, *, seed: int, epochs: int, device: str) -> nn.Module:
    from spherevae.data import BatchLoader

    torch.manual_seed(seed)  # init only; data order uses the loader's own generator
    num_classes = int(dataset.labels.max()) + 1
    model = DomainClassifier(dataset.images.shape[1], num_classes).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    loader = BatchLoader(dataset, 256, shuffle=True, seed=seed, device=device)
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for x, y in loader:
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()


def domain_backbone(dataset: Any, *, seed: int = 0, epochs: int = 2, device: str = "cpu",
                    cache: str | os.PathLike[str] | None = None) -> nn.Module:
    """The domain classifier for ``dataset``, trained once and cached on disk by
    (dataset name, image shape, seed, epochs, architecture version)."""
    from spherevae.checkpoint import load_checkpoint, save_checkpoint
    from spherevae.data import cache_dir

    key = f"{dataset.name}-{'x'.join(map(str, dataset.images.shape[1:]))}-s{seed}-e{epochs}-v{DomainClassifier.VERSION}"
    key += "-" + hashlib.sha1(dataset.images[:64].numpy().tobytes()).hexdigest()[:8]
    path = Path(cache or cache_dir() / "features") / f"domain-{key}.pt"
    num_classes = int(dataset.labels.max()) + 1
    if path.is_file():
        model = DomainClassifier(dataset.images.shape[1], num_classes)
        model.load_state_dict(load_checkpoint(path)["model"])
        return model.to(device).eval()
    model = _train_domain_classifier(dataset, seed=seed, epochs=epochs, device=device)
    save_checkpoint({"model": {k: v.cpu() for k, v in model.state_dict().items()}}, path)
    return model


def _domain_entry(dataset: Any = None, *, weights: str | None = None, device: str = "cpu",
                  seed: int = 0) -> nn.Module:
    del weights
    if dataset is None or getattr(dataset, "labels", None) is None:
        raise ValueError("the domain backbone needs a labelled training dataset")
    return domain_backbone(dataset, seed=seed, device=device)


def _inception_entry(dataset: Any = None, *, weights: str | None = None, device: str = "cpu",
                     seed: int = 0) -> nn.Module:
    from spherevae.features import inception_backbone

    return inception_backbone(dataset, weights=weights, device=device, seed=seed)


# name -> builder(dataset=None, *, weights=None, device="cpu", seed=0). Only "inception"
# FIDs are comparable to published numbers; "domain" FIDs compare runs with each other.
FEATURE_BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "domain": _domain_entry,
    "inception": _inception_entry,
}


@dataclass
class FID:
    """FID with a pluggable feature extractor: ``features(images)`` then ``distance``."""

    extractor: nn.Module
    backbone_name: str
    device: str = "cpu"
    batch_size: int = 500

    @classmethod
    def from_backbone(cls, name: str, *, dataset: Any = None, weights: str | None = None,
                      device: str = "cpu", seed: int = 0) -> FID:
        if name not in FEATURE_BACKBONES:
            raise ValueError(f"FID backbone must be one of {sorted(FEATURE_BACKBONES)}, got {name!r}")
        extractor = FEATURE_BACKBONES[name](dataset, weights=weights, device=device, seed=seed)
        # Inception runs at 299x299: smaller batches keep memory modest on CPU.
        return cls(extractor, name, device, batch_size=500 if name == "domain" else 50)

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> np.ndarray:
        """Features ``(N, D)`` float64 of float images in [0, 1] ``(N, C, H, W)``."""
        self.extractor.eval()
        out = []
        extract = getattr(self.extractor, "features", self.extractor)
        for i in range(0, images.shape[0], self.batch_size):
            out.append(extract(images[i : i + self.batch_size].to(self.device).float()).double().cpu())
        return torch.cat(out).numpy()

    @staticmethod
    def distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
        return frechet_distance(feats_a, feats_b)


# ------------------------------------------------------------------ latent diagnostics


def tangent_spectrum(z: torch.Tensor) -> torch.Tensor:
    """Eigenvalues, largest first, of the covariance of the latents' tangent components.

    ``z`` (N, n), N >= 2, n >= 2, is normalised to unit directions u; with m the unit
    mean direction, the tangent components are the coordinates of ``u - (u.m) m`` in an
    orthonormal basis of ``m^perp``, and their (unbiased) covariance is ``(n-1, n-1)``.
    Returns the ``n - 1`` eigenvalues (float64, clamped at 0). Its participation ratio
    is :func:`tangent_effective_dim`; a vMF's spectrum is flat (``A_n(kappa)/kappa`` each,
    see ``spherevae.vmf.vmf_tangent_std``).
    """
    from spherevae.vmf import frame_with_first_column

    if z.ndim != 2 or z.shape[1] < 2 or z.shape[0] < 2:
        raise ValueError(f"tangent_spectrum: expected z of shape (N >= 2, n >= 2), got {tuple(z.shape)}")
    u = z.double()
    u = u / u.norm(dim=1, keepdim=True).clamp_min(1e-300)
    m = u.mean(0)
    norm = m.norm()
    m = m / norm if bool(norm > 0) else torch.eye(u.shape[1], dtype=u.dtype)[0]
    tangent = (u @ frame_with_first_column(m))[:, 1:]
    return torch.linalg.eigvalsh(torch.cov(tangent.T).reshape(u.shape[1] - 1, -1)).clamp_min(0.0).flip(0)


def posterior_sigma_summary(logvar: torch.Tensor, *, ratio: float = 10.0) -> dict[str, Any]:
    """Per-dimension posterior scale: ``sigma_per_dim[j] = mean_i exp(0.5 logvar[i, j])``.

    ``logvar`` (N, n): encoder log-variances over a data set. Returns ``sigma_per_dim``
    (n,) float64 and its summary: ``sigma_max``, ``sigma_median`` and
    ``sigma_dims_above_ratio`` (how many dims exceed ``ratio`` times the median; the
    quickstart compressed model had one dim at 6.8 and the rest at 0.002-0.05).
    """
    if logvar.ndim != 2 or logvar.shape[0] < 1:
        raise ValueError(f"posterior_sigma_summary: expected logvar of shape (N >= 1, n), got {tuple(logvar.shape)}")
    sigma = torch.exp(0.5 * logvar.double()).mean(0)
    median = float(sigma.median())
    return {
        "sigma_per_dim": sigma,
        "sigma_max": float(sigma.max()),
        "sigma_median": median,
        "sigma_dims_above_ratio": int((sigma > ratio * median).sum()),
        "sigma_ratio": ratio,
    }


def perturb_tangent(z: torch.Tensor, std: float | torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Isotropic noise in each latent's tangent space, then back onto its sphere.

    For each row ``z_i`` (N, n), draws ``e ~ N(0, (std |z_i|)^2 I_n)``, removes its
    component along ``z_i`` (so the noise is isotropic with per-direction std
    ``std |z_i|`` in the ``n - 1`` tangent directions) and returns
    ``|z_i| (z_i + e_t) / |z_i + e_t|``: the same norms, directions moved by angles of
    about ``std * sqrt(n - 1)``. ``std`` is relative to the unit sphere (e.g. a vMF's
    per-direction std ``sqrt(A_n(kappa)/kappa)``); a tensor broadcasts over rows.
    """
    if z.ndim != 2 or z.shape[1] < 2:
        raise ValueError(f"perturb_tangent: expected z of shape (N, n >= 2), got {tuple(z.shape)}")
    z64 = z.double()
    radius = z64.norm(dim=1, keepdim=True)
    if bool((radius == 0).any()):
        raise ValueError("perturb_tangent: z has zero rows (no tangent space)")
    u = z64 / radius
    noise = torch.randn(z64.shape, dtype=torch.float64, generator=generator) * torch.as_tensor(std, dtype=torch.float64)
    noise = noise - (noise * u).sum(1, keepdim=True) * u
    moved = u + noise
    return (radius * moved / moved.norm(dim=1, keepdim=True)).to(z.dtype)
