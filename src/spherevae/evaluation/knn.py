"""k-nearest-neighbour metrics: improved precision/recall and density/coverage of feature
sets, and k-NN classification accuracy of latents.

Both compare every row of one set with every row of another, so they work in blocks of
rows (memory bounded whatever the sizes), and precision/recall evaluates sets larger than
``max_points`` on a seeded subset of that many rows (:data:`PR_MAX_POINTS` by default).

Every decision "is this point inside that ball" is the one exact distances give (float64
rounding aside), but the distances of a block are computed in float32, about twice as fast
as float64 on a CPU: a float32 squared distance is within a proven bound of the exact one
(:func:`_f32_error_bound`), so only the pairs within that bound of a radius are decided
again from their float64 rows, and each k-NN radius is the exact distance of the neighbour
the float32 distances shortlist (checked, else computed in float64). Where float32 matrix
products may be computed at lower precision (``torch.set_float32_matmul_precision`` other
than ``"highest"``) or the features could overflow float32, everything runs in float64.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = [
    "PR_MAX_POINTS",
    "density_coverage",
    "fidelity_diversity",
    "knn_accuracy",
    "precision_recall",
]


def _as_f64(a: Any) -> np.ndarray:
    """Feature rows ``(N, D)`` (array or tensor) as finite float64, or a one-line error."""
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"features must have shape (N, D), got {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError("features must be finite")
    return a


# precision_recall's default cap on each set: evaluate's default --num-samples and the size
# of the usual test sets (10,000), whose values it leaves unchanged.
PR_MAX_POINTS = 10_000
# Columns of one distance block: sets up to this size are compared in one block per row chunk.
_PR_BLOCK = 16_384


def precision_recall(real: Any, fake: Any, *, k: int = 3, chunk: int = 2048,
                     max_points: int | None = PR_MAX_POINTS, seed: int = 0) -> dict[str, float]:
    """Improved precision/recall (Kynkäänniemi et al. 2019) with k-NN manifold radii.

    ``real`` ``(N, D)``, ``fake`` ``(M, D)``. The estimate is quadratic in the set sizes, so a
    set with more than ``max_points`` rows is replaced by ``max_points`` of them drawn without
    replacement (``numpy.random.default_rng(seed)``, real first); smaller sets are used whole,
    so their values do not depend on ``max_points`` or ``seed``. ``None`` uses every row (time
    ``O(N M D)``). Distances are computed in blocks of at most ``chunk`` x 16,384, so memory
    stays bounded whatever the sizes.
    """
    rng = np.random.default_rng(seed)
    r = _Rows.of(_subsample(_as_f64(real), max_points, rng))
    f = _Rows.of(_subsample(_as_f64(fake), max_points, rng))
    return {"precision": _coverage(f, r, _knn_radii(r, k, chunk), chunk),
            "recall": _coverage(r, f, _knn_radii(f, k, chunk), chunk)}


def density_coverage(real: Any, fake: Any, *, k: int = 5, chunk: int = 2048,
                     max_points: int | None = PR_MAX_POINTS, seed: int = 0) -> dict[str, float]:
    """Density and coverage (Naeem et al. 2020), with k-NN balls around the *real* points only.

    ``real`` ``(N, D)``, ``fake`` ``(M, D)``; ``r_i`` is the distance of real point ``i`` to
    its ``k``-th nearest other real point. ``density = sum_j #{i: |fake_j - real_i| <= r_i}
    / (k M)`` (fidelity; about 1 for fakes distributed as the reals, above 1 for fakes
    crowded where the reals are dense), ``coverage = #{i: some fake within r_i} / N``
    (diversity, in [0, 1]). Subsampling and blocks as :func:`precision_recall`.
    """
    rng = np.random.default_rng(seed)
    r = _Rows.of(_subsample(_as_f64(real), max_points, rng))
    f = _Rows.of(_subsample(_as_f64(fake), max_points, rng))
    hits, covered, _, _ = _ball_pass(f, r, _knn_radii(r, k, chunk), chunk)
    return {"density": float(hits.sum() / (k * len(f))), "coverage": float(covered.double().mean())}


def fidelity_diversity(real: Any, fake: Any, *, k_pr: int = 3, k_dc: int = 5, chunk: int = 2048,
                       max_points: int | None = PR_MAX_POINTS, seed: int = 0,
                       real_radii: dict[int, torch.Tensor] | None = None,
                       fake_radii: dict[int, torch.Tensor] | None = None) -> dict[str, float]:
    """:func:`precision_recall` (``k = k_pr``) and :func:`density_coverage` (``k = k_dc``)
    together, equal to theirs with the same arguments, from one pass over the real-fake
    distances (the two functions pass over them four times, beside the radii).

    ``real_radii`` / ``fake_radii``: optional dicts ``k -> (N,)`` radii of the (subsampled)
    set, filled here where missing and reused where present, so a caller comparing many
    fake sets with one reference computes the reference's radii once, and one fake set with
    two references computes its own once. They are only valid for the same rows,
    ``max_points``, ``seed`` and ``chunk``; evaluation keeps one per reference set and one
    per sampler.
    """
    rng = np.random.default_rng(seed)
    r = _Rows.of(_subsample(_as_f64(real), max_points, rng))
    f = _Rows.of(_subsample(_as_f64(fake), max_points, rng))
    rr = _cached_radii(r, (k_pr, k_dc), chunk, {} if real_radii is None else real_radii)
    fr = _cached_radii(f, (k_pr,), chunk, {} if fake_radii is None else fake_radii)[k_pr]
    hits, covered, precise, recalled = _ball_pass(f, r, rr[k_dc], chunk, pr_radii=(rr[k_pr], fr))
    return {"precision": float(precise.double().mean()), "recall": float(recalled.double().mean()),
            "density": float(hits.sum() / (k_dc * len(f))), "coverage": float(covered.double().mean())}


# ------------------------------------------------------------------ distance blocks

_U32 = 2.0 ** -24  # unit roundoff of float32
# Above this squared norm a float32 GEMM could overflow: such features run in float64.
_F32_MAX_SQ_NORM = 1e30
# A block with more undecided pairs than this fraction is computed again in float64 (one
# GEMM) instead of pair by pair; pairs are decided this many at a time (memory bound).
_MAX_UNDECIDED = 0.02
_PAIR_BATCH = 4096
# Extra float32 neighbours shortlisted per row for the exact k-NN radius.
_SHORTLIST_PAD = 2


@dataclass(frozen=True)
class _Rows:
    """Feature rows ``x`` ``(N, D)`` float64 with what the distance blocks need: their norms
    ``(N,)`` and, when float32 is safe (:func:`_f32_safe`), the float32 factors of
    ``|a - b|^2 = [-2a, |a|^2, 1] . [b, 1, |b|^2]`` (``lhs``, ``rhs``: ``(N, D + 2)``),
    else ``None``."""

    x: torch.Tensor
    norm: torch.Tensor
    lhs: torch.Tensor | None
    rhs: torch.Tensor | None

    @classmethod
    def of(cls, x: np.ndarray) -> _Rows:
        t = torch.from_numpy(x)
        sq = (t * t).sum(1)
        if not _f32_safe(sq):
            return cls(t, sq.sqrt(), None, None)
        ones, sq32 = torch.ones(t.shape[0], 1), sq.float()[:, None]
        t32 = t.float()
        return cls(t, sq.sqrt(), torch.cat([-2 * t32, sq32, ones], 1), torch.cat([t32, ones, sq32], 1))

    def __len__(self) -> int:
        return self.x.shape[0]


def _f32_safe(sq_norms: torch.Tensor) -> bool:
    """Float32 distances are safe to bound: matrix products at full float32 precision (no
    TF32/bf16 shortcuts) and squared norms far from float32's overflow."""
    return (torch.get_float32_matmul_precision() == "highest"
            and (sq_norms.numel() == 0 or float(sq_norms.max()) < _F32_MAX_SQ_NORM))


