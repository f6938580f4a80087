"""Any module with ``encode(x) -> (mu, logvar)`` and ``decode(z) -> x_hat`` as a model
spherevae trains: :class:`ModelAdapter` adds the sampling (and the projection to the
sphere of eq 8) a spherevae VAE has; :func:`as_vae_model` wraps what needs wrapping.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import torch
from torch import nn

from spherevae.geometry import coordinates
from spherevae.models.config import _check_int
from spherevae.models.source import source_of
from spherevae.models.vae import VAE, VAEOutput

__all__ = [
    "ModelAdapter",
    "VAEModel",
    "as_vae_model",
    "check_vae_like",
]


def check_vae_like(model: Any) -> None:
    """Raise ``TypeError`` unless ``model`` has ``encode`` and ``decode`` methods."""
    for method in ("encode", "decode"):
        if not callable(getattr(model, method, None)):
            raise TypeError(
                f"model must have an {method}() method (encode(x) -> (mu, logvar), "
                f"decode(z) -> x_hat); {type(model).__name__} has none"
            )


class ModelAdapter(nn.Module):
    """Any ``nn.Module`` with ``encode(x) -> (mu, logvar)`` and ``decode(z) -> x_hat`` as a
    spherevae VAE: the reparameterisation, the optional sphere projection (eq 8) and the
    :class:`VAEOutput` the objectives and the trainer expect.

    ``x`` may have any shape ``(B, ...)`` (images or vectors); ``mu``, ``logvar`` must be
    ``(B, n)``. The wrapped model's parameters are this module's (prefix ``inner.``).

    Args:
        model: the user's model.
        latent_dim: ``n``.
        project_to_sphere: project sampled ``z`` (and ``mu`` when not sampling) to radius
            ``sqrt(n)``.
        source: how to rebuild ``model`` from code, recorded in the saved weights:
            ``{"class": "package.module:Class", "kwargs": {...}}`` (JSON values), or ``None``.
    """

    # The user's module, duck-typed: check_vae_like saw its encode/decode methods, and
    # encode's output is checked on every call; no static type says more.
    inner: Any

    def __init__(
        self,
        model: nn.Module,
        latent_dim: int,
        *,
        project_to_sphere: bool = False,
        source: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        check_vae_like(model)
        _check_int(latent_dim, "latent_dim", minimum=2)
        self.inner = model
        self._latent_dim = latent_dim
        self._project = bool(project_to_sphere)
        self.source = source

    @property
    def latent_dim(self) -> int:
        return self._latent_dim

    @property
    def radius(self) -> float | None:
        """``sqrt(n)`` when latents are projected onto a sphere (eq 8), else ``None``."""
        return coordinates.sphere_radius(self._latent_dim) if self._project else None

    @property
    def decoder(self) -> nn.Module | None:
        """The wrapped model's ``decoder`` submodule, if it has one (the authors' two-step
        update needs it); ``None`` otherwise."""
        inner = self.inner
        return inner.decoder if isinstance(getattr(inner, "decoder", None), nn.Module) else None

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.inner.encode(x)
        if not (isinstance(out, tuple | list) and len(out) == 2):
            raise TypeError(
                f"{type(self.inner).__name__}.encode must return (mu, logvar), got {type(out).__name__}"
            )
        mu, logvar = out
        n = self._latent_dim
        if mu.dim() != 2 or mu.shape[1] != n or logvar.shape != mu.shape:
            raise ValueError(
                f"{type(self.inner).__name__}.encode must return mu and logvar of shape "
                f"(B, {n}), got {tuple(mu.shape)} and {tuple(logvar.shape)}"
            )
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        x_hat: torch.Tensor = self.inner.decode(z)
        return x_hat

    def reparameterize(
        self, mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``z = mu + sigma * eps``, projected to radius ``sqrt(n)`` when projecting."""
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
        return self._to_sphere(mu + torch.exp(0.5 * logvar) * eps)

    def forward(
        self, x: torch.Tensor, generator: torch.Generator | None = None, *, sample: bool = True
    ) -> VAEOutput:
        """As :meth:`VAE.forward`."""
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar, generator) if sample else self._to_sphere(mu)
        return VAEOutput(x_hat=self.inner.decode(z), mu=mu, logvar=logvar, z=z)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)[0]

    def _to_sphere(self, z: torch.Tensor) -> torch.Tensor:
        if self.radius is None:
            return z
        return coordinates.project_to_sphere(z, self.radius, validate=False)


