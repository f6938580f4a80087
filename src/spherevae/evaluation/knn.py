"""k-nearest-neighbour metrics: improved precision/recall and density/coverage of feature
sets, and k-NN classification accuracy of latents.

Both compare every row of one set with every row of another, so they work in blocks of
rows (memory bounded whatever the sizes), and precision/recall evaluates sets larger than
``max_points`` on a seeded subset of that many rows (:data:`PR_MAX_POINTS` by default).

Every decision "is this point inside that ball" is the one exact distances give (float64
rounding aside), but the distances of a block are computed in float32, about twice as fast
as float64 on a CPU: a float32 squared distance is within a proven bound of the exact one
(:func:`_row_slack`), so only the pairs within that bound of a radius are decided again
from their float64 rows, and each k-NN radius is the exact distance of the neighbour the
float32 distances shortlist (checked, else computed directly). Every exact value comes
from one formula (:func:`_direct_sq`), so ties are decided alike. Where float32 matrix
products may run at lower precision (bf16/TF32 settings) or the features could over- or
underflow float32, and for the rest of a pass once float32 cannot resolve the data (too
many undecided pairs), the blocks are float64, with the same bounds and checks.
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
    return {"precision": _coverage(f, r, _knn_sq_radii(r, k, chunk), chunk),
            "recall": _coverage(r, f, _knn_sq_radii(f, k, chunk), chunk)}


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
    hits, covered, _, _ = _ball_pass(f, r, _knn_sq_radii(r, k, chunk), chunk)
    return {"density": float(hits.sum() / (k * len(f))), "coverage": float(covered.double().mean())}


def fidelity_diversity(real: Any, fake: Any, *, k_pr: int = 3, k_dc: int = 5, chunk: int = 2048,
                       max_points: int | None = PR_MAX_POINTS, seed: int = 0,
                       real_radii: dict[int, torch.Tensor] | None = None,
                       fake_radii: dict[int, torch.Tensor] | None = None) -> dict[str, float]:
    """:func:`precision_recall` (``k = k_pr``) and :func:`density_coverage` (``k = k_dc``)
    together, equal to theirs with the same arguments, from one pass over the real-fake
    distances (the two functions pass over them four times, beside the radii).

    ``real_radii`` / ``fake_radii``: optional dicts ``k -> (N,)`` squared k-NN radii of the
    (subsampled) set, filled here where missing and reused where present, so a caller comparing many
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
#
# Every decision "is b_j inside the ball of a_i" is made on exact squared distances: the
# float64 sum ``((a - b) ** 2).sum()`` of :func:`_direct_sq`, the one formula every radius
# and every re-checked pair uses (so ties are decided alike). A block's squared distances
# come from one GEMM of ``[-2a, |a|^2 + t_a, 1] . [b, 1, |b|^2 + t_b]`` in float32 (float64
# where float32 cannot help), which gives ``hi``, an upper bound on the exact value, and
# ``lo = hi - 2 (t_a + t_b)``, a lower bound; only pairs whose bounds straddle the radius are
# computed directly. ``t`` is :func:`_row_slack`.

_UNIT = {torch.float32: 2.0 ** -24, torch.float64: 2.0 ** -53}    # unit roundoff
_TINY = {torch.float32: 2.0 ** -149, torch.float64: 2.0 ** -1074}  # smallest subnormal
# Squared norms outside this range run in float64 from the start (float32 over/underflow).
_F32_SQ_NORM_RANGE = (1e-20, 1e30)
# A float32 block with more undecided pairs than this fraction (or a float32 chunk of radii
# with more unsure rows) is redone in float64, and so is the rest of that pass: float32
# cannot resolve these data (e.g. features far from the origin), float64 costs one GEMM.
_MAX_UNDECIDED = 0.02
_PAIR_BATCH = 4096  # pairs computed directly at a time (memory bound)
_SHORTLIST_PAD = 2  # extra neighbours shortlisted per row for an exact k-NN radius


