"""A seconds-long demonstration of the coordinates and the compressed loss, no data.

``spherevae demo`` draws Gaussian latents ``mu`` (what a standard VAE's encoder spreads
over the sphere), shows their hyperspherical statistics against theory, then minimises
the compressed loss (``HypersphericalPriorLoss``, preset ``"full"``) directly over the
latents with Adam and shows the volume collapsing toward the pole: the batch mean of
``cos phi_k`` rising to 1, the replica angle shrinking, the radius reaching ``sqrt(n)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from spherevae.geometry.coordinates import hyperspherical_cosines, project_to_sphere, sphere_radius
from spherevae.geometry.sphere import replica_angles
from spherevae.losses.prior import HypersphericalPriorLoss

__all__ = [
    "DemoRow",
    "compress_latents",
    "run_demo",
]


@dataclass(frozen=True)
class DemoRow:
    step: int
    loss: float
    mean_cos: float  # batch mean of cos phi_k, averaged over k
    replica_angle: float  # mean angle (radians) between each latent and the batch mean
    radius: float  # batch mean of |mu|


def _row(step: int, loss: float, mu: torch.Tensor) -> DemoRow:
    r, cos = hyperspherical_cosines(mu.detach(), validate=False)
    angle = replica_angles(mu.detach()).mean()
    return DemoRow(step, loss, float(cos.mean()), float(angle), float(r.mean()))


def compress_latents(
    latent_dim: int = 128, batch: int = 256, *, steps: int = 300, lr: float = 0.05,
    preset: str = "full", seed: int = 0, every: int = 50,
) -> list[DemoRow]:
    """Minimise the compressed loss over free latents ``mu (batch, n)`` (sigma fixed at 1).

    Returns the statistics every ``every`` steps, from step 0 (Gaussian latents).
    """
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(batch, latent_dim, generator=g).requires_grad_()
    sigma = torch.ones(batch, latent_dim)
    loss_fn = HypersphericalPriorLoss(latent_dim, preset=preset, use_sigma_terms=False)
    opt = torch.optim.Adam([mu], lr=lr)
    rows = []
    for step in range(steps + 1):
        loss = loss_fn(mu, sigma)
        if step % every == 0:
            rows.append(_row(step, float(loss.detach()), mu))
        if step < steps:
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return rows


def run_demo(
    latent_dim: int = 128, batch: int = 256, seed: int = 0, *, out: Callable[[str], None] = print
) -> list[DemoRow]:
    """Print the demonstration; returns the compression trajectory."""
    n = latent_dim
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, n, generator=g, dtype=torch.float64)
    r, cos = hyperspherical_cosines(z)
    out(f"Gaussian latents, n = {n}, batch = {batch}:")
    out(f"  radius mean {float(r.mean()):.3f} (sqrt(n) = {sphere_radius(n):.3f}), std {float(r.std()):.3f}")
    for k in sorted({1, n // 2, n - 1}):
        rms = float(cos[:, k - 1].square().mean().sqrt())
        out(f"  RMS cos phi_{k:<4d} {rms:.3f}   theory 1/sqrt(n-k+1) = {1 / math.sqrt(n - k + 1):.3f}")
    on_sphere = project_to_sphere(z, sphere_radius(n))
    out(f"  projected to the sphere of radius sqrt(n): |z| = {float(on_sphere.norm(dim=1).mean()):.3f}")
    out("")
    out("Minimising the compressed loss (preset 'full': every angle toward the pole) over the latents:")
    out(f"  {'step':>5} {'loss':>10} {'mean cos phi':>13} {'replica angle':>14} {'|mu|':>8}")
    rows = compress_latents(n, batch, seed=seed)
    for row in rows:
        out(f"  {row.step:5d} {row.loss:10.4f} {row.mean_cos:13.3f} {row.replica_angle:14.3f} {row.radius:8.3f}")
    out("")
    out("The latents started spread over the sphere (replica angle ~ pi/2) and ended in a small")
    out("cap around the pole: that is the volume the compressed VAE's decoder has to cover.")
    return rows
