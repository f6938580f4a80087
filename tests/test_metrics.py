"""Metrics against independent references (scipy, sklearn, plain loops)."""

import numpy as np
import pytest
import scipy.linalg
import torch
from sklearn.neighbors import KNeighborsClassifier

from spherevae.metrics import (
    collapse_stats,
    frechet_distance,
    kid,
    knn_accuracy,
    precision_recall,
    reconstruction_metrics,
    replica_angles,
)


def _fid_scipy(a, b):
    m1, m2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_frechet_matches_scipy_sqrtm():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 8))
    b = rng.normal(size=(300, 8)) @ rng.normal(size=(8, 8)) * 0.5 + 1.0
    assert frechet_distance(a, b) == pytest.approx(_fid_scipy(a, b), rel=1e-7)


def test_frechet_diagonal_closed_form_and_identity():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(200_000, 3)) * np.array([1.0, 2.0, 3.0])
    b = rng.normal(size=(200_000, 3)) * np.array([2.0, 2.0, 1.0]) + 1.0
    exact = 3 * 1.0 + sum((s1 - s2) ** 2 for s1, s2 in [(1, 2), (2, 2), (3, 1)])
    assert frechet_distance(a, b) == pytest.approx(exact, rel=0.02)
    assert abs(frechet_distance(a, a)) < 1e-8


def test_reconstruction_metrics_scales():
    x = torch.zeros(2, 1, 4, 4)
    x_hat = torch.full_like(x, 0.1)
    m = reconstruction_metrics(x, x_hat)
    assert m["mse_sum"] == pytest.approx(16 * 0.01)
    assert m["rmse_percent"] == pytest.approx(10.0)
    with pytest.raises(ValueError, match="same shape"):
        reconstruction_metrics(x, x_hat[:1])


def test_knn_matches_sklearn():
    g = torch.Generator().manual_seed(0)
    tr = torch.randn(500, 6, generator=g)
    ytr = (tr[:, 0] > 0).long() + 2 * (tr[:, 1] > 0).long()
    te = torch.randn(200, 6, generator=g)
    yte = (te[:, 0] > 0).long() + 2 * (te[:, 1] > 0).long()
    ref = KNeighborsClassifier(5).fit(tr.numpy(), ytr.numpy()).score(te.numpy(), yte.numpy())
    assert knn_accuracy(tr, ytr, te, yte, k=5, chunk=37) == pytest.approx(ref, abs=0.011)


def test_precision_recall_limits():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 4))
    same = precision_recall(a, a)
    assert same == {"precision": 1.0, "recall": 1.0}
    far = precision_recall(a, a + 100.0)
    assert far == {"precision": 0.0, "recall": 0.0}


def test_kid_near_zero_for_same_distribution_and_positive_for_shift():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(800, 16)), rng.normal(size=(800, 16))
    assert abs(kid(a, b, subsets=5, subset_size=400)) < 0.01
    assert kid(a, b + 1.0, subsets=5, subset_size=400) > 0.1


def test_collapse_counts_flat_dimensions_in_both_coordinates():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(2000, 6, generator=g)
    mu[:, 2] = 0.3  # a collapsed dimension
    stats = collapse_stats(mu)
    assert stats["collapsed_cartesian"] == 1
    assert torch.allclose(stats["std_cartesian"], mu.double().std(0))
    # More than half collapsed (A.6's beta = 1 regime): all of them are still counted.
    wide = torch.randn(2000, 10, generator=g)
    wide[:, :7] *= 1e-3
    assert collapse_stats(wide)["collapsed_cartesian"] == 7


def test_replica_angles_against_loop():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(50, 5, generator=g) + 2.0
    m = z.double().mean(0)
    ref = [float(np.arccos(np.dot(v, m) / (np.linalg.norm(v) * np.linalg.norm(m)))) for v in z.double().numpy()]
    assert np.allclose(replica_angles(z).numpy(), ref)
