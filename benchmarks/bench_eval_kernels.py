"""The two evaluation kernels changed on 2026-12-07 (third session), each against its
previous form, side by side in one run on real Fashion-MNIST data.

1. Precision/recall + density/coverage (``knn.fidelity_diversity``: float32 distance
   blocks, every decision exact) against the float64 ``torch.cdist`` blocks used before
   (``_before``, the 2026-12-07 implementation at d1938cd restated here). Workload of one
   sampler in evaluate: 10,000 fake rows against two references of 5,000 (each fake set's
   radii once, the references' radii once), here the domain-v3 features of 10,000 training
   images (fakes) and of the 5,000 test images and 5,000 other training images
   (references). The values must be equal (no exact ties in these features).
2. Domain-v3 feature extraction of 10,000 test images: batch 500 in the default memory
   layout (before) against batch 128 with the network channels-last (after), and the
   largest difference between the two.

Rounds alternate before/after; the medians and their ratio are printed. Default threads.

    PYTHONPATH=src python benchmarks/bench_eval_kernels.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from spherevae.data import load_dataset
from spherevae.evaluation import extract_features, fidelity_diversity, shipped_featnet


def _knn_workload(fake: np.ndarray, refs: list[np.ndarray]) -> list[dict[str, float]]:
    """One sampler against two references, radii cached as evaluate caches them."""
    own: dict[int, torch.Tensor] = {}
    return [fidelity_diversity(r, fake, real_radii={}, fake_radii=own) for r in refs]


def _before_radii(x: torch.Tensor, k: int, chunk: int = 2048) -> torch.Tensor:
    """k-NN radii as before: the (k + 1) smallest of float64 cdist rows."""
    return torch.cat([torch.cdist(x[i : i + chunk], x).topk(k + 1, dim=1, largest=False).values.max(1).values
                      for i in range(0, x.shape[0], chunk)])


def _before_one(r: torch.Tensor, f: torch.Tensor, rr: dict[int, torch.Tensor], fr: torch.Tensor,
                chunk: int = 2048) -> dict[str, float]:
    """One (sampler, reference) pass as before: float64 cdist blocks, three comparisons."""
    hits, covered = torch.zeros(f.shape[0], dtype=torch.float64), torch.zeros(r.shape[0], dtype=torch.bool)
    precise, recalled = torch.zeros(f.shape[0], dtype=torch.bool), torch.zeros(r.shape[0], dtype=torch.bool)
    for i in range(0, f.shape[0], chunk):
        d = torch.cdist(f[i : i + chunk], r)
        precise[i : i + chunk] |= (d <= rr[3][None]).any(1)
        recalled |= (d <= fr[i : i + chunk, None]).any(0)
        inside = d <= rr[5][None]
        hits[i : i + chunk] += inside.sum(1)
        covered |= inside.any(0)
    return {"precision": float(precise.double().mean()), "recall": float(recalled.double().mean()),
            "density": float(hits.sum() / (5 * f.shape[0])), "coverage": float(covered.double().mean())}


def _before(fake: np.ndarray, refs: list[np.ndarray]) -> list[dict[str, float]]:
    f = torch.from_numpy(fake)
    fr = _before_radii(f, 3)
    out = []
    for ref in refs:
        r = torch.from_numpy(ref)
        out.append(_before_one(r, f, {3: _before_radii(r, 3), 5: _before_radii(r, 5)}, fr))
    return out


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _side_by_side(name: str, before: Callable[[], Any], after: Callable[[], Any], rounds: int) -> tuple[Any, Any]:
    times: dict[str, list[float]] = {"before": [], "after": []}
    outs: dict[str, Any] = {}
    for _ in range(rounds):
        for which, fn in (("before", before), ("after", after)):
            t, outs[which] = _timed(fn)
            times[which].append(t)
    b, a = np.median(times["before"]), np.median(times["after"])
    print(f"{name}: before {b:.2f} s, after {a:.2f} s (medians of {rounds}; all: "
          f"{[round(t, 2) for t in times['before']]} / {[round(t, 2) for t in times['after']]}), ratio {b / a:.2f}x")
    return outs["before"], outs["after"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    test, train = load_dataset("fashion-mnist", "test"), load_dataset("fashion-mnist", "train")
    x_test, x_train = test.images.float() / 255, train.images[:15000].float() / 255
    net = shipped_featnet("fashion-mnist", 0, image_shape=(1, 28, 28), num_classes=10, readout="domain-v3")
    assert net is not None, "the shipped Fashion-MNIST network is missing"
    net.eval()
    fast = copy.deepcopy(net).to(memory_format=torch.channels_last)

    f_before, f_after = _side_by_side(
        "domain-v3 features of 10,000 test images",
        lambda: extract_features(net, x_test, batch_size=500),
        lambda: extract_features(fast, x_test, batch_size=128), args.rounds)
    print(f"  largest feature difference {np.abs(f_before - f_after).max():.2e} "
          f"(feature std {f_before.std(0).mean():.2f})")

    fake = extract_features(net, x_train[:10000])
    refs = [f_before[:5000], extract_features(net, x_train[10000:15000])]
    k_before, k_after = _side_by_side(
        "precision/recall/density/coverage, 10,000 fakes x 2 references of 5,000",
        lambda: _before(fake, refs), lambda: _knn_workload(fake, refs), args.rounds)
    assert k_before == k_after, f"values differ: {k_before} vs {k_after}"
    print(f"  values equal: {k_after}")


if __name__ == "__main__":
    main()