def _direct_sq(a: torch.Tensor, ia: torch.Tensor, b: torch.Tensor, ib: torch.Tensor) -> torch.Tensor:
    """``((a[ia] - b[ib]) ** 2).sum(1)`` ``(P,)`` in float64 for index pairs ``ia``, ``ib``
    ``(P,)`` into rows ``(N, D)``, :data:`_PAIR_BATCH` pairs at a time (always the same
    summation of a contiguous ``(pairs, D)`` difference, so equal pairs give equal values)."""
    out = []
    for s in range(0, ia.shape[0], _PAIR_BATCH):
        d = a[ia[s : s + _PAIR_BATCH]] - b[ib[s : s + _PAIR_BATCH]]
        out.append((d * d).sum(1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def _f32_matmul_exact() -> bool:
    """Whether CPU float32 matrix products are computed at full float32 precision (not as
    bf16/TF32), as the error bound assumes: torch's per-backend setting where it has one,
    else the legacy global one (which raises once per-backend settings are in use)."""
    mkldnn = getattr(getattr(torch.backends.mkldnn, "matmul", None), "fp32_precision", None)
    if mkldnn is not None and mkldnn not in ("none", "ieee"):
        return False
    try:
        return torch.get_float32_matmul_precision() == "highest"
    except RuntimeError:  # per-backend settings in use: the CPU's, checked above, decides
        return mkldnn is not None


@dataclass
class _Pass:
    """The precision of one pass over the blocks of some sets: float32 until a block shows
    that float32 cannot resolve these data, then float64 for the rest of the pass and for
    every later pass over the same sets (each :class:`_Rows` remembers)."""

    dtype: torch.dtype
    sets: tuple[_Rows, ...]

    @classmethod
    def of(cls, *sets: _Rows) -> _Pass:
        lo, hi = _F32_SQ_NORM_RANGE
        ok = _f32_matmul_exact() and all(
            x.f32 and (x.sq.numel() == 0 or lo < float(x.sq.max()) < hi) for x in sets)
        return cls(torch.float32 if ok else torch.float64, sets)

    def give_up_f32(self) -> bool:
        """Switch to float64 (and mark the sets); False when already there."""
        if self.dtype == torch.float64:
            return False
        self.dtype = torch.float64
        for x in self.sets:
            x.f32 = False
        return True


@dataclass
class _Rows:
    """Feature rows ``x`` ``(N, D)`` float64, their squared norms ``sq`` ``(N,)``, the GEMM
    factors per dtype (built on first use) and whether float32 is still worth trying."""

    x: torch.Tensor
    sq: torch.Tensor
    _factors: dict[torch.dtype, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    f32: bool = True  # False once float32 could not resolve a pass over these rows

    @classmethod
    def of(cls, x: np.ndarray) -> _Rows:
        t = torch.from_numpy(x)
        return cls(t, (t * t).sum(1), {})

    def __len__(self) -> int:
        return self.x.shape[0]

    def slack(self, dtype: torch.dtype) -> torch.Tensor:
        """:func:`_row_slack` of every row ``(N,)`` float64."""
        return _row_slack(self.x.shape[1], self.sq, dtype)

    def factors(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``lhs = [-2x, |x|^2 + t, 1]``, ``rhs = [x, 1, |x|^2 + t]`` and ``rhs_low = [x, 1,
        |x|^2 - t]`` ``(N, D + 2)`` in ``dtype``: ``lhs_a . rhs_b = |a - b|^2 + t_a + t_b`` and
        ``lhs_a . rhs_low_b = |a - b|^2 + t_a - t_b``, up to rounding."""
        if dtype not in self._factors:
            t = self.slack(dtype)
            ones, up, down = (torch.ones(len(self), 1, dtype=dtype), (self.sq + t).to(dtype)[:, None],
                              (self.sq - t).to(dtype)[:, None])
            xd = self.x.to(dtype)
            self._factors[dtype] = (torch.cat([-2 * xd, up, ones], 1), torch.cat([xd, ones, up], 1),
                                    torch.cat([xd, ones, down], 1))
        return self._factors[dtype]


def _row_slack(dim: int, sq: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``t`` ``(N,)`` with ``|hi - |a - b|^2 - t_a - t_b| <= (t_a + t_b) / 2`` for the GEMM
    value ``hi`` of rows with squared norms ``sq``: rounding the rows and norms to ``dtype``
    moves ``|a - b|^2`` by at most ``3u (|a| + |b|)^2``, a dot product of ``D + 2`` terms errs
    by at most ``(D + 2) u / (1 - (D + 2) u)`` times the sum of their magnitudes, about
    ``(|a| + |b|)^2`` (Higham, Accuracy and Stability, eq. 3.5), and ``(|a| + |b|)^2 <= 2
    (|a|^2 + |b|^2)``; so ``t = 4 (D + 8) u |x|^2`` (plus an underflow term) covers twice
    the error, and the subtraction giving ``lo`` (rounding ``<= 2u |hi|``) fits in the rest."""
    u = _UNIT[dtype]
    return 4 * (dim + 8) * u * sq + 4 * (dim + 8) * _TINY[dtype]


def _rounded(t: torch.Tensor, dtype: torch.dtype, *, down: bool) -> torch.Tensor:
    """float64 ``t`` as the nearest ``dtype`` value below (``down``) or above it."""
    r = t.to(dtype)
    if dtype == torch.float64:
        return r
    off = r.double() > t if down else r.double() < t
    return torch.where(off, torch.nextafter(r, torch.tensor(-torch.inf if down else torch.inf, dtype=dtype)), r)


class _Block:
    """Squared distances between rows ``i`` of ``a`` and rows ``j`` of ``b`` (slices):
    ``hi`` and ``lo`` ``(rows, cols)``, upper and lower bounds on the exact ones."""

    def __init__(self, a: _Rows, b: _Rows, i: slice, j: slice, prec: _Pass) -> None:
        self.a, self.b, self.i, self.j, self.prec = a, b, i, j, prec
        self._bound(prec.dtype)

    def _bound(self, dtype: torch.dtype) -> None:
        self.dtype = dtype
        self.hi = _gemm(self.a, self.i, self.b, self.j, dtype)
        ta, tb = 2 * self.a.slack(dtype)[self.i], 2 * self.b.slack(dtype)[self.j]
        self.lo = (self.hi - ta.to(dtype)[:, None]).sub_(tb.to(dtype)[None, :])

    def within(self, sq_radii: torch.Tensor, *, of: str) -> torch.Tensor:
        """``(rows, cols)`` bool: ``|a_i - b_j|^2 <= radius^2`` exactly (:func:`_direct_sq`),
        ``sq_radii`` the columns' ``(cols,)`` (``of="cols"``) or the rows' ``(rows,)``."""
        thr = sq_radii[None, :] if of == "cols" else sq_radii[:, None]
        while True:
            inside = self.hi <= _rounded(thr, self.dtype, down=True)
            undecided = (self.lo <= _rounded(thr, self.dtype, down=False)) & ~inside
            count = int(torch.count_nonzero(undecided))
            if count <= _MAX_UNDECIDED * undecided.numel() or self.dtype == torch.float64:
                break
            self.prec.give_up_f32()
            self._bound(torch.float64)
        if count:
            rows, cols = undecided.nonzero().unbind(1)
            exact = _direct_sq(self.a.x, rows + self.i.start, self.b.x, cols + self.j.start)
            inside[rows, cols] = exact <= thr.expand_as(inside)[rows, cols]
        return inside


def _gemm(a: _Rows, i: slice, b: _Rows, j: slice, dtype: torch.dtype) -> torch.Tensor:
    """``(rows, cols)`` upper bounds ``hi`` on the squared distances, one GEMM in ``dtype``."""
    return a.factors(dtype)[0][i] @ b.factors(dtype)[1][j].T


def _blocks(a: _Rows, b: _Rows, chunk: int) -> Any:
    """Every :class:`_Block` of ``chunk`` rows of ``a`` by ``16,384`` rows of ``b``, sharing one
    :class:`_Pass`."""
    prec = _Pass.of(a, b)
    for i in range(0, len(a), chunk):
        for j in range(0, len(b), _PR_BLOCK):
            yield _Block(a, b, slice(i, i + chunk), slice(j, j + _PR_BLOCK), prec)


def _ball_pass(f: _Rows, r: _Rows, dc_radii: torch.Tensor, chunk: int, *,
               pr_radii: tuple[torch.Tensor, torch.Tensor] | None = None,
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One pass over the fake-real distances, in blocks of ``chunk`` x 16,384.

    ``f`` ``(M, D)`` fakes, ``r`` ``(N, D)`` reals, ``dc_radii`` ``(N,)`` the reals' squared
    ball radii for density/coverage; ``pr_radii`` ``((N,), (M,))`` the reals' and the fakes'
    squared radii for precision/recall, or None to skip those. Returns ``hits`` ``(M,)``
    (real balls holding each fake), ``covered`` ``(N,)`` (real ball holding some fake), and,
    with ``pr_radii``, ``precise`` ``(M,)`` (fake inside some real ball) and ``recalled``
    ``(N,)`` (real inside some fake ball); without, those two stay all False.
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
        hits[i] += torch.count_nonzero(inside, dim=1)
        covered[j] |= inside.any(0)
    return hits, covered, precise, recalled


def _cached_radii(x: _Rows, ks: tuple[int, ...], chunk: int,
                  cache: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
    """``cache`` with the squared ``k``-NN radii of ``x`` for every ``k`` in ``ks`` (computed
    where missing)."""
    for k in ks:
        if k not in cache:
            cache[k] = _knn_sq_radii(x, k, chunk)
        elif cache[k].shape != (len(x),):
            raise ValueError(f"cached {k}-NN radii for {cache[k].shape[0]} points do not fit {len(x)} points")
    return cache


def _subsample(x: np.ndarray, max_points: int | None, rng: np.random.Generator) -> np.ndarray:
    """At most ``max_points`` rows of ``x``, drawn without replacement (all of them, in
    order, when there are not more)."""
    if max_points is None or x.shape[0] <= max_points:
        return x
    return x[np.sort(rng.choice(x.shape[0], max_points, replace=False))]


def _knn_sq_radii(x: _Rows, k: int, chunk: int) -> torch.Tensor:
    """Squared distance of each row of ``x`` ``(N, D)`` to its ``k``-th nearest other row
    ``(N,)``: the ``(k + 1)``-th smallest of the row's exact squared distances (itself, 0,
    included).

    The GEMM's upper bounds shortlist ``k + 1 + pad`` rows per row; the radius is the
    ``(k + 1)``-th smallest of their exact values, which is the row's when no row off the list
    can be nearer (every lower bound off the list is at least that value). Rows where float32
    cannot show that are shortlisted again in float64, and rows where float64 cannot either
    (ties at the k-th neighbour) are computed against every row directly."""
    n = len(x)
    if not 1 <= k < n:
        raise ValueError(f"precision_recall: k must be in [1, {n - 1}] for {n} points, got {k}")
    prec, everyone = _Pass.of(x), torch.arange(n)
    out = []
    for i in range(0, n, chunk):
        rows = torch.arange(i, min(i + chunk, n))
        kth, unsure = _shortlisted_kth(x, rows, k, prec.dtype)
        if prec.dtype == torch.float32 and unsure.any():
            if int(unsure.sum()) > _MAX_UNDECIDED * rows.numel():
                prec.give_up_f32()  # float32 cannot resolve these data: float64 from here on
            redo = unsure.clone()
            kth[redo], unsure[redo] = _shortlisted_kth(x, rows[redo], k, torch.float64)
        for r in rows[unsure].tolist():  # ties at the k-th neighbour
            kth[r - i] = _direct_sq(x.x, torch.full((n,), r), x.x, everyone).kthvalue(k + 1).values
        out.append(kth)
    return torch.cat(out)


def _shortlisted_kth(x: _Rows, rows: torch.Tensor, k: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact ``(k + 1)``-th smallest squared distance among the shortlist of each row of
    ``rows`` (indices ``(R,)``) in ``dtype``, and whether it may not be the row's ``(R,)``."""
    m = min(k + 1 + _SHORTLIST_PAD, len(x))
    g, idx = _shortlist(x, rows, m, dtype)
    cand = _direct_sq(x.x, rows.repeat_interleave(m), x.x, idx.reshape(-1)).view(idx.shape)
    kth = cand.kthvalue(k + 1, dim=1).values
    if m == len(x):  # every row is on the list
        return kth, torch.zeros_like(kth, dtype=torch.bool)
    # The list holds the m smallest g = |a - b|^2 + t_a - t_b (+ rounding within (t_a + t_b) / 2),
    # so every row off it has |a - b|^2 >= g - 1.5 t_a >= (the list's largest g) - 1.5 t_a: a
    # bound per row, which an outlier elsewhere does not loosen. A radius of 0 is exact.
    floor = g.max(1).values.double() - 2 * x.slack(dtype)[rows]
    return kth, (kth > floor) & (kth > 0)


def _shortlist(x: _Rows, rows: torch.Tensor, m: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``m`` smallest ``g = lhs_a . rhs_low_b`` of each row of ``rows`` (indices) against
    all rows, and their indices ``(R, m)``, kept across blocks of 16,384 columns."""
    lhs, _, rhs = x.factors(dtype)
    lhs = lhs[rows]
    vals = idx = None
    for j in range(0, len(x), _PR_BLOCK):
        hi = lhs @ rhs[j : j + _PR_BLOCK].T
        v, ix = hi.topk(min(m, hi.shape[1]), dim=1, largest=False)
        ix = ix + j
        if vals is not None and idx is not None:
            v, ix = torch.cat([vals, v], 1), torch.cat([idx, ix], 1)
            v, pick = v.topk(min(m, v.shape[1]), dim=1, largest=False)
            ix = ix.gather(1, pick)
        vals, idx = v, ix
    assert vals is not None and idx is not None
    return vals, idx


def _coverage(points: _Rows, ref: _Rows, ref_sq_radii: torch.Tensor, chunk: int) -> float:
    """Fraction of ``points`` inside at least one ball ``(ref[j], radius^2 = ref_sq_radii[j])``."""
    hit = torch.zeros(len(points), dtype=torch.bool)
    for blk in _blocks(points, ref, chunk):
        hit[blk.i] |= blk.within(ref_sq_radii[blk.j], of="cols").any(1)
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
