"""Running a trained model over data without gradients: encode a data set, decode latents
in batches (eval mode, restored after), and the latents samplers are fitted to.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from spherevae._utils.validation import check_latents

__all__ = [
    "decode_samples",
    "encode_dataset",
    "model_method",
    "sampler_latents",
]


def decode_samples(model: nn.Module, z: torch.Tensor, batch_size: int = 500, *,
                   out_device: torch.device | str | None = None, validate: bool = True) -> torch.Tensor:
    """Decode latents ``z`` ``(N, n)`` with ``model.decode`` in batches, without gradients.

    The model is put in eval mode for the call (batch-norm and dropout layers must not
    use batch statistics of random latents) and restored afterwards. ``z`` is moved to
    the model's device; the images come back on ``out_device`` (default: the model's),
    each batch moved as it is decoded (so a GPU holds one batch of images at a time).
    ``validate=False`` decodes non-finite latents too (evaluation reports their FID as
    NaN rather than stopping).
    """
    decode = getattr(model, "decode", None)
    if not callable(decode):
        raise TypeError(f"model must have a decode(z) method, got {type(model).__name__}")
    check_latents(z, "z", min_dim=1, ndim=2, validate=validate)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    param = next(model.parameters(), None)
    device = param.device if param is not None else z.device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            target = device if out_device is None else torch.device(out_device)
            parts = [decode(chunk.to(device)).to(target) for chunk in z.split(batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(parts, 0)


def model_method(model: nn.Module, name: str) -> Callable[..., Any]:
    """``model.<name>``: the stages take any module with the methods they call
    (``encode``, ``decode``, ``reparameterize``), so each is looked up and checked here."""
    method = getattr(model, name, None)
    if not callable(method):
        raise TypeError(f"model must have a {name}() method, got {type(model).__name__}")
    return method


@torch.no_grad()
def encode_dataset(
    model: nn.Module, images: torch.Tensor, *, batch_size: int = 500, device: str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder means and log-variances of uint8 images ``(N, C, H, W)``: ``(N, n)`` each."""
    encode = model_method(model, "encode")
    mus, logvars = [], []
    for start in range(0, images.shape[0], batch_size):
        x = images[start : start + batch_size].to(device=device, dtype=torch.float32) / 255.0
        mu, logvar = encode(x)
        mus.append(mu.float().cpu())
        logvars.append(logvar.float().cpu())
    return torch.cat(mus), torch.cat(logvars)


def sampler_latents(model: nn.Module, mu: torch.Tensor) -> torch.Tensor:
    """The latents samplers are fitted to: ``mu`` ``(N, n)``, projected to the model's
    sphere when it has one (``model.radius``); ``mu`` itself otherwise."""
    radius = getattr(model, "radius", None)
    if radius is None:
        return mu
    from spherevae.geometry.coordinates import project_to_sphere

    return project_to_sphere(mu, radius, validate=False)


