"""Time one training epoch of a model preset on synthetic data of the dataset's size.

The preset "fashion-mnist-cpu" promises an epoch of Fashion-MNIST (60 000 images,
28x28x1) at batch 128 in well under a minute on 2 CPU cores; this measures it. The
images are uniform noise: the step's cost does not depend on the pixel values.

    PYTHONPATH=src python benchmarks/bench_model_epoch.py [--preset fashion-mnist-cpu]
        [--images 60000] [--batch-size 128] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import torch

from spherevae.models.config import ModelConfig
from spherevae.models.vae import VAE


def train_step(model: VAE, optimizer: torch.optim.Optimizer, x: torch.Tensor,
               generator: torch.Generator) -> float:
    """One Adam step on the standard beta-VAE loss (beta = 1), written out here so the
    benchmark measures the model, not the losses module."""
    out = model(x, generator)
    mse = (out.x_hat - x).pow(2).flatten(1).sum(1).mean()
    kld = -0.5 * (1 + out.logvar - out.mu.pow(2) - out.logvar.exp()).sum(1).mean()
    loss = mse + kld
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="fashion-mnist-cpu")
    parser.add_argument("--images", type=int, default=60_000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = ModelConfig.from_preset(args.preset)
    model = VAE(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    steps = -(-args.images // args.batch_size)
    x = torch.rand(args.batch_size, *config.image_shape, generator=generator)

    for _ in range(3):  # warm-up: allocator, oneDNN kernel selection
        train_step(model, optimizer, x, generator)
    start = time.perf_counter()
    for _ in range(steps):
        loss = train_step(model, optimizer, x, generator)
    seconds = time.perf_counter() - start
    params = sum(p.numel() for p in model.parameters())
    print(f"preset={args.preset} params={params} batch={args.batch_size} steps={steps} "
          f"threads={args.threads}")
    print(f"epoch: {seconds:.1f} s ({1000 * seconds / steps:.1f} ms/step), final loss {loss:.1f}")


if __name__ == "__main__":
    main()
