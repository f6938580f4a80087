"""The k-NN metrics compute distances in float32 blocks but decide every ball on exact
squared distances: checked against a float64 reference written from scipy's distance
matrices, on data built to defeat float32 (a large common offset), on lattices and copies
(exact ties), with duplicates, with features too large or too small for float32, and when
float32 matrix products may run at reduced precision (either of torch's two settings)."""

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


def _gemm_dtypes(monkeypatch) -> list[torch.dtype]:
    """The dtype of every distance block (GEMM) the metrics compute."""
    dtypes: list[torch.dtype] = []
    gemm = knn._gemm
    monkeypatch.setattr(knn, "_gemm", lambda a, i, b, j, dtype: dtypes.append(dtype) or gemm(a, i, b, j, dtype))
    return dtypes


def _direct_pairs(monkeypatch) -> list[int]:
    """The number of pairs of every direct (exact) computation."""
    sizes: list[int] = []
    direct = knn._direct_sq
    monkeypatch.setattr(knn, "_direct_sq", lambda a, ia, b, ib: sizes.append(len(ia)) or direct(a, ia, b, ib))
    return sizes


def _offset_sets(seed: int, offset: float, n_real: int = 300, n_fake: int = 400, dim: int = 48):
    """Two clouds of unit spread at distance ``offset`` from the origin: float32's
    ``|a|^2 + |b|^2 - 2 a.b`` loses most of the distances' digits far out."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(size=dim)
    centre *= offset / np.linalg.norm(centre)
    return centre + rng.normal(size=(n_real, dim)), centre + rng.normal(0.2, 1.1, size=(n_fake, dim))


def test_far_from_the_origin_float32_gives_way_to_float64_and_decides_as_the_reference(monkeypatch):
    """300 units out float32 cannot resolve the balls: the first chunk of radii gives way to
    float64, and every later pass over the same sets starts there; the values equal the
    reference exactly. A block pass alone (precision_recall's coverage after its radii)
    gives way in its first block."""
    real, fake = _offset_sets(0, offset=300.0)
    dtypes, pairs = _gemm_dtypes(monkeypatch), _direct_pairs(monkeypatch)
    gave_up: list[bool] = []
    give_up = knn._Pass.give_up_f32
    monkeypatch.setattr(knn._Pass, "give_up_f32", lambda self: gave_up.append(give_up(self)) or gave_up[-1])
    monkeypatch.setattr(knn, "_PR_BLOCK", 64)
    got = fidelity_diversity(real, fake, chunk=50)
    assert got == _reference(real, fake)
    assert True in gave_up and dtypes and set(dtypes) == {torch.float64} and sum(pairs) > 0
    assert 0 < got["precision"] < 1 and 0 < got["recall"] < 1 and 0 < got["coverage"] < 1
    real, fake = _offset_sets(0, offset=1000.0)
    radii = knn._knn_sq_radii(knn._Rows.of(real), 3, 50)  # fresh rows: the flag is per call
    dtypes.clear()
    block = next(knn._blocks(knn._Rows.of(fake), knn._Rows.of(real), 50))
    block.within(radii[block.j], of="cols")
    assert dtypes == [torch.float32, torch.float64]  # tried, then redone in float64


def test_standardised_features_stay_in_float32_and_equal_the_reference(monkeypatch):
    """The usual case (features near the origin, unit spread): float32 throughout, a few
    pairs computed directly, the reference's values, blocks of several sizes."""
    real, fake = _offset_sets(1, offset=0.5, n_real=500, n_fake=700, dim=64)
    ref = _reference(real, fake)
    dtypes, pairs = _gemm_dtypes(monkeypatch), _direct_pairs(monkeypatch)
    assert fidelity_diversity(real, fake) == ref
    assert set(dtypes) == {torch.float32} and sum(pairs) > 0
    monkeypatch.setattr(knn, "_PR_BLOCK", 97)
    assert fidelity_diversity(real, fake, chunk=33) == ref


@pytest.mark.parametrize("offset", [0.0, 300.0])
def test_lattice_points_and_copies_of_the_reals_decide_ties_as_the_reference(offset):
    """Exact ties: points of {0, 1, 2}^8 (many pairs exactly at a radius), and fakes that
    are the reals themselves; both far out and at the origin."""
    rng = np.random.default_rng(5)
    real = rng.integers(0, 3, size=(300, 8)).astype(float) + offset
    fake = rng.integers(0, 3, size=(300, 8)).astype(float) + offset
    assert fidelity_diversity(real, fake) == _reference(real, fake)
    cloud, _ = _offset_sets(6, offset=offset, dim=32)
    copies = fidelity_diversity(cloud, cloud.copy())
    assert copies == _reference(cloud, cloud)
    assert copies["precision"] == copies["recall"] == copies["coverage"] == 1.0


@pytest.fixture
def restore_matmul_precision():
    before = (torch.get_float32_matmul_precision(), torch.backends.mkldnn.matmul.fp32_precision)
    yield
    torch.backends.mkldnn.matmul.fp32_precision = "none"
    torch.set_float32_matmul_precision(before[0])
    torch.backends.mkldnn.matmul.fp32_precision = before[1]


@pytest.mark.parametrize("setting", ["legacy", "per-backend"])
def test_reduced_matmul_precision_runs_in_float64(monkeypatch, restore_matmul_precision, setting):
    """bf16/TF32 products would break the float32 bound: float64 blocks then, under the
    legacy global setting and under torch's per-backend one (after which the legacy
    getter raises)."""
    if setting == "legacy":
        torch.set_float32_matmul_precision("medium")
    else:
        torch.backends.mkldnn.matmul.fp32_precision = "bf16"
    real, fake = _offset_sets(2, offset=30.0)
    dtypes = _gemm_dtypes(monkeypatch)
    assert fidelity_diversity(real, fake) == _reference(real, fake)
    assert dtypes and set(dtypes) == {torch.float64}


@pytest.mark.parametrize("scale", [1e17, 1e-13])
def test_features_too_large_or_too_small_for_float32_run_in_float64(monkeypatch, scale):
    rng = np.random.default_rng(3)
    real, fake = rng.normal(size=(80, 6)) * scale, rng.normal(size=(90, 6)) * scale
    dtypes = _gemm_dtypes(monkeypatch)
    assert fidelity_diversity(real, fake) == _reference(real, fake)
    assert dtypes and set(dtypes) == {torch.float64}


def test_duplicated_points_have_radius_zero_and_hold_their_copies():
    """A sampler that repeats 8 images 50 times: every fake's 3-NN radius is 0 (a copy),
    so a real point is recalled only by an identical fake; the reals include two of the
    repeated images, which are recalled, and the fakes on them count as precise."""
    rng = np.random.default_rng(4)
    proto = rng.normal(size=(8, 16))
    fake = np.repeat(proto, 50, axis=0)
    real = np.concatenate([proto[:2], rng.normal(size=(120, 16))])
    got = precision_recall(real, fake)
    assert got == {k: v for k, v in _reference(real, fake).items() if k in got}
    assert got["recall"] == pytest.approx(2 / 122)
    assert knn._knn_sq_radii(knn._Rows.of(fake), 3, 64).max() == 0.0


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), log_offset=st.floats(-2.0, 3.5), dim=st.integers(1, 24),
       n_real=st.integers(7, 60), n_fake=st.integers(5, 60), k_pr=st.integers(1, 4),
       block=st.integers(2, 70), chunk=st.integers(1, 40), grid=st.sampled_from([None, 0.5, 1.0]))
