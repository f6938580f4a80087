"""Metrics against independent references (scipy, sklearn, plain loops)."""

import numpy as np
import pytest
import scipy.linalg
import scipy.spatial
import torch
from sklearn.neighbors import KNeighborsClassifier

from spherevae.evaluation.diagnostics import (
    collapse_stats,
    posterior_sigma_summary,
    reconstruction_metrics,
)
from spherevae.evaluation.fid import FID, KID, FeatureStats, frechet_distance, kid
from spherevae.evaluation.knn import knn_accuracy, precision_recall
from spherevae.geometry.sphere import (
    perturb_tangent,
    replica_angles,
    tangent_effective_dim,
    tangent_spectrum,
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


def test_streaming_fid_in_chunks_equals_one_shot_and_scipy():
    rng = np.random.default_rng(5)
    real = rng.normal(size=(500, 6)) * 3.0 + 40.0  # a large mean: no cancellation allowed
    fake = rng.normal(size=(350, 6)) @ rng.normal(size=(6, 6)) + 41.0
    one_shot = FID()
    one_shot.update_features(real, real=True)
    one_shot.update_features(fake, real=False)
    # One update holds exactly what frechet_distance computes.
    assert one_shot.compute() == frechet_distance(fake, real)
    chunked = FID()
    for part in np.array_split(real, 7):
        chunked.update_features(part, real=True)
    for part in (fake[:1], fake[1:2], fake[2:100], fake[100:]):  # single rows too
        chunked.update_features(torch.from_numpy(part), real=False)
    assert chunked.real.count == 500 and chunked.fake.count == 350
    np.testing.assert_allclose(chunked.real.mean, real.mean(0), rtol=1e-13)
    np.testing.assert_allclose(chunked.real.covariance, np.cov(real, rowvar=False), rtol=1e-10, atol=1e-12)
    assert chunked.compute() == pytest.approx(one_shot.compute(), rel=1e-9)
    assert chunked.compute() == pytest.approx(_fid_scipy(fake, real), rel=1e-7)


def test_fid_with_a_flatten_extractor_is_the_gaussians_closed_form():
    """Images whose pixels are Gaussian: FID of the flattened images -> the Fréchet
    distance of the two Gaussians, |m1 - m2|^2 + tr(S1 + S2 - 2 (S1 S2)^1/2)."""
    g = torch.Generator().manual_seed(0)
    n, shape = 100_000, (1, 2, 2)
    s1, s2 = torch.tensor([1.0, 2.0, 0.5, 1.5]), torch.tensor([2.0, 0.5, 0.5, 3.0])  # stds
    m2 = torch.tensor([0.3, -0.2, 0.0, 0.1])
    x1 = (torch.randn(n, 4, generator=g, dtype=torch.float64) * s1).reshape(n, *shape)
    x2 = (torch.randn(n, 4, generator=g, dtype=torch.float64) * s2 + m2).reshape(n, *shape)
    fid = FID(torch.nn.Flatten(), "flat", batch_size=7_000)
    fid.update(x1, real=True)
    for part in x2.split(30_000):
        fid.update(part, real=False)
    exact = float((m2**2).sum() + ((s1 - s2) ** 2).sum())  # diagonal covariances
    assert fid.compute() == pytest.approx(exact, rel=0.02)


def test_fid_and_kid_reset():
    rng = np.random.default_rng(2)
    real, fake, other = rng.normal(size=(300, 4)), rng.normal(size=(300, 4)) + 1, rng.normal(size=(300, 4)) + 2
    for cls in (FID, KID):
        keep = cls(reset_real_features=False)
        keep.update_features(real, real=True)
        keep.update_features(fake, real=False)
        first = keep.compute()
        keep.reset()
        keep.update_features(other, real=False)
        second = cls()
        second.update_features(real, real=True)
        second.update_features(other, real=False)
        assert keep.compute() == second.compute() != first
        second.reset()  # everything
        with pytest.raises(ValueError, match=r"(at least 2|needs real)"):
            second.compute()
    kid_metric = KID(subsets=5, subset_size=100, seed=3)
    kid_metric.update_features(real[:150], real=True)
    kid_metric.update_features(real[150:], real=True)
    kid_metric.update_features(fake, real=False)
    assert kid_metric.compute() == kid(fake, real, subsets=5, subset_size=100, seed=3)


def test_feature_stats_reject_mixed_dimensions_and_need_two_rows():
    stats = FeatureStats.of(np.ones((1, 3)))
    with pytest.raises(ValueError, match="at least 2 feature rows"):
        stats.covariance
    with pytest.raises(ValueError, match="dimension 4"):
        stats.update(np.ones((2, 4)))
    with pytest.raises(ValueError, match="no feature extractor"):
        FID().update(torch.zeros(2, 1, 2, 2), real=True)


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


def _precision_recall_loops(real, fake, k=3):
    """Reference: the k-NN radii and ball coverage from one full distance matrix."""
    d_rr, d_ff, d_fr = (scipy.spatial.distance.cdist(x, y) for x, y in ((real, real), (fake, fake), (fake, real)))
    r_real, r_fake = np.sort(d_rr, 1)[:, k], np.sort(d_ff, 1)[:, k]
    return {"precision": float((d_fr <= r_real[None]).any(1).mean()),
            "recall": float((d_fr.T <= r_fake[None]).any(1).mean())}


def _spy_on_distance_blocks(monkeypatch) -> list[tuple[int, int]]:
    """The (rows, cols) of every distance block (GEMM) the k-NN metrics compute, in any dtype."""
    import spherevae.evaluation.knn as knn_metrics

    shapes: list[tuple[int, int]] = []
    gemm = knn_metrics._gemm

    def spy(a, i, b, j, dtype):
        out = gemm(a, i, b, j, dtype)
        shapes.append(tuple(out.shape))
        return out

    monkeypatch.setattr(knn_metrics, "_gemm", spy)
    return shapes


def test_precision_recall_in_blocks_matches_one_full_matrix(monkeypatch):
    """Blocking rows and columns changes no value: sets of any size, never N x N at once."""
    import spherevae.evaluation.knn as knn_metrics

    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(230, 5)), rng.normal(0.3, 1.2, size=(170, 5))
    ref = _precision_recall_loops(real, fake)
    assert 0 < ref["precision"] < 1 and 0 < ref["recall"] < 1
    assert precision_recall(real, fake) == pytest.approx(ref, abs=1e-12)
    shapes = _spy_on_distance_blocks(monkeypatch)
    monkeypatch.setattr(knn_metrics, "_PR_BLOCK", 40)
    assert precision_recall(real, fake, chunk=32, max_points=None) == pytest.approx(ref, abs=1e-12)
    assert shapes and max(r for r, _ in shapes) <= 32 and max(c for _, c in shapes) <= 40


