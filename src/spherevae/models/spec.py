"""Model specs: the JSON in ``model.safetensors`` that rebuilds a model without pickle
(a spherevae VAE from its config; a wrapped user model from its recorded source class).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from torch import nn

from spherevae.io.errors import UserError
from spherevae.models.adapter import ModelAdapter, VAEModel
from spherevae.models.config import ModelConfig
from spherevae.models.source import class_path, import_model_class
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


def model_from_spec(spec: dict[str, Any], model: nn.Module | None = None, *,
                    allow_classes: Iterable[str | type] = ()) -> VAEModel:
    """The (untrained) model a :func:`model_spec` describes.

    A spherevae VAE is rebuilt from its config alone. For a wrapped user model, ``model``
    (an instance of the same architecture) is used if given; otherwise the recorded
    ``source`` class is used only if it is on ``allow_classes`` (classes, or import paths
    ``"module:Qualname"``): a run directory is untrusted input, and importing the module
    it names would run that module's code. A path on the list is imported; a class on it
    is used as it is (nothing imported).
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
        model = _allowed_class(spec.get("source"), allow_classes)(**(spec["source"].get("kwargs") or {}))
    if isinstance(model, ModelAdapter):
        model = model.inner
    return ModelAdapter(
        model, int(spec["latent_dim"]), project_to_sphere=bool(spec["project_to_sphere"]),
        source=spec.get("source"),
    )


def _allowed_class(source: Any, allow_classes: Iterable[str | type]) -> type:
    """The recorded class of a user model, if the caller allowed it (never imported otherwise)."""
    if not isinstance(source, dict) or not isinstance(source.get("class"), str):
        raise ValueError(
            "this run was trained on a user model whose class was not recorded: "
            "pass model=<an instance of it> to spherevae.load"
        )
    path = source["class"]
    for allowed in allow_classes:
        if isinstance(allowed, type) and class_path(allowed) == path:
            return allowed
        if allowed == path:
            return import_model_class(path)
    raise UserError(
        f"this run was trained on the user model class {path!r}; loading a run never imports "
        f"code it names: pass allow_classes=[{path!r}] (or model=<an instance>) to "
        "spherevae.load if you trust that class"
    )
