"""Two pieces of evaluate's FID stage before and after 2026-12-07, side by side in one run.

1. The bootstrap spread of every FID (``--rounds`` resamples of a sampler's features) against
   evaluate's two references. Before: the implementation of ``b7b10cf``, restated here
   (``bootstrap_before``): one call per (sampler, reference), each resample's covariance
   computed once per reference and the reference's square root once per round; after:
   ``fid_bootstrap_stds`` draws the resamples once and roots each reference once.
   ``--samplers`` fake sets of ``--n`` rows of ``--dim`` features (evaluate's defaults: 10,000 samples, 576 domain-v3 features, 7 samplers).
2. The domain-v3 read-out's spatial std of a stage map ``(500, C, H, W)``: torch's
   ``Tensor.std`` (before) against the two vectorised passes of ``featnet`` (after), for
   the three stage shapes of the Fashion-MNIST network.

Prints both times and their ratio per piece, and checks the values (bootstrap: equal to the
bit, as the same floating-point operations run in the same order; std: to 1e-6). Threads:
torch's and numpy's defaults (evaluate's).

    PYTHONPATH=src python benchmarks/bench_fid_spread.py [--n 10000] [--dim 576] [--samplers 2] [--rounds 10]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from spherevae.evaluation.featnet import spatial_std
from spherevae.evaluation.fid import FeatureStats, fid_bootstrap_stds, frechet_distance_from_stats


def std_before(m: torch.Tensor) -> torch.Tensor:
    """The read-out's spatial std as it was at ``b7b10cf``: torch's ``Tensor.std``."""
    return m.flatten(2).std(2, correction=0)


def bootstrap_before(real: np.ndarray, fake: np.ndarray, rounds: int = 10, seed: int = 0) -> float:
    """``fid_bootstrap_std`` as it was at ``b7b10cf``: the reference's statistics per call,
    its square root (inside ``frechet_distance_from_stats``) per round."""
    mu_a, cov_a = real.mean(0), np.cov(real, rowvar=False)
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(rounds):
        x = fake[rng.integers(0, fake.shape[0], fake.shape[0])]
        vals.append(frechet_distance_from_stats(mu_a, cov_a, x.mean(0), np.cov(x, rowvar=False)))
    return float(np.std(vals, ddof=1))


def bench_bootstrap(n: int, dim: int, samplers: int, rounds: int) -> None:
    rng = np.random.default_rng(0)
    mix = rng.standard_normal((dim, dim)) / np.sqrt(dim)  # correlated features, as real ones are
    refs = {k: rng.standard_normal((n // 2, dim)) @ mix for k in ("recon", "test")}
    fakes = [rng.standard_normal((n, dim)) @ mix * 1.1 + 0.05 for _ in range(samplers)]
    t0 = time.perf_counter()
    before = [{k: bootstrap_before(r, f, rounds=rounds) for k, r in refs.items()} for f in fakes]
    t_before = time.perf_counter() - t0
    t0 = time.perf_counter()
    stats = {k: FeatureStats.of(r) for k, r in refs.items()}  # evaluate holds these already
    after = [fid_bootstrap_stds(stats, f, rounds=rounds) for f in fakes]
    t_after = time.perf_counter() - t0
    assert before == after, "the shared-resample stds differ"
    print(f"bootstrap, {samplers} samplers x 2 references, {n} x {dim}, {rounds} rounds: before "
          f"{t_before:.1f} s, after {t_after:.1f} s, ratio {t_before / t_after:.2f}x (values equal)")


def bench_std(repeats: int = 20) -> None:
    for shape in ((500, 8, 28, 28), (500, 16, 14, 14), (500, 32, 7, 7)):
        m = torch.randn(shape, generator=torch.Generator().manual_seed(0))
        times = {}
        for label, f in (("before", std_before), ("after", spatial_std)):
            f(m)  # warm-up
            t0 = time.perf_counter()
            for _ in range(repeats):
                f(m)
            times[label] = (time.perf_counter() - t0) / repeats
        diff = float((std_before(m) - spatial_std(m)).abs().max())
        assert diff < 1e-6, diff
        print(f"std read-out {shape}: before {times['before'] * 1e3:.2f} ms, after {times['after'] * 1e3:.2f} ms, "
              f"ratio {times['before'] / times['after']:.2f}x (max difference {diff:.1e})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--dim", type=int, default=576)
    p.add_argument("--samplers", type=int, default=2)
    p.add_argument("--rounds", type=int, default=10)
    args = p.parse_args()
    bench_bootstrap(args.n, args.dim, args.samplers, args.rounds)
    bench_std()


if __name__ == "__main__":
    main()