def test_precision_recall_caps_large_sets_on_a_seeded_subset(monkeypatch):
    """A set above max_points is evaluated on that many of its rows (the 2,000,000-sample
    evaluation asked cdist for 32 GB); sets at or below it are used whole."""
    rng = np.random.default_rng(2)
    real, fake = rng.normal(size=(120, 3)), rng.normal(size=(500, 3))
    shapes = _spy_on_distance_blocks(monkeypatch)
    capped = precision_recall(real, fake, max_points=150, seed=4)
    assert max(c for _, c in shapes) == 150
    assert capped == precision_recall(real, fake, max_points=150, seed=4)
    assert precision_recall(real, fake[:150], max_points=150, seed=9) == precision_recall(
        real, fake[:150], max_points=None)
    with pytest.raises(ValueError, match="k must be"):
        precision_recall(real[:3], fake, k=3)


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


def test_collapse_kl_matches_a_plain_loop_and_counts_prior_like_dimensions():
    g = torch.Generator().manual_seed(1)
    mu = torch.randn(300, 5, generator=g)
    logvar = torch.randn(300, 5, generator=g) * 0.5
    mu[:, 1], logvar[:, 1] = 0.0, 0.0  # posterior == prior: KL exactly 0
    mu[:, 3], logvar[:, 3] = 0.05 * mu[:, 3], 0.0  # almost prior: KL ~ 0.5 * 0.05^2
    stats = collapse_stats(mu, logvar=logvar)
    ref = []
    for d in range(5):
        total = 0.0
        for i in range(300):
            m, lv = float(mu[i, d]), float(logvar[i, d])
            total += 0.5 * (m * m + np.exp(lv) - 1.0 - lv)
        ref.append(total / 300)
    assert np.allclose(stats["kl_per_dim"].numpy(), ref, rtol=1e-10)
    assert stats["collapsed_kl"] == 2 and stats["kl_threshold_nats"] == 0.01
    assert "collapsed_kl" not in collapse_stats(mu)
    with pytest.raises(ValueError, match="logvar shape"):
        collapse_stats(mu, logvar=logvar[:, :4])


def test_replica_angles_against_loop():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(50, 5, generator=g) + 2.0
    m = z.double().mean(0).numpy()
    ref = [float(np.arccos(np.dot(v, m) / (np.linalg.norm(v) * np.linalg.norm(m)))) for v in z.double().numpy()]
    assert np.allclose(replica_angles(z).numpy(), ref)


def _tangent_pr_numpy(z):
    """Second formula: participation ratio from the singular values of the centred
    tangent projection (numpy SVD, float64), written independently of the library."""
    u = z / np.linalg.norm(z, axis=1, keepdims=True)
    m = u.mean(0)
    m /= np.linalg.norm(m)
    t = u - np.outer(u @ m, m)
    s = np.linalg.svd(t - t.mean(0), compute_uv=False) ** 2
    return s.sum() ** 2 / (s**2).sum(), s.max() / s.sum()


def test_tangent_effective_dim_matches_svd_reference():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(500, 12)) * np.linspace(0.1, 2.0, 12) + 3.0
    out = tangent_effective_dim(torch.from_numpy(z))
    pr, top = _tangent_pr_numpy(z)
    assert out["effective_dim"] == pytest.approx(pr, rel=1e-9)
    assert out["top_fraction"] == pytest.approx(top, rel=1e-9)
    assert out["max_dim"] == 11


