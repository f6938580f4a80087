"""Forward+backward cost of the hyperspherical cosines, side by side in one run.

Compares, at batch 200 and n = 32..2000 (float32, CPU unless --device):

* ``fast``: ``spherevae.geometry.coordinates.hyperspherical_cosines`` (analytic O(n) backward);
* ``autograd``: the same O(n) formula differentiated by autograd (``fast=False``);
* ``l2``: a plain L2 normalisation ``x / |x|`` (the floor: one reduction, one division);
* ``masked``: a straightforward O(batch n^2) implementation that forms the (B, n, n)
  masked squares and sums each row (the baseline of the issue);
* ``masked_mm``: the same O(n^2) tails by a matrix product with a triangular mask
  (BLAS makes this the strongest quadratic baseline).

Timings are interleaved (each round runs every variant once) and the median of the
rounds is reported, so the ratios are robust to the noise of a shared machine.

    python benchmarks/bench_coordinates.py [--ns 32 100 200 500 1000 2000] [--rounds 15]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch

from spherevae.geometry.coordinates import hyperspherical_cosines


def masked_broadcast(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    n = x.shape[-1]
    idx = torch.arange(n, device=x.device)
    keep = idx[None, :] >= idx[:, None]  # (n, n): row k keeps entries j >= k
    tails = torch.sqrt((x * x).unsqueeze(-2).mul(keep).sum(-1))  # (B, n, n) -> (B, n)
    return tails[..., 0], (x / tails)[..., :-1]


def masked_matmul(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    n = x.shape[-1]
    idx = torch.arange(n, device=x.device)
    keep = (idx[:, None] >= idx[None, :]).to(x.dtype)  # (n, n): column k sums rows j >= k
    tails = torch.sqrt((x * x) @ keep)
    return tails[..., 0], (x / tails)[..., :-1]


def l2_normalise(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r = x.norm(dim=-1, keepdim=True)
    return r[..., 0], x / r


VARIANTS: dict[str, Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]] = {
    "fast": lambda x: hyperspherical_cosines(x, validate=False),
    "autograd": lambda x: hyperspherical_cosines(x, validate=False, fast=False),
    "l2": l2_normalise,
    "masked": masked_broadcast,
    "masked_mm": masked_matmul,
}


def step(fn: Callable, x: torch.Tensor, w: torch.Tensor) -> None:
    x.grad = None
    r, c = fn(x)
    (r.sum() + (c * w[..., : c.shape[-1]]).sum()).backward()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench(n: int, batch: int, rounds: int, device: torch.device, skip_masked_above: int) -> dict[str, float]:
    g = torch.Generator().manual_seed(n)
    x = torch.randn(batch, n, generator=g).to(device).requires_grad_()
    w = torch.randn(batch, n, generator=g).to(device)
    names = [k for k in VARIANTS if not (k == "masked" and n > skip_masked_above)]
    for name in names:  # warm-up
        step(VARIANTS[name], x, w)
    times: dict[str, list[float]] = {k: [] for k in names}
    for _ in range(rounds):
        for name in names:
            inner = 1 if name.startswith("masked") else 20
            sync(device)
            t0 = time.perf_counter()
            for _ in range(inner):
                step(VARIANTS[name], x, w)
            sync(device)
            times[name].append((time.perf_counter() - t0) / inner)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ns", type=int, nargs="+", default=[32, 100, 200, 500, 1000, 2000])
    p.add_argument("--batch", type=int, default=200)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--skip-masked-above", type=int, default=1000,
                   help="the (B, n, n) baseline needs B*n^2*4 bytes per tensor")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"# torch {torch.__version__}, {platform.processor() or platform.machine()}, device {device}, "
          f"threads {torch.get_num_threads()}, batch {args.batch}, float32, median of {args.rounds} rounds")
    print("| n | fast fwd+bwd (ms) | fast / l2 | autograd / fast | masked / fast | masked_mm / fast |")
    print("|---|---|---|---|---|---|")
    for n in args.ns:
        t = bench(n, args.batch, args.rounds, device, args.skip_masked_above)
        masked = f"{t['masked'] / t['fast']:.0f}x" if "masked" in t else "(skipped)"
        print(f"| {n} | {1e3 * t['fast']:.3f} | {t['fast'] / t['l2']:.2f} | {t['autograd'] / t['fast']:.2f} | "
              f"{masked} | {t['masked_mm'] / t['fast']:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
