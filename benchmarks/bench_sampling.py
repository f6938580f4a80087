"""Benchmark: von Mises-Fisher fit + sampling, ours vs scipy.stats.vonmises_fisher.

Run:  PYTHONPATH=src python benchmarks/bench_sampling.py [--repeats 5] [--threads 1]

Prints, for each (n, kappa): our fit + 10k-sample time, scipy's (fit and sample timed
separately, one run: scipy is slow), the ratio measured side by side, and the kappa each
fit returns on our samples (scipy's fit breaks at n = 128, kappa = 300).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
from scipy.stats import vonmises_fisher

from spherevae.distributions.vmf import VonMisesFisher


def _timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--num", type=int, default=10_000)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads={args.threads}, samples={args.num}")
    header = f"{'n':>5} {'kappa':>7} | {'ours fit+sample s':>17} | {'scipy fit s':>11} {'scipy sample s':>14}"
    print(header + f" | {'scipy/ours':>10} | {'kappa ours':>10} {'kappa scipy':>11}")
    for n, kappa in [(3, 10.0), (128, 300.0), (1000, 500.0)]:
        g = torch.Generator().manual_seed(0)
        loc = torch.randn(n, dtype=torch.float64, generator=g)
        loc = loc / loc.norm()
        truth = VonMisesFisher(loc.float(), kappa)
        z = truth.sample(args.num, generator=g) * n**0.5  # latents on the model's sphere

        def ours(z=z, g=g):
            fitted = VonMisesFisher.fit(z)
            return fitted, fitted.sample(args.num, generator=g)

        t_ours, (fitted, _) = _timed(ours, args.repeats)
        zn = z.double().numpy()
        zn = zn / (zn**2).sum(1, keepdims=True) ** 0.5
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = time.perf_counter()
            _, kappa_s = vonmises_fisher.fit(zn)
            t_fit = time.perf_counter() - start
            start = time.perf_counter()
            vonmises_fisher(loc.numpy(), kappa).rvs(args.num, random_state=0)
            t_rvs = time.perf_counter() - start
        ratio = (t_fit + t_rvs) / t_ours
        print(
            f"{n:>5} {kappa:>7g} | {t_ours:>17.3f} | {t_fit:>11.3f} {t_rvs:>14.3f} | {ratio:>10.1f} | "
            f"{fitted.concentration.item():>10.2f} {kappa_s:>11.2f}"
        )


if __name__ == "__main__":
    main()
