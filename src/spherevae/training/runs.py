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
import re
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spherevae._utils.validation import check_choice
from spherevae.io.checkpoint import load_checkpoint, load_state
from spherevae.io.errors import CheckpointError, UserError
from spherevae.io.layout import RunLayout
from spherevae.io.safe_read import check_run_file
from spherevae.io.weights import file_sha256, load_weights, read_provenance
from spherevae.models.adapter import VAEModel
from spherevae.models.spec import model_from_spec
from spherevae.models.vae import VAE
from spherevae.training.config import ModelSection, RunConfig, load_config
from spherevae.training.objectives import build_objective, objective_class
from spherevae.training.provenance import check_config
from spherevae.training.schedules import make_schedule
from spherevae.training.trainer import Trainer, limit_split

__all__ = [
    "build_model",
    "check_buildable",
    "load_run",
    "load_split",
    "train",
    "weights_identity",
]

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
        objective_class(cfg.objective.name).default_project_to_sphere if sphere is None else sphere
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


def load_split(cfg: RunConfig, split: str) -> Any:
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
    run_dir: str | Path, *, device: str | torch.device = "cpu", model: nn.Module | None = None,
    allow_classes: Iterable[str | type] = (),
) -> tuple[RunConfig, VAEModel]:
    """The config and trained model (eval mode) of a run.

    Weights come from ``model.safetensors``; runs from before it fall back to ``model.pt``
    and then to the last checkpoint (both read with ``weights_only=True``). A run
    directory is untrusted input: every file is read through
    :mod:`spherevae.io.safe_read`, ``config.yaml`` must be the config the weights carry
    (:func:`spherevae.training.provenance.check_config`), and no code it names is run.
    ``model``: an instance of the architecture, for a user model; ``allow_classes``:
    user model classes (or ``"module:Qualname"`` paths) the caller trusts to be rebuilt
    from the recorded class (see :func:`spherevae.models.spec.model_from_spec`).
    """
    run_dir = Path(run_dir)
    layout = RunLayout(run_dir)
    cfg = load_config(layout.config, run_root=run_dir)
    path = _weights_path(layout)
    if path == layout.weights:
        state, spec = load_weights(path, device=device)
        check_config(read_provenance(path), cfg, layout.config, path)
    else:
        ckpt = load_checkpoint(path, map_location=device, required=("model",))
        state = ckpt["model"]
        # Checkpoints written before model specs hold the VAE's config dict only.
        spec = ckpt.get("model_spec") or {"kind": "vae", "model_config": ckpt.get("model_config")}
        if spec.get("model_config", {}) is None:
            raise CheckpointError(f"checkpoint {path} lacks both model_spec and model_config")
        check_config(ckpt.get("provenance"), cfg, layout.config, path)
    try:
        net = model_from_spec(spec, model, allow_classes=allow_classes)
    except TypeError as exc:
        raise CheckpointError(
            f"{run_dir}: its model description does not fit this version of spherevae ({exc})"
        ) from None
    load_state(net, state, path)
    return cfg, net.to(device).eval()


def _weights_path(layout: RunLayout) -> Path:
    """The run's weights file (``model.safetensors``, else the legacy ones), checked to be a
    regular file inside the run (:func:`spherevae.io.safe_read.check_run_file`)."""
    for path in (layout.weights, layout.legacy_weights, layout.checkpoint):
        if path.exists() or path.is_symlink():
            check_run_file(layout.root, path)
            return path
    raise FileNotFoundError(f"{layout.root} holds no weights (no {layout.weights.name} and no "
                            f"{layout.checkpoint}): train it first")


def weights_identity(run_dir: str | Path) -> dict[str, Any]:
    """What ``eval/`` and ``samplers/`` record as the weights they were made from:
    ``{"sha256": <of the weights file>, "epoch": <its last trained epoch, 0-based, or None>,
    "file": <its name>}``, plus ``"provenance"`` (what the weights carry, or ``None``)."""
    layout = RunLayout(Path(run_dir))
    path = _weights_path(layout)
    prov = read_provenance(path) if path == layout.weights else None
    return {"sha256": file_sha256(path), "epoch": (prov or {}).get("epoch"), "file": path.name,
            "provenance": prov}


def check_buildable(cfg: RunConfig) -> None:
    """Check what :func:`spherevae.training.runs.train` builds from ``cfg`` beyond :func:`~spherevae.training.config.validate`,
    with no data and no weights, naming the config field of any problem: ``data.name`` and
    ``data.options`` against the dataset registry, the schedule, the model (against the
    size of the dataset's images, where the dataset fixes it) and the objective (its
    ``objective.loss_overrides``). The model is built on the ``meta`` device: no memory,
    milliseconds. For runs whose data and model the config names (the CLI, sweeps); a
    Python caller that passes its own data (``fit``, ``Trainer``) needs no registered
    ``data.name``, so :func:`~spherevae.training.config.validate` does not ask for one.
    """
    from spherevae.data import DATASETS
    from spherevae.models.config import MODEL_PRESETS

    check_choice(cfg.data.name, "data.name", DATASETS)
    spec = DATASETS[cfg.data.name]
    for key in cfg.data.options:
        if key not in spec.options:
            allowed = f"the options {list(spec.options)}" if spec.options else "no options"
            raise UserError(f"data.options.{key}: dataset {cfg.data.name!r} takes {allowed}")
    make_schedule(cfg.schedule.name, cfg.schedule.params)
    check_choice(cfg.model.preset, "model.preset", MODEL_PRESETS)
    stages = len(cfg.model.channels or cfg.model.extra.get("channels")
                 or MODEL_PRESETS[cfg.model.preset]["channels"])
    # The real build warns (e.g. about a schedule); once is enough.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with torch.device("meta"):
                model = build_model(cfg, _image_shape(cfg.data.options, spec, stages))
        except (TypeError, ValueError) as exc:
            raise UserError(_model_field_names(str(exc))) from None
        # The loss computes its targets on the CPU, then moves them to the model's (meta) device.
        try:
            build_objective(cfg, model.latent_dim).to("meta")
        except (TypeError, ValueError) as exc:
            # The loss names a bad option by its keyword: name the config field instead.
            key = str(exc).split(" ", 1)[0]
            if key in cfg.objective.loss_overrides:
                raise UserError(f"objective.loss_overrides.{exc}") from None
            raise


def _image_shape(options: dict[str, Any], spec: Any, stages: int) -> tuple[int, ...]:
    """``(C, H, W)`` of the images the dataset ``spec`` will give with ``options``; where
    the files decide (a folder without ``image_size``), a size every stage count allows."""
    if isinstance(options.get("image_shape"), list | tuple):
        return tuple(options["image_shape"])
    channels = 1 if options.get("greyscale") else spec.image_shape[0]
    side = options.get("image_size")
    if isinstance(side, int) and not isinstance(side, bool):
        return channels, side, side
    if "image_size" in spec.options:  # inferred from the files when the run loads them
        return channels, 4 * 2**stages, 4 * 2**stages
    return tuple(spec.image_shape)


def _model_field_names(message: str) -> str:
    """``ModelConfig.<field>`` in ``message`` as the config field that sets it."""
    section = {f.name for f in dataclasses.fields(ModelSection)} - {"preset", "extra"}

    def name(match: re.Match[str]) -> str:
        field_name = match[1]
        if field_name == "image_shape":
            return "the image shape of data.name"
        return f"model.{'' if field_name in section else 'extra.'}{field_name}"

    return re.sub(r"ModelConfig\.(\w+)", name, message)