def test_any_sizes_offsets_grids_and_blocks_match_the_float64_reference(seed, log_offset, dim, n_real, n_fake,
                                                                        k_pr, block, chunk, grid):
    """``grid``: coordinates rounded to multiples of it (exact squared distances, many ties)."""
    real, fake = _offset_sets(seed, 10.0 ** log_offset, n_real, n_fake, dim)
    if grid is not None:
        real, fake = np.round(real / grid) * grid, np.round(fake / grid) * grid
    k_dc = min(k_pr + 2, n_real - 1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(knn, "_PR_BLOCK", block)
        got = fidelity_diversity(real, fake, k_pr=k_pr, k_dc=k_dc, chunk=chunk)
    assert got == _reference(real, fake, k_pr, k_dc)


def test_one_outlier_row_does_not_send_the_other_rows_to_float64(monkeypatch):
    """The bounds are per row: a sampler's single far-off sample (norm x30) leaves float32
    to the rest (before per-row bounds, its norm widened every row's and every radius went
    to float64), and the values stay the reference's."""
    real, fake = _offset_sets(7, offset=0.5, n_real=400, n_fake=400, dim=64)
    real[0] *= 30
    fake[0] *= 30
    gave_up: list[bool] = []
    give_up = knn._Pass.give_up_f32
    monkeypatch.setattr(knn._Pass, "give_up_f32", lambda self: gave_up.append(give_up(self)) or gave_up[-1])
    dtypes = _gemm_dtypes(monkeypatch)
    assert fidelity_diversity(real, fake) == _reference(real, fake)
    assert not gave_up and set(dtypes) == {torch.float32}
