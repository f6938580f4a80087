"""The two evaluation kernels changed on 2026-12-07 (third session), each against its
previous form, side by side in one run on real Fashion-MNIST data.

1. Precision/recall + density/coverage (``knn.fidelity_diversity``) with float32 distance
   blocks against the float64 blocks used before. The float64 form is the same code with
   ``torch.set_float32_matmul_precision("high")``, under which the module computes every
   block in float64 exactly as before (``torch.cdist``). Workload of one sampler in
   evaluate: 10,000 fake rows against two references of 5,000 (each fake set's radii once,
   the references' radii once), here the domain-v3 features of 10,000 training images
   (fakes) and of the 5,000 test images and 5,000 other training images (references).
   The values must be equal.
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


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _with_matmul_precision(precision: str, fn: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        before = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision(precision)
        try:
            return fn()
        finally:
            torch.set_float32_matmul_precision(before)
    return run


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
        _with_matmul_precision("high", lambda: _knn_workload(fake, refs)),
        lambda: _knn_workload(fake, refs), args.rounds)
    assert k_before == k_after, f"values differ: {k_before} vs {k_after}"
    print(f"  values equal: {k_after}")


if __name__ == "__main__":
    main()
