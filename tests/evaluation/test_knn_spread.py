"""Density/coverage, KID's standard error and the FID bootstrap spread, against plain-loop
and direct references."""

import numpy as np
import pytest
import scipy.linalg
import scipy.spatial

from spherevae.evaluation.fid import (
    FeatureStats,
    _kid_values,
    fid_bootstrap_std,
    fid_bootstrap_stds,
    frechet_distance,
    kid,
    kid_with_se,
)
from spherevae.evaluation.knn import density_coverage, fidelity_diversity, precision_recall


def _loop_density_coverage(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    """Naeem et al. 2020 written as loops over scipy's distance matrices."""
    d_rr = scipy.spatial.distance.cdist(real, real)
    radii = [sorted(row)[k] for row in d_rr]  # sorted(row)[0] is the point itself
    d_fr = scipy.spatial.distance.cdist(fake, real)
    hits = 0
    covered = [False] * len(real)
    for j in range(len(fake)):
        for i in range(len(real)):
            if d_fr[j, i] <= radii[i]:
                hits += 1
                covered[i] = True
    return hits / (k * len(fake)), sum(covered) / len(real)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_density_coverage_match_a_plain_loop(k):
    rng = np.random.default_rng(0)
    real = rng.normal(size=(60, 4))
    fake = rng.normal(0.4, 1.3, size=(45, 4))
    ref_density, ref_coverage = _loop_density_coverage(real, fake, k)
    got = density_coverage(real, fake, k=k, chunk=7)  # several row blocks
    assert got["density"] == pytest.approx(ref_density, abs=1e-12)
    assert got["coverage"] == pytest.approx(ref_coverage, abs=1e-12)


@pytest.mark.parametrize(("n_real", "n_fake", "max_points"), [(60, 45, None), (90, 70, 50), (40, 80, 60)])
def test_one_pass_fidelity_diversity_equals_the_two_functions(n_real, n_fake, max_points):
    """The one distance pass gives exactly the values of precision_recall + density_coverage
    (with subsampling too), and cached radii of the reference and of the fakes, reused for
    another fake set / another reference, change nothing."""
    rng = np.random.default_rng(n_real)
    real, real2 = rng.normal(size=(n_real, 5)), rng.normal(0.2, 1.1, size=(n_real, 5))
    fakes = [rng.normal(0.3, 1.2, size=(n_fake, 5)), rng.normal(-0.5, 0.7, size=(n_fake, 5))]
    real_cache: dict = {}
    for fake in fakes:
        fake_cache: dict = {}
        for ref in (real, real2):
            expected = {**precision_recall(ref, fake, max_points=max_points, chunk=7),
                        **density_coverage(ref, fake, max_points=max_points, chunk=7)}
            cache = real_cache if ref is real else {}
            got = fidelity_diversity(ref, fake, max_points=max_points, chunk=7, real_radii=cache,
                                     fake_radii=fake_cache)
            assert got == expected
            assert sorted(cache) == [3, 5] and sorted(fake_cache) == [3]
    with pytest.raises(ValueError, match="do not fit"):
        fidelity_diversity(real[:20], fakes[0], real_radii=real_cache)


def test_density_coverage_edge_cases():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(50, 3))
    # The reals themselves: every ball holds its centre, so coverage is exactly 1.
    assert density_coverage(real, real, k=3)["coverage"] == 1.0
    # Far away: no ball holds a fake.
    far = density_coverage(real, real + 100.0, k=3)
    assert far == {"density": 0.0, "coverage": 0.0}
    # One point repeated at a real point: coverage is the balls holding it, over N.
    one = density_coverage(real, np.repeat(real[:1], 20, 0), k=3)
    assert 1 / 50 <= one["coverage"] < 0.5
    with pytest.raises(ValueError, match="k must be in"):
        density_coverage(real[:3], real, k=3)


def test_memorising_and_collapsed_samplers_are_told_apart_by_all_four():
    """Features of a 5-cluster mixture: a sampler that returns the reference itself against
    one that collapses every draw to its cluster's mean."""
    rng = np.random.default_rng(2)
    centres = rng.normal(0, 4, size=(5, 8))
    labels = rng.integers(0, 5, 500)
    real = centres[labels] + rng.normal(size=(500, 8))
    memorised = real.copy()
    collapsed = centres[labels]  # every sample at its class mean
    pr_m, pr_c = precision_recall(real, memorised), precision_recall(real, collapsed)
    dc_m, dc_c = density_coverage(real, memorised), density_coverage(real, collapsed)
    assert pr_m["precision"] == 1.0 and pr_m["recall"] == 1.0 and dc_m["coverage"] == 1.0
    assert pr_c["recall"] < 0.05 and dc_c["coverage"] < 0.3  # measured: 0.0 and 0.202
    # The collapsed samples sit where the data is densest: high precision and density,
    # which is why recall/coverage (diversity) must be read beside them.
    assert pr_c["precision"] == 1.0 and dc_c["density"] > dc_m["density"]


