"""Precision/recall + density/coverage the way evaluation computes them, before and after
the one-pass ``fidelity_diversity`` with cached radii (2026-12-07), side by side in one run.

Workload of one evaluation: ``--samplers`` fake sets, each compared with two reference sets
(reconstructions and real test images), ``--n`` rows of ``--dim`` features each (evaluate's
defaults: 10,000 rows, 576 domain-v3 features, 7-8 samplers). Before: per (sampler,
reference) ``precision_recall`` and ``density_coverage`` (radii of both sets and four passes
over the fake-real distances); after: one pass per (sampler, reference), the references'
radii computed once and each sampler's radii once. Prints both times and their ratio, and
checks the values are equal. One thread.

    PYTHONPATH=src python benchmarks/bench_knn_metrics.py [--n 5000] [--dim 576] [--samplers 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from spherevae.evaluation.knn import density_coverage, fidelity_diversity, precision_recall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--dim", type=int, default=576)
    p.add_argument("--samplers", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    refs = [rng.standard_normal((args.n, args.dim)) for _ in range(2)]
    fakes = [rng.standard_normal((args.n, args.dim)) * 1.1 + 0.05 for _ in range(args.samplers)]

    t0 = time.perf_counter()
    before = [{**precision_recall(r, f), **density_coverage(r, f)} for f in fakes for r in refs]
    t_before = time.perf_counter() - t0

    t0 = time.perf_counter()
    ref_radii: list[dict[int, torch.Tensor]] = [{}, {}]
    after = []
    for f in fakes:
        own: dict[int, torch.Tensor] = {}
        after += [fidelity_diversity(r, f, real_radii=ref_radii[i], fake_radii=own) for i, r in enumerate(refs)]
    t_after = time.perf_counter() - t0

    assert before == after, "the one-pass values differ"
    print(f"n={args.n} dim={args.dim} samplers={args.samplers} x 2 references: "
          f"before {t_before:.1f} s, after {t_after:.1f} s, ratio {t_before / t_after:.2f}x (values equal)")


if __name__ == "__main__":
    main()
