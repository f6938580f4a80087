"""Extra cost per training step of the compressed loss over the standard beta-VAE loss.

Paper sec 3: "The coordinate transformation and the extra KLD terms add about 32%
computation time during training per epoch (measured at: 200 samples per batch,
n = 200)". Our goal: under 3% at n = 200 and under 5% at n = 1000.

One training step = forward + backward + Adam step of the "cifar10" preset ResNet VAE
at batch 200:

- standard (A):   vae_loss(x, x_hat, mu, logvar, beta).total            (eqs 1-2)
- compressed (B): reconstruction + beta * HypersphericalPriorLoss(mu, sigma), with z
                  projected to radius sqrt(n)                             (eqs 4-6, 8)

A and B are separate models with the same initial weights and their own Adam state,
trained on the same batch. Steps are interleaved in pairs whose order alternates
(A B, B A, A B, ...) so drift in machine load hits both equally; after a warm-up, the
script prints the median of the per-pair ratios B/A and their spread.

On a loaded machine a whole step varies by far more than the few percent we look for,
so the script also times the only work that differs (A': Gaussian KL; B': projection +
prior loss; forward + backward on fixed encoder outputs) over thousands of interleaved
repetitions and reports ``1 + (median B' - median A') / median A``: the same overhead,
estimated without the noise of the convolutions.

    PYTHONPATH=src python benchmarks/bench_loss_overhead.py [--quick]
        [--latent-dims 200 1000] [--batch-size 200] [--pairs 20] [--loss-pairs 2000] [--threads 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from spherevae.geometry.coordinates import project_to_sphere
from spherevae.losses.prior import HypersphericalPriorLoss
from spherevae.losses.vae import gaussian_kld, reconstruction_error, vae_loss
from spherevae.models.config import ModelConfig
from spherevae.models.vae import VAE, VAEOutput

BETA = 1.0


def make_step(model: VAE, x: torch.Tensor, objective: Callable[[torch.Tensor, VAEOutput], torch.Tensor],
              seed: int) -> Callable[[], None]:
    """A closure running one optimisation step of ``model`` on ``x`` with ``objective``."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    generator = torch.Generator(device=x.device).manual_seed(seed)

    def step() -> None:
        out = model(x, generator)
        loss = objective(x, out)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def _standard_loss(x: torch.Tensor, x_hat: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return vae_loss(x, x_hat, mu, logvar, BETA, validate=False).total


def standard_objective(compile_loss: bool = False) -> Callable[[torch.Tensor, VAEOutput], torch.Tensor]:
    loss = torch.compile(_standard_loss) if compile_loss else _standard_loss

    def objective(x: torch.Tensor, out: VAEOutput) -> torch.Tensor:
        return loss(x, out.x_hat, out.mu, out.logvar)

    return objective


def compressed_objective(prior: HypersphericalPriorLoss, compile_loss: bool = False
                         ) -> Callable[[torch.Tensor, VAEOutput], torch.Tensor]:
    def _loss(x: torch.Tensor, x_hat: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        # validate=False as in the training step: finiteness checks are host syncs.
        return reconstruction_error(x, x_hat) + BETA * prior(mu, torch.exp(0.5 * logvar), validate=False)

    loss = torch.compile(_loss) if compile_loss else _loss

    def objective(x: torch.Tensor, out: VAEOutput) -> torch.Tensor:
        return loss(x, out.x_hat, out.mu, out.logvar)

    return objective


def loss_only_steps(model: VAE, prior: HypersphericalPriorLoss, x: torch.Tensor
                    ) -> tuple[Callable[[], None], Callable[[], None]]:
    """The part of a step that differs between A and B, on fixed encoder outputs.

    A': the standard loss's latent work (Gaussian KL) forward + backward.
    B': projection of z (eq 8) and the prior loss forward + backward.
    Both start from the same detached ``mu, logvar`` of batch ``x`` and a fixed ``eps``.
    These take milliseconds, so thousands of repetitions give a noise-robust estimate of
    the extra time even on a loaded machine.
    """
    with torch.no_grad():
        mu0, logvar0 = model.encode(x)
    eps = torch.randn(mu0.shape, generator=torch.Generator().manual_seed(3)).to(mu0.device)
    radius = float(mu0.shape[1]) ** 0.5

    def step_a() -> None:
        mu, logvar = mu0.clone().requires_grad_(), logvar0.clone().requires_grad_()
        z = mu + torch.exp(0.5 * logvar) * eps
        (gaussian_kld(mu, logvar) + z.sum()).backward()

    def step_b() -> None:
        mu, logvar = mu0.clone().requires_grad_(), logvar0.clone().requires_grad_()
        sigma = torch.exp(0.5 * logvar)
        z = project_to_sphere(mu + sigma * eps, radius, validate=False)
        (prior(mu, sigma, validate=False) + z.sum()).backward()

    return step_a, step_b


def interleaved(step_a: Callable[[], None], step_b: Callable[[], None], pairs: int,
                device: torch.device) -> tuple[list[float], list[float]]:
    """Times of ``pairs`` A/B pairs, the order alternating (A B, B A, ...)."""
    times_a, times_b = [], []
    for i in range(pairs):
        if i % 2 == 0:
            a, b = timed(step_a, device), timed(step_b, device)
        else:
            b, a = timed(step_b, device), timed(step_a, device)
        times_a.append(a)
        times_b.append(b)
    return times_a, times_b


def timed(step: Callable[[], None], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def measure(latent_dim: int, args: argparse.Namespace) -> dict[str, float]:
    device = torch.device(args.device)
    torch.manual_seed(0)
    standard = VAE(ModelConfig.from_preset(args.preset, latent_dim=latent_dim)).to(device)
    compressed = VAE(ModelConfig.from_preset(args.preset, latent_dim=latent_dim,
                                             project_to_sphere=True)).to(device)
    compressed.load_state_dict(standard.state_dict())
    prior = HypersphericalPriorLoss(latent_dim, preset="full").to(device)

    shape = (args.batch_size, *standard.config.image_shape)
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1)).to(device)
    step_a = make_step(standard, x, standard_objective(args.compile_loss), seed=2)
    step_b = make_step(compressed, x, compressed_objective(prior, args.compile_loss), seed=2)

    for _ in range(args.warmup):
        step_a()
        step_b()
    times_a, times_b = interleaved(step_a, step_b, args.pairs, device)
    ratios = [b / a for a, b in zip(times_a, times_b, strict=True)]
    loss_a, loss_b = loss_only_steps(compressed, prior, x)
    interleaved(loss_a, loss_b, 10, device)  # warm-up
    extra_a, extra_b = interleaved(loss_a, loss_b, args.loss_pairs, device)
    extra = statistics.median(extra_b) - statistics.median(extra_a)
    quartiles = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) >= 2 else [ratios[0]] * 3
    return {
        "n": latent_dim,
        "standard_ms": 1000 * statistics.median(times_a),
        "compressed_ms": 1000 * statistics.median(times_b),
        "ratio": statistics.median(ratios),
        "q1": quartiles[0],
        "q3": quartiles[2],
        "min": min(ratios),
        "max": max(ratios),
        "extra_ms": 1000 * extra,
        "extra_ratio": 1 + extra / statistics.median(times_a),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 warm-up steps and 8 pairs (CPU-sized)")
    parser.add_argument("--latent-dims", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--preset", default="cifar10")
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--loss-pairs", type=int, default=2000,
                        help="pairs for the isolated loss-only timing")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile-loss", action="store_true",
                        help="torch.compile both objectives' loss functions (the models stay eager)")
    args = parser.parse_args()
    if args.quick:
        args.pairs, args.warmup, args.loss_pairs = 8, 2, 500
    torch.set_num_threads(args.threads)

    print(f"preset={args.preset} batch={args.batch_size} pairs={args.pairs} warmup={args.warmup} "
          f"device={args.device} threads={args.threads} compile_loss={args.compile_loss} torch={torch.__version__}")
    print(f"{'n':>6} {'standard ms':>12} {'compressed ms':>14} {'median B/A':>11} "
          f"{'IQR':>17} {'min..max':>17} {'isolated extra ms':>18} {'1+extra/A':>10}")
    for n in args.latent_dims:
        r = measure(n, args)
        print(f"{r['n']:>6} {r['standard_ms']:>12.1f} {r['compressed_ms']:>14.1f} "
              f"{r['ratio']:>11.4f} {r['q1']:>8.4f}..{r['q3']:<7.4f} {r['min']:>8.4f}..{r['max']:<7.4f} "
              f"{r['extra_ms']:>18.2f} {r['extra_ratio']:>10.4f}")


if __name__ == "__main__":
    main()