def _f32_error_bound(dim: int, norm_a: torch.Tensor, norm_b: torch.Tensor) -> torch.Tensor:
    """Bound on ``|d2_32 - |a - b|^2|`` for the float32 squared distance ``d2_32`` of rows with
    norms ``norm_a``, ``norm_b`` (broadcast): rounding the rows and squared norms to float32
    moves ``|a - b|^2`` by at most ``3u (|a| + |b|)^2``, and a float32 dot product of
    ``D + 2`` terms errs by at most ``(D + 2) u / (1 - (D + 2) u)`` times the sum of the
    terms' magnitudes, ``(|a| + |b|)^2`` (Higham, Accuracy and Stability, eq. 3.5), so
    ``2 (D + 8) u (|a| + |b|)^2`` holds with a factor 2 to spare. A tiny absolute term
    covers float32 underflow."""
    return 2 * (dim + 8) * _U32 * (norm_a + norm_b) ** 2 + 1e-30


class _Block:
    """Distances between rows ``i`` of ``a`` and rows ``j`` of ``b`` (slices)."""

    def __init__(self, a: _Rows, b: _Rows, i: slice, j: slice) -> None:
        self.a, self.b, self.i, self.j = a, b, i, j
        self.exact: torch.Tensor | None = None  # (rows, cols) float64 distances, when computed
        self.d2: torch.Tensor | None = None     # (rows, cols) float32 squared distances
        if a.lhs is None or b.rhs is None:
            self.exact = torch.cdist(a.x[i], b.x[j])
        else:
            self.d2 = _f32_sq_distances(a, i, b, j)

    def within(self, radii: torch.Tensor, *, of: str) -> torch.Tensor:
        """``(rows, cols)`` bool: the distance ``|a_i - b_j| <= radius``, with ``radii`` the
        columns' ``(cols,)`` (``of="cols"``) or the rows' ``(rows,)`` (``of="rows"``)."""
        r = radii[None, :] if of == "cols" else radii[:, None]
        if self.d2 is None:
            return self._exact_distances() <= r
        na, nb = self.a.norm[self.i], self.b.norm[self.j]
        tol = (_f32_error_bound(self.a.x.shape[1], na.max(), nb)[None, :] if of == "cols"
               else _f32_error_bound(self.a.x.shape[1], na, nb.max())[:, None])
        thr = r * r
        margin = tol + 2 * _U32 * thr  # and the rounding of the thresholds to float32
        inside = self.d2 <= (thr - margin).float()
        undecided = (self.d2 <= (thr + margin).float()) & ~inside
        pairs = undecided.nonzero()
        if pairs.shape[0] > _MAX_UNDECIDED * undecided.numel():
            return self._exact_distances() <= r
        if pairs.shape[0]:
            rows, cols = pairs.unbind(1)
            bound = r.expand_as(self.d2)[rows, cols]
            inside[rows, cols] = _pair_distances(self.a.x[self.i], rows, self.b.x[self.j], cols) <= bound
        return inside

    def _exact_distances(self) -> torch.Tensor:
        if self.exact is None:
            self.exact = torch.cdist(self.a.x[self.i], self.b.x[self.j])
        return self.exact


