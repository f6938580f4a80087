"""The k-NN metrics compute distances in float32 blocks but decide every ball as float64
distances do: checked against a float64 reference written from scipy's distance matrices,
on data built to defeat float32 (a large common offset), with duplicates, with features
too large for float32, and when float32 matrix products may run at reduced precision."""

import numpy as np
import pytest
import scipy.spatial
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import spherevae.evaluation.knn as knn
from spherevae.evaluation.knn import fidelity_diversity, precision_recall


def _reference(real: np.ndarray, fake: np.ndarray, k_pr: int = 3, k_dc: int = 5) -> dict[str, float]:
    """Precision/recall (k_pr) and density/coverage (k_dc) from full float64 distance
    matrices (scipy: direct differences, no norm expansion)."""
    d_rr, d_ff = scipy.spatial.distance.cdist(real, real), scipy.spatial.distance.cdist(fake, fake)
    d_fr = scipy.spatial.distance.cdist(fake, real)
    r_pr, r_dc, f_pr = np.sort(d_rr, 1)[:, k_pr], np.sort(d_rr, 1)[:, k_dc], np.sort(d_ff, 1)[:, k_pr]
    inside = d_fr <= r_dc[None]
    return {"precision": float((d_fr <= r_pr[None]).any(1).mean()),
            "recall": float((d_fr.T <= f_pr[None]).any(1).mean()),
            "density": float(inside.sum() / (k_dc * len(fake))), "coverage": float(inside.any(0).mean())}


@pytest.fixture
def reduced_matmul_precision():
    """float32 matrix products allowed at reduced precision (restored after the test)."""
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    yield
    torch.set_float32_matmul_precision(before)


def _count_calls(monkeypatch, *names: str) -> dict[str, int]:
    """Count the calls of knn's functions ``names`` (``Class.method`` allowed)."""
    calls = dict.fromkeys(names, 0)
    for name in names:
        owner, attr = (getattr(knn, name.split(".")[0]), name.split(".")[1]) if "." in name else (knn, name)
        original = getattr(owner, attr)

        def spy(*args, _original=original, _name=name, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(owner, attr, spy)
    return calls


def _offset_sets(seed: int, offset: float, n_real: int = 300, n_fake: int = 400, dim: int = 48):
    """Two clouds of unit spread far from the origin: float32's |a|^2 + |b|^2 - 2 a.b
    loses most of the distances' digits, so many decisions fall inside its error bound."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(size=dim)
    centre *= offset / np.linalg.norm(centre)
    return centre + rng.normal(size=(n_real, dim)), centre + rng.normal(0.2, 1.1, size=(n_fake, dim))


def test_float32_blocks_decide_far_from_the_origin_as_float64_does(monkeypatch):
    """Every path of the float32 scheme runs here (pairs decided one by one, blocks redone
    in float64, radii whose shortlist cannot be trusted redone in float64) and the four
    values equal the float64 reference exactly."""
    real, fake = _offset_sets(0, offset=300.0)
    calls = _count_calls(monkeypatch, "_pair_distances", "_Block._exact_distances", "_exact_kth",
                         "_f32_sq_distances")
    monkeypatch.setattr(knn, "_PR_BLOCK", 64)  # many blocks: some redone whole, some pair by pair
    got = fidelity_diversity(real, fake, chunk=50)
    assert got == _reference(real, fake)
    assert all(calls.values()), calls
    assert 0 < got["precision"] < 1 and 0 < got["recall"] < 1 and 0 < got["coverage"] < 1


def test_float32_blocks_equal_the_float64_path_on_features_near_the_origin(monkeypatch):
    """Standardised features (the usual case): few undecided pairs, the same values as the
    reference and as the float64 path, blocks of several sizes."""
    real, fake = _offset_sets(1, offset=0.5, n_real=500, n_fake=700, dim=64)
    ref = _reference(real, fake)
    assert fidelity_diversity(real, fake) == ref
    monkeypatch.setattr(knn, "_PR_BLOCK", 97)
    assert fidelity_diversity(real, fake, chunk=33) == ref


def test_reduced_matmul_precision_runs_in_float64(monkeypatch, reduced_matmul_precision):
    """TF32/bf16 matrix products would break the float32 error bound: no float32 block then."""
    real, fake = _offset_sets(2, offset=30.0)
    calls = _count_calls(monkeypatch, "_f32_sq_distances")
    assert fidelity_diversity(real, fake) == _reference(real, fake)
    assert calls["_f32_sq_distances"] == 0


def test_features_too_large_for_float32_run_in_float64(monkeypatch):
    rng = np.random.default_rng(3)
    real, fake = rng.normal(size=(80, 6)) * 1e17, rng.normal(size=(90, 6)) * 1e17
    calls = _count_calls(monkeypatch, "_f32_sq_distances")
    got = fidelity_diversity(real, fake)
    assert calls["_f32_sq_distances"] == 0
    assert got == pytest.approx(_reference(real, fake), abs=1e-12)


def test_duplicated_points_have_radius_zero_and_hold_their_copies():
    """A sampler that repeats 8 images 50 times: every fake's 3-NN radius is 0 (a copy),
    so a real point is recalled only by an identical fake; the reals include two of the
    repeated images, which are recalled, and the fakes on them count as precise."""
    rng = np.random.default_rng(4)
    proto = rng.normal(size=(8, 16))
    fake = np.repeat(proto, 50, axis=0)
    real = np.concatenate([proto[:2], rng.normal(size=(120, 16))])
    got = precision_recall(real, fake)
    ref = _reference(real, fake)
    assert got["recall"] == ref["recall"] == pytest.approx(2 / 122)
    assert got["precision"] == ref["precision"]
    assert knn._knn_radii(knn._Rows.of(fake), 3, 64).max() == 0.0


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), log_offset=st.floats(-2.0, 3.5), dim=st.integers(1, 24),
       n_real=st.integers(7, 60), n_fake=st.integers(5, 60), k_pr=st.integers(1, 4),
       block=st.integers(2, 70), chunk=st.integers(1, 40))
def test_any_sizes_offsets_and_blocks_match_the_float64_reference(seed, log_offset, dim, n_real, n_fake, k_pr,
                                                                   block, chunk):
    real, fake = _offset_sets(seed, 10.0 ** log_offset, n_real, n_fake, dim)
    k_dc = min(k_pr + 2, n_real - 1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(knn, "_PR_BLOCK", block)
        got = fidelity_diversity(real, fake, k_pr=k_pr, k_dc=k_dc, chunk=chunk)
    assert got == _reference(real, fake, k_pr, k_dc)