VAEModel: TypeAlias = VAE | ModelAdapter
"""The models spherevae trains, evaluates and saves: its own :class:`VAE`, or any other
model wrapped in a :class:`ModelAdapter` (:func:`spherevae.api.as_vae_model` makes one)."""


@torch.no_grad()
def _latent_dim_of(model: Any, sample: torch.Tensor) -> int:
    """``n`` of a user's model (one that passed ``check_vae_like``), read off
    ``encode(sample)``; ``encode`` must return ``(mu, logvar)`` of shape ``(B, n)`` and
    ``decode(mu)`` images of the sample's shape, checked here once so that a wrong return
    is one clear error now, not a confusing one deep inside training."""
    name = type(model).__name__
    was = model.training
    model.eval()
    param = next(model.parameters(), None)
    x = sample.float() / 255.0 if sample.dtype == torch.uint8 else sample.float()
    try:
        out = model.encode(x.to(param.device) if param is not None else x)
        # A bare tensor would unpack by rows: ask for the pair explicitly.
        if not (isinstance(out, tuple | list) and len(out) == 2):
            raise TypeError(f"{name}.encode must return (mu, logvar), two tensors of shape (B, n); "
                            f"got {type(out).__name__}{_shape(out)}")
        mu, logvar = out
        if not isinstance(mu, torch.Tensor) or mu.dim() != 2 or getattr(logvar, "shape", None) != mu.shape:
            raise ValueError(f"{name}.encode must return mu and logvar of shape (B, n), got "
                             f"{_shape(mu)} and {_shape(logvar)}")
        x_hat = model.decode(mu)
    finally:
        model.train(was)
    if not isinstance(x_hat, torch.Tensor) or tuple(x_hat.shape) != tuple(sample.shape):
        raise ValueError(f"{name}.decode must return images of the input's shape "
                         f"{tuple(sample.shape)}, got {type(x_hat).__name__}{_shape(x_hat)}")
    return int(mu.shape[1])


def _shape(value: Any) -> str:
    return f" of shape {tuple(value.shape)}" if hasattr(value, "shape") else ""


def as_vae_model(
    model: nn.Module,
    sample: torch.Tensor,
    *,
    project_to_sphere: bool,
    model_kwargs: dict[str, Any] | None = None,
) -> VAEModel:
    """``model`` as the trainer needs it: a spherevae :class:`~spherevae.models.vae.VAE` or
    :class:`~spherevae.models.adapter.ModelAdapter` as it is (with its own sphere setting), any
    other module with ``encode``/``decode`` wrapped in a ``ModelAdapter`` whose ``n`` is
    read off ``encode(sample)`` (``sample``: a few items ``(k, ...)``, uint8 or float) and
    which records the model's import path (+ JSON ``model_kwargs``) when it has one."""
    from spherevae.models.adapter import ModelAdapter, check_vae_like
    from spherevae.models.vae import VAE

    meta = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if meta:  # its loss would be a meta tensor: no value to log, no step to take
        raise ValueError(
            f"{type(model).__name__} has tensors on the meta device (e.g. {meta[0]!r}), which hold "
            "no values: build it on a real device, or call model.to_empty(device='cpu') and "
            "initialise it, before training"
        )
    if isinstance(model, VAE | ModelAdapter):
        return model
    check_vae_like(model)
    n = _latent_dim_of(model, sample)
    return ModelAdapter(model, n, project_to_sphere=project_to_sphere, source=source_of(model, model_kwargs))