def _f32_sq_distances(a: _Rows, i: slice, b: _Rows, j: slice) -> torch.Tensor:
    """``(rows, cols)`` float32 squared distances of rows ``i`` of ``a`` to rows ``j`` of ``b``
    (one GEMM of the factors; error within :func:`_f32_error_bound`)."""
    assert a.lhs is not None and b.rhs is not None
    return a.lhs[i] @ b.rhs[j].T


def _pair_distances(a: torch.Tensor, rows: torch.Tensor, b: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``|a[rows[p]] - b[cols[p]]|`` ``(P,)`` in float64, :data:`_PAIR_BATCH` pairs at a time."""
    out = [torch.linalg.vector_norm(a[rows[s : s + _PAIR_BATCH]] - b[cols[s : s + _PAIR_BATCH]], dim=1)
           for s in range(0, rows.shape[0], _PAIR_BATCH)]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def _blocks(a: _Rows, b: _Rows, chunk: int) -> Any:
    """Every :class:`_Block` of ``chunk`` rows of ``a`` by ``16,384`` rows of ``b``."""
    for i in range(0, len(a), chunk):
        for j in range(0, len(b), _PR_BLOCK):
            yield _Block(a, b, slice(i, i + chunk), slice(j, j + _PR_BLOCK))


def _ball_pass(f: _Rows, r: _Rows, dc_radii: torch.Tensor, chunk: int, *,
               pr_radii: tuple[torch.Tensor, torch.Tensor] | None = None,
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One pass over the fake-real distances, in blocks of ``chunk`` x 16,384.

    ``f`` ``(M, D)`` fakes, ``r`` ``(N, D)`` reals, ``dc_radii`` ``(N,)`` the reals' ball
    radii for density/coverage; ``pr_radii`` ``((N,), (M,))`` the reals' and the fakes'
    radii for precision/recall, or None to skip those. Returns ``hits`` ``(M,)`` (real balls
    holding each fake), ``covered`` ``(N,)`` (real ball holding some fake), and, with
    ``pr_radii``, ``precise`` ``(M,)`` (fake inside some real ball) and ``recalled`` ``(N,)``
    (real inside some fake ball); without, those two stay all False.
    """
    hits = torch.zeros(len(f), dtype=torch.float64)
    covered = torch.zeros(len(r), dtype=torch.bool)
    precise = torch.zeros(len(f), dtype=torch.bool)
    recalled = torch.zeros(len(r), dtype=torch.bool)
    for blk in _blocks(f, r, chunk):
        i, j = blk.i, blk.j
        if pr_radii is not None:
            precise[i] |= blk.within(pr_radii[0][j], of="cols").any(1)
            recalled[j] |= blk.within(pr_radii[1][i], of="rows").any(0)
        inside = blk.within(dc_radii[j], of="cols")
        hits[i] += inside.sum(1)
        covered[j] |= inside.any(0)
    return hits, covered, precise, recalled


def _cached_radii(x: _Rows, ks: tuple[int, ...], chunk: int,
                  cache: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
    """``cache`` with the ``k``-NN radii of ``x`` for every ``k`` in ``ks`` (computed where missing)."""
    for k in ks:
        if k not in cache:
            cache[k] = _knn_radii(x, k, chunk)
        elif cache[k].shape != (len(x),):
            raise ValueError(f"cached {k}-NN radii for {cache[k].shape[0]} points do not fit {len(x)} points")
    return cache


def _subsample(x: np.ndarray, max_points: int | None, rng: np.random.Generator) -> np.ndarray:
    """At most ``max_points`` rows of ``x``, drawn without replacement (all of them, in
    order, when there are not more)."""
    if max_points is None or x.shape[0] <= max_points:
        return x
    return x[np.sort(rng.choice(x.shape[0], max_points, replace=False))]


def _knn_radii(x: _Rows, k: int, chunk: int) -> torch.Tensor:
    """Distance of each row of ``x`` ``(N, D)`` to its ``k``-th nearest other row ``(N,)``:
    the ``(k + 1)``-th smallest distance of a row, the row itself (0) included.

    The float32 distances shortlist ``k + 1 + pad`` neighbours per row, kept across blocks;
    the radius is the ``(k + 1)``-th smallest of their float64 distances, which is the
    row's when no row off the list can be nearer (its float32 squared distance, minus the
    error bound, is not below the radius squared); rows where that cannot be shown are
    computed whole in float64."""
    n = len(x)
    if not 1 <= k < n:
        raise ValueError(f"precision_recall: k must be in [1, {n - 1}] for {n} points, got {k}")
    out = []
    for i in range(0, n, chunk):
        rows = slice(i, min(i + chunk, n))
        out.append(_exact_kth(x.x[rows], x, k) if x.lhs is None else _shortlisted_kth(x, rows, k))
    return torch.cat(out)


def _exact_kth(q: torch.Tensor, x: _Rows, k: int) -> torch.Tensor:
    """The ``(k + 1)``-th smallest float64 distance of each row of ``q`` ``(R, D)`` to the rows of ``x``."""
    best = None
    for j in range(0, len(x), _PR_BLOCK):
        d = torch.cdist(q, x.x[j : j + _PR_BLOCK])
        d = d if best is None else torch.cat([best, d], 1)
        best = d.topk(min(k + 1, d.shape[1]), dim=1, largest=False).values
    assert best is not None
    return best.max(1).values


def _shortlisted_kth(x: _Rows, rows: slice, k: int) -> torch.Tensor:
    """:func:`_exact_kth` from a float32 shortlist (see :func:`_knn_radii`)."""
    m = min(k + 1 + _SHORTLIST_PAD, len(x))
    vals = idx = None
    for j in range(0, len(x), _PR_BLOCK):
        d2 = _f32_sq_distances(x, rows, x, slice(j, j + _PR_BLOCK))
        v, ix = d2.topk(min(m, d2.shape[1]), dim=1, largest=False)
        if vals is not None and idx is not None:
            v, ix = torch.cat([vals, v], 1), torch.cat([idx, ix + j], 1)
            v, pick = v.topk(min(m, v.shape[1]), dim=1, largest=False)
            ix = ix.gather(1, pick)
        vals, idx = v, ix
    assert vals is not None and idx is not None
    q = x.x[rows]
    step = max(1, _PAIR_BATCH // m)  # rows per batch: about _PAIR_BATCH pairs
    d = torch.cat([torch.linalg.vector_norm(q[s : s + step, None, :] - x.x[idx[s : s + step]], dim=2)
                   for s in range(0, q.shape[0], step)])
    kth = d.kthvalue(k + 1, dim=1).values
    if m == len(x):  # every row is on the list
        return kth
    floor = vals.max(1).values.double() - _f32_error_bound(x.x.shape[1], x.norm[rows], x.norm.max())
    # A radius of 0 (k + 1 copies of the row on the list) needs no check: none is shorter.
    unsure = ((kth * kth) * (1 + 4 * _U32) > floor) & (kth > 0)
    if unsure.any():
        kth[unsure] = _exact_kth(x.x[rows][unsure], x, k)
    return kth


def _coverage(points: _Rows, ref: _Rows, ref_radii: torch.Tensor, chunk: int) -> float:
    """Fraction of ``points`` inside at least one ball ``(ref[j], ref_radii[j])``."""
    hit = torch.zeros(len(points), dtype=torch.bool)
    for blk in _blocks(points, ref, chunk):
        hit[blk.i] |= blk.within(ref_radii[blk.j], of="cols").any(1)
    return float(hit.double().mean())


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
