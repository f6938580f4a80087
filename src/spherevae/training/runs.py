"""The config-driven training path: a run described by a :class:`RunConfig`, and loading it.

:func:`train` is a :class:`~spherevae.training.trainer.Trainer` (the loop, its steps and
guarantees live there) that builds the model ``cfg.model`` describes
(:func:`build_model`) and loads the data set ``cfg.data`` names, where the caller does
not pass them. :func:`load_run` reads a finished run back. What is minimised lives in
:mod:`spherevae.training.objectives` (registry :data:`OBJECTIVES`).

Run directory: ``config.yaml`` (resolved config), ``metrics.jsonl`` (one JSON object
per epoch), ``checkpoints/last.pt``, ``model.safetensors`` (final weights + model spec),
``history.jsonl`` (one line per start or resume, with what a resume changed),
``data_fingerprint.json`` (checked at resume and evaluate) and, while a process trains
in it, ``.lock`` (see :mod:`spherevae.io.files` and docs/design.md, "Robustness").
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spherevae._utils.validation import check_choice
from spherevae.io.checkpoint import load_checkpoint, load_state
from spherevae.training.config import RunConfig, load_config
from spherevae.models.vae import VAE
from spherevae.models.adapter import VAEModel
from spherevae.models.spec import model_from_spec
from spherevae.training.objectives import (
    OBJECTIVES,
    AuthorsObjective,
    CompressedObjective,
    StandardObjective,
    StepOutput,
)
from spherevae.io.errors import CheckpointError
from spherevae.io.layout import RunLayout
from spherevae.training.trainer import (
    WEIGHTS_FILE,
    Trainer,
    TrainingDiverged,
    limit_split,
    resolve_device,
)
from spherevae.io.weights import load_weights

__all__ = [
    "OBJECTIVES",
    "WEIGHTS_FILE",
    "AuthorsObjective",
    "CompressedObjective",
    "StandardObjective",
    "StepOutput",
    "Trainer",
    "TrainingDiverged",
    "build_model",
    "load_run",
    "train",
]

_resolve_device = resolve_device  # the older private name (evaluation uses it)


# --- model and data from the config ---------------------------------------------------


def build_model(cfg: RunConfig, image_shape: tuple[int, ...]) -> VAE:
    """The VAE for ``cfg.model`` on images of ``image_shape``, initialised from ``train.seed``."""
    from spherevae.models.config import MODEL_PRESETS, ModelConfig

    check_choice(cfg.model.preset, "model.preset", MODEL_PRESETS)
    kwargs = dict(MODEL_PRESETS[cfg.model.preset])
    kwargs["image_shape"] = tuple(image_shape)
    for name in ("latent_dim", "channels", "blocks_per_stage"):
        if getattr(cfg.model, name) is not None:
            kwargs[name] = getattr(cfg.model, name)
    sphere = cfg.model.project_to_sphere
    kwargs["project_to_sphere"] = (
        OBJECTIVES[cfg.objective.name].default_project_to_sphere if sphere is None else sphere
    )
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    for key, value in cfg.model.extra.items():
        if key not in known:
            raise ValueError(
                f"model.extra.{key} is not a ModelConfig field; known: {sorted(known)}"
            )
        kwargs[key] = tuple(value) if isinstance(value, list) else value
    model_cfg = ModelConfig(**kwargs)
    # Parameter init draws from the global RNG inside torch.nn; fork it so training
    # is reproducible from train.seed and the caller's RNG state is left untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)
        return VAE(model_cfg)


def _load_split(cfg: RunConfig, split: str) -> Any:
    """``split`` of the data set ``cfg.data`` names, limited to ``max_train``/``max_test``."""
    return limit_split(cfg, split, _load_full_split(cfg, split))


def _load_full_split(cfg: RunConfig, split: str) -> Any:
    from spherevae.data import load_dataset

    return load_dataset(
        cfg.data.name, split, root=cfg.data.root, download=cfg.data.download, **cfg.data.options
    )


class _ConfigTrainer(Trainer):
    """A :class:`Trainer` that builds what the caller did not pass from the config: the
    data set ``cfg.data`` names and the VAE ``cfg.model`` describes. Both are made inside
    :meth:`Trainer.fit`, after the run directory is locked and a resume's config checked."""

    def load_data(self) -> tuple[Any, Any]:
        if any(d is None for d in self._data):
            return _load_full_split(self.cfg, "train"), _load_full_split(self.cfg, "test")
        return super().load_data()

    def make_model(self, sample: torch.Tensor) -> VAEModel:
        if self._model is None:
            return build_model(self.cfg, tuple(sample.shape[1:]))
        return super().make_model(sample)


# --- train and load -------------------------------------------------------------------


def train(
    cfg: RunConfig,
    *,
    resume: bool = False,
    model: nn.Module | None = None,
    data: tuple[Any, Any] | None = None,
) -> Path:
    """Train the run described by ``cfg``; return its directory (see :meth:`Trainer.fit`).

    ``resume=True`` continues from ``<run_dir>/checkpoints/last.pt`` and gives the same
    weights as a run that was never stopped; a resume may change only
    :data:`spherevae.training.resume.RESUMABLE_KEYS`. ``model`` (any module with
    ``encode``/``decode``) and ``data`` (``(train, test)``: tensors, ``Dataset``s,
    ``DataLoader``s or data sets with ``images``/``labels``) replace what ``cfg.model``
    and ``cfg.data`` would build. The final weights go to ``model.safetensors``.
    """
    train_data, test_data = data if data is not None else (None, None)
    return _ConfigTrainer(cfg, model, train_data, test_data).fit(resume=resume)


def load_run(
    run_dir: str | Path, *, device: str | torch.device = "cpu", model: nn.Module | None = None
) -> tuple[RunConfig, VAEModel]:
    """The config and trained model (eval mode) of a run.

    Weights come from ``model.safetensors``; runs from before it fall back to ``model.pt``
    and then to the last checkpoint (both read with ``weights_only=True``). ``model``: an
    instance of the architecture, needed only for a user model whose class was not
    recorded (see :func:`spherevae.models.spec.model_from_spec`).
    """
    run_dir = Path(run_dir)
    layout = RunLayout(run_dir)
    cfg = load_config(layout.config)
    path = layout.weights
    if path.is_file():
        state, spec = load_weights(path, device=device)
    else:
        path = layout.legacy_weights
        if not path.is_file():
            path = layout.checkpoint
        ckpt = load_checkpoint(path, map_location=device, required=("model",))
        state = ckpt["model"]
        # Checkpoints written before model specs hold the VAE's config dict only.
        spec = ckpt.get("model_spec") or {"kind": "vae", "model_config": ckpt.get("model_config")}
        if spec.get("model_config", {}) is None:
            raise CheckpointError(f"checkpoint {path} lacks both model_spec and model_config")
    try:
        net = model_from_spec(spec, model)
    except TypeError as exc:
        raise CheckpointError(
            f"{run_dir}: its model description does not fit this version of spherevae ({exc})"
        ) from None
    load_state(net, state, path)
    return cfg, net.to(device).eval()
