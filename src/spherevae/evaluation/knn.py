"""k-nearest-neighbour metrics: improved precision/recall and density/coverage of feature
sets, and k-NN classification accuracy of latents.

Both compare every row of one set with every row of another, so they work in blocks of
rows (memory bounded whatever the sizes), and precision/recall evaluates sets larger than
``max_points`` on a seeded subset of that many rows (:data:`PR_MAX_POINTS` by default).
"""

from __future__ import annotations

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
    r = torch.from_numpy(_subsample(_as_f64(real), max_points, rng))
    f = torch.from_numpy(_subsample(_as_f64(fake), max_points, rng))
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
    r = torch.from_numpy(_subsample(_as_f64(real), max_points, rng))
    f = torch.from_numpy(_subsample(_as_f64(fake), max_points, rng))
    hits, covered, _, _ = _ball_pass(f, r, _knn_radii(r, k, chunk), chunk)
    return {"density": float(hits.sum() / (k * f.shape[0])), "coverage": float(covered.double().mean())}


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
    r = torch.from_numpy(_subsample(_as_f64(real), max_points, rng))
    f = torch.from_numpy(_subsample(_as_f64(fake), max_points, rng))
    rr = _cached_radii(r, (k_pr, k_dc), chunk, {} if real_radii is None else real_radii)
    fr = _cached_radii(f, (k_pr,), chunk, {} if fake_radii is None else fake_radii)[k_pr]
    hits, covered, precise, recalled = _ball_pass(f, r, rr[k_dc], chunk, pr_radii=(rr[k_pr], fr))
    return {"precision": float(precise.double().mean()), "recall": float(recalled.double().mean()),
            "density": float(hits.sum() / (k_dc * f.shape[0])), "coverage": float(covered.double().mean())}


def _ball_pass(f: torch.Tensor, r: torch.Tensor, dc_radii: torch.Tensor, chunk: int, *,
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
    hits = torch.zeros(f.shape[0], dtype=torch.float64)
    covered = torch.zeros(r.shape[0], dtype=torch.bool)
    precise = torch.zeros(f.shape[0], dtype=torch.bool)
    recalled = torch.zeros(r.shape[0], dtype=torch.bool)
    for i in range(0, f.shape[0], chunk):
        for j in range(0, r.shape[0], _PR_BLOCK):
            d = torch.cdist(f[i : i + chunk], r[j : j + _PR_BLOCK])
            if pr_radii is not None:
                precise[i : i + chunk] |= (d <= pr_radii[0][None, j : j + _PR_BLOCK]).any(1)
                recalled[j : j + _PR_BLOCK] |= (d <= pr_radii[1][i : i + chunk, None]).any(0)
            inside = d <= dc_radii[None, j : j + _PR_BLOCK]
            hits[i : i + chunk] += inside.sum(1)
            covered[j : j + _PR_BLOCK] |= inside.any(0)
    return hits, covered, precise, recalled


def _cached_radii(x: torch.Tensor, ks: tuple[int, ...], chunk: int,
                  cache: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
    """``cache`` with the ``k``-NN radii of ``x`` for every ``k`` in ``ks`` (computed where missing)."""
    for k in ks:
        if k not in cache:
            cache[k] = _knn_radii(x, k, chunk)
        elif cache[k].shape != (x.shape[0],):
            raise ValueError(f"cached {k}-NN radii for {cache[k].shape[0]} points do not fit {x.shape[0]} points")
    return cache


def _subsample(x: np.ndarray, max_points: int | None, rng: np.random.Generator) -> np.ndarray:
    """At most ``max_points`` rows of ``x``, drawn without replacement (all of them, in
    order, when there are not more)."""
    if max_points is None or x.shape[0] <= max_points:
        return x
    return x[np.sort(rng.choice(x.shape[0], max_points, replace=False))]


def _knn_radii(x: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """Distance of each row of ``x`` ``(N, D)`` to its ``k``-th nearest other row ``(N,)``:
    the ``k + 1`` smallest distances of a row (the row itself is one) kept across blocks."""
    if not 1 <= k < x.shape[0]:
        raise ValueError(f"precision_recall: k must be in [1, {x.shape[0] - 1}] for {x.shape[0]} points, got {k}")
    out = []
    for i in range(0, x.shape[0], chunk):
        best = None
        for j in range(0, x.shape[0], _PR_BLOCK):
            d = torch.cdist(x[i : i + chunk], x[j : j + _PR_BLOCK])
            d = d if best is None else torch.cat([best, d], 1)
            best = d.topk(min(k + 1, d.shape[1]), dim=1, largest=False).values
        assert best is not None
        out.append(best.max(1).values)  # the (k+1)-th smallest: kthvalue(k + 1) of the full row
    return torch.cat(out)


def _coverage(points: torch.Tensor, ref: torch.Tensor, ref_radii: torch.Tensor, chunk: int) -> float:
    """Fraction of ``points`` inside at least one ball ``(ref[j], ref_radii[j])``."""
    inside = []
    for i in range(0, points.shape[0], chunk):
        hit = torch.zeros(min(chunk, points.shape[0] - i), dtype=torch.bool)
        for j in range(0, ref.shape[0], _PR_BLOCK):
            d = torch.cdist(points[i : i + chunk], ref[j : j + _PR_BLOCK])
            hit |= (d <= ref_radii[None, j : j + _PR_BLOCK]).any(1)
        inside.append(hit)
    return float(torch.cat(inside).double().mean())


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