def test_tangent_effective_dim_extremes():
    gen = torch.Generator().manual_seed(0)
    n = 64
    # Spread along a single tangent direction of the pole: effective dimension 1.
    t = torch.randn(2000, 1, generator=gen, dtype=torch.float64) * 0.1
    z = torch.zeros(2000, n, dtype=torch.float64)
    z[:, 0], z[:, 1] = 1.0, t[:, 0]
    assert tangent_effective_dim(z)["effective_dim"] == pytest.approx(1.0, abs=1e-6)
    # Isotropic spread around the pole (what a vMF does): close to n - 1.
    z = torch.randn(20000, n, generator=gen, dtype=torch.float64) * 0.05
    z[:, 0] += 1.0
    assert tangent_effective_dim(z)["effective_dim"] > 0.9 * (n - 1)
    # All latents identical: no spread at all, no NaN.
    same = torch.ones(10, n)
    out = tangent_effective_dim(same)
    assert out["effective_dim"] == 0.0 and out["top_fraction"] == 0.0


def test_tangent_effective_dim_is_scale_invariant_and_rejects_bad_shapes():
    z = torch.randn(300, 8, generator=torch.Generator().manual_seed(1)) + 2.0
    a = tangent_effective_dim(z)["effective_dim"]
    scale = torch.rand(300, 1, generator=torch.Generator().manual_seed(2)) * 10 + 0.1
    assert tangent_effective_dim(z * scale)["effective_dim"] == pytest.approx(a, rel=1e-9)
    with pytest.raises(ValueError, match="shape"):
        tangent_effective_dim(torch.randn(10))
    with pytest.raises(ValueError, match="shape"):
        tangent_effective_dim(torch.randn(10, 1))


def test_tangent_spectrum_matches_svd_reference_and_gives_the_effective_dim():
    rng = np.random.default_rng(4)
    z = rng.normal(size=(400, 9)) * np.linspace(0.2, 1.5, 9) + 2.5
    lam = tangent_spectrum(torch.from_numpy(z)).numpy()
    u = z / np.linalg.norm(z, axis=1, keepdims=True)
    m = u.mean(0) / np.linalg.norm(u.mean(0))
    t = u - np.outer(u @ m, m)
    ref = np.linalg.svd(t - t.mean(0), compute_uv=False) ** 2 / (len(z) - 1)
    assert lam.shape == (8,) and np.all(np.diff(lam) <= 0)
    assert np.allclose(lam, ref[:8], rtol=1e-9, atol=1e-15)
    assert ref[8] < 1e-12  # the mean direction itself carries nothing
    assert tangent_effective_dim(torch.from_numpy(z))["effective_dim"] == pytest.approx(lam.sum() ** 2 / (lam**2).sum())
    assert tangent_spectrum(torch.randn(50, 2)).shape == (1,)
    with pytest.raises(ValueError, match="shape"):
        tangent_spectrum(torch.randn(1, 4))


def test_posterior_sigma_summary_matches_a_loop():
    gen = torch.Generator().manual_seed(0)
    logvar = torch.randn(30, 6, generator=gen, dtype=torch.float64)
    logvar[:, 2] += 6.0  # one dimension with sigma ~ 20x the others
    out = posterior_sigma_summary(logvar)
    ref = [sum(float(torch.exp(0.5 * logvar[i, j])) for i in range(30)) / 30 for j in range(6)]
    assert np.allclose(out["sigma_per_dim"].numpy(), ref, rtol=1e-12)
    assert out["sigma_max"] == pytest.approx(max(ref))
    assert out["sigma_median"] == pytest.approx(float(torch.tensor(ref).median()))
    assert out["sigma_dims_above_ratio"] == 1
    with pytest.raises(ValueError, match="shape"):
        posterior_sigma_summary(torch.zeros(5))


def test_perturb_tangent_keeps_norms_and_has_the_requested_tangent_std():
    gen = torch.Generator().manual_seed(0)
    n = 32
    z = torch.randn(4000, n, generator=gen, dtype=torch.float64) * 3.0
    std = 1e-3
    out = perturb_tangent(z, std, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(out.norm(dim=1), z.norm(dim=1), rtol=1e-12)
    # Small std: the displacement on the unit sphere is ~ the tangent noise itself, with
    # per-direction variance std^2 in n - 1 directions.
    u, v = z / z.norm(dim=1, keepdim=True), out / out.norm(dim=1, keepdim=True)
    per_direction_var = float(((v - u) ** 2).sum(1).mean()) / (n - 1)
    assert per_direction_var == pytest.approx(std**2, rel=0.03)
    same = perturb_tangent(z, std, generator=torch.Generator().manual_seed(1))
    assert torch.equal(same, out) and torch.allclose(perturb_tangent(z, 0.0), z, rtol=1e-12)
    with pytest.raises(ValueError, match="zero rows"):
        perturb_tangent(torch.zeros(3, 4), 0.1)