def test_kid_with_se_is_kid_and_the_subsets_standard_error():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(300, 6)), rng.normal(0.3, 1.0, size=(300, 6))
    mean, se = kid_with_se(a, b, subsets=8, subset_size=100, seed=5)
    vals = _kid_values(a, b, 8, 100, 5)
    assert mean == kid(a, b, subsets=8, subset_size=100, seed=5)
    assert se == pytest.approx(np.std(vals, ddof=1) / np.sqrt(8), rel=1e-12)
    assert se > 0
    assert np.isnan(kid_with_se(a, b, subsets=1, subset_size=100)[1])


def test_fid_bootstrap_std_is_the_std_over_resampled_fakes():
    rng = np.random.default_rng(4)
    real, fake = rng.normal(size=(400, 3)), rng.normal(0.5, 1.2, size=(300, 3))
    got = fid_bootstrap_std(real, fake, rounds=5, seed=9)
    draw = np.random.default_rng(9)
    ref = [frechet_distance(real, fake[draw.integers(0, 300, 300)]) for _ in range(5)]
    assert got == pytest.approx(np.std(ref, ddof=1), rel=1e-9)
    # More samples, smaller spread (the bootstrap std shrinks like 1/sqrt(M)).
    big = rng.normal(0.5, 1.2, size=(4800, 3))
    assert fid_bootstrap_std(real, big, rounds=20) < 0.5 * fid_bootstrap_std(real, fake, rounds=20)
    with pytest.raises(ValueError, match="rounds >= 2"):
        fid_bootstrap_std(real, fake, rounds=1)


def test_bootstrap_against_several_references_equals_one_call_per_reference():
    """The shared resamples and reference roots change nothing: bit for bit the values of
    separate calls with the same seed (the pipeline relies on it for both references)."""
    rng = np.random.default_rng(11)
    refs = {"recon": rng.normal(size=(300, 6)), "test": rng.normal(0.3, 1.5, size=(250, 6))}
    fake = rng.normal(0.2, 1.1, size=(200, 6))
    got = fid_bootstrap_stds({k: FeatureStats.of(v) for k, v in refs.items()}, fake, rounds=4, seed=3)
    assert got == {k: fid_bootstrap_std(v, fake, rounds=4, seed=3) for k, v in refs.items()}
    assert got["recon"] != got["test"]


@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")  # scipy's sqrtm of the singular s1
def test_psd_sqrt_and_the_frechet_distance_given_a_root_agree_with_scipy():
    from spherevae.evaluation.fid import frechet_distance_from_stats, psd_sqrt

    rng = np.random.default_rng(2)
    a = rng.normal(size=(50, 8)) @ rng.normal(size=(8, 8))
    s1 = np.cov(a, rowvar=False)
    s1[:, 0] = s1[0, :] = 0  # a singular covariance (a constant feature): still PSD
    root = psd_sqrt(s1)
    np.testing.assert_allclose(root, scipy.linalg.sqrtm(s1).real, atol=1e-7)
    s2 = np.cov(rng.normal(size=(40, 8)), rowvar=False)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    expected = (mu1 - mu2) @ (mu1 - mu2) + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance_from_stats(mu1, s1, mu2, s2, root1=root) == pytest.approx(expected, rel=1e-7)
    assert frechet_distance_from_stats(mu1, s1, mu2, s2, root1=root) == frechet_distance_from_stats(mu1, s1, mu2, s2)


def test_bootstrap_against_several_references_names_what_is_wrong():
    rng = np.random.default_rng(0)
    refs = {"recon": FeatureStats.of(rng.normal(size=(20, 3)))}
    with pytest.raises(ValueError, match="at least one reference"):
        fid_bootstrap_stds({}, rng.normal(size=(10, 3)))
    with pytest.raises(ValueError, match=r"'recon'.*got \(10, 4\)"):
        fid_bootstrap_stds(refs, rng.normal(size=(10, 4)))
    with pytest.raises(ValueError, match="M >= 2"):
        fid_bootstrap_stds(refs, rng.normal(size=(1, 3)))
    with pytest.raises(ValueError, match="'test' has 1 feature rows"):
        fid_bootstrap_stds({**refs, "test": FeatureStats.of(rng.normal(size=(1, 3)))}, rng.normal(size=(10, 3)))
    with pytest.raises(ValueError, match="rounds >= 2"):
        fid_bootstrap_stds(refs, rng.normal(size=(10, 3)), rounds=1)
