"""Benchmark: fit and sample time of every sampler of the registry on latent-sized data.

Run:  PYTHONPATH=src python benchmarks/bench_samplers.py [--num 10000] [--dim 128] [--threads 2]
      [--latents FILE.pt]   (a torch file holding {"latents": (N, n) tensor}, e.g. encoded test means)

The synthetic latents are anisotropic directions (a Gaussian around a mean with a
geometric tangent spectrum, projected to the sphere of radius sqrt(n)), the shape that
compressed models' latents have. Prints, per sampler, the fit time and the time to draw
``--num`` samples (median of ``--repeats``; the first fit of the process, which also
imports torch.optim, is not timed), and the mean log-likelihood where the fit reports one.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from spherevae.distributions.samplers import SAMPLERS, fit_sampler


def synthetic_latents(num: int, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    scales = 0.3 * 0.9 ** torch.arange(n, dtype=torch.float64)
    y = torch.randn(num, n, dtype=torch.float64, generator=g) * scales
    y[:, 0] += 1.0
    rot, _ = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64, generator=g))
    z = y @ rot.T
    return (math.sqrt(n) * z / z.norm(dim=1, keepdim=True)).float()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--num", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--latents", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.latents:
        z = torch.load(args.latents, weights_only=True)["latents"][: args.num]
    else:
        z = synthetic_latents(args.num, args.dim, 0)
    fit_sampler("esag", z[:200], seed=0)  # warm-up: torch.optim's first step imports a lot
    print(f"torch {torch.__version__}, threads={args.threads}, latents {tuple(z.shape)}")
    print(f"{'sampler':>16} | {'fit s':>7} | {'sample s':>8} | note")
    for name in SAMPLERS:
        fits, draws = [], []
        for r in range(args.repeats):
            t0 = time.perf_counter()
            sampler = fit_sampler(name, z, seed=r)
            t1 = time.perf_counter()
            sampler.sample(args.num, generator=torch.Generator().manual_seed(r))
            fits.append(t1 - t0)
            draws.append(time.perf_counter() - t1)
        base = getattr(sampler, "base", sampler)
        note = ""
        if hasattr(base, "n_iter"):
            note = f"{base.n_iter} iterations, mean log-lik {base.log_likelihood:.3f}"
        print(f"{name:>16} | {statistics.median(fits):7.2f} | {statistics.median(draws):8.2f} | {note}")


if __name__ == "__main__":
    main()
