"""Model specs: the JSON in ``model.safetensors`` that rebuilds a model without pickle
(a spherevae VAE from its config; a wrapped user model from its recorded source class).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from spherevae.models.adapter import ModelAdapter, VAEModel
from spherevae.models.config import ModelConfig
from spherevae.models.source import import_model_class
from spherevae.models.vae import VAE

__all__ = [
    "model_from_spec",
    "model_spec",
]


def model_spec(model: nn.Module) -> dict[str, Any]:
    """JSON description that rebuilds ``model`` with :func:`model_from_spec` (no pickle)."""
    if isinstance(model, VAE):
        mc = dataclasses.asdict(model.config)
        return {
            "kind": "vae",
            "model_config": {k: list(v) if isinstance(v, tuple) else v for k, v in mc.items()},
        }
    if isinstance(model, ModelAdapter):
        return {
            "kind": "adapter",
            "latent_dim": model.latent_dim,
            "project_to_sphere": model.radius is not None,
            "source": model.source,
        }
    raise TypeError(f"no spec for {type(model).__name__}: wrap it in ModelAdapter")


def model_from_spec(spec: dict[str, Any], model: nn.Module | None = None) -> VAEModel:
    """The (untrained) model a :func:`model_spec` describes.

    For a wrapped user model, ``model`` (an instance of the same architecture) is used if
    given; otherwise the recorded ``source`` class is imported by name and called with its
    recorded keyword arguments. Importing the user's own module is the only code that
    runs: weights never carry code.
    """
    kind = spec.get("kind")
    if kind == "vae":
        mc: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in spec["model_config"].items()
        }
        return VAE(ModelConfig(**mc))
    if kind != "adapter":
        raise ValueError(f"unknown model spec kind {kind!r}; expected 'vae' or 'adapter'")
    if model is None:
        source = spec.get("source")
        if not source:
            raise ValueError(
                "this run was trained on a user model whose class was not recorded: "
                "pass model=<an instance of it> to spherevae.load"
            )
        model = import_model_class(source["class"])(**(source.get("kwargs") or {}))
    if isinstance(model, ModelAdapter):
        model = model.inner
    return ModelAdapter(
        model, int(spec["latent_dim"]), project_to_sphere=bool(spec["project_to_sphere"]),
        source=spec.get("source"),
    )


