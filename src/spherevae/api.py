"""The Python API: train any encode/decode model, load any run, sample from it.

::

    import spherevae
    run = spherevae.fit(model, train=x_train, test=x_test, objective="compressed",
                        epochs=2, batch_size=64, out_dir="runs/mine", seed=0)
    run = spherevae.load("runs/mine")          # any run dir, CLI-made or fit-made
    mu, logvar = run.encode(x)                 # (B, n) each
    x_hat = run.reconstruct(x)
    x_new = run.sample(16, sampler="vmf")      # fitted once on the test latents, saved, reused

``model`` is any ``nn.Module`` with ``encode(x) -> (mu, logvar)`` and ``decode(z) ->
x_hat`` (wrapped in :class:`~spherevae.models.adapter.ModelAdapter`), or a spherevae
:class:`~spherevae.models.vae.VAE`. Data: tensors or arrays ``(N, ...)`` (uint8 images are
scaled to [0, 1], floats used as they are), a ``Dataset`` or a ``DataLoader`` (both read
once into memory; items may be ``x`` or ``(x, label)``).

Everything a run needs to be loaded again lives in its directory, without pickle:
``config.yaml``, ``model.safetensors`` (weights + how to rebuild the model),
``latents.safetensors`` (the test latents the samplers are fitted to) and
``samplers/<name>.safetensors`` (each fitted sampler).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from spherevae._utils.memory import check_fits_in_memory
from spherevae.data.tensors import as_tensor_data, check_same_scale
from spherevae.distributions.samplers import load_sampler, save_sampler
from spherevae.io.layout import RunLayout
from spherevae.io.weights import stale_reason
from spherevae.models.adapter import as_vae_model

if TYPE_CHECKING:
    from spherevae.models.adapter import VAEModel

__all__ = [
    "Run",
    "fit",
    "load",
]


def _read_latents(path: Path) -> tuple[torch.Tensor, Any]:
    """``(z, made_from)`` of ``latents.safetensors``; a damaged file is re-encoded."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            z = f.get_tensor("z")
        return z, json.loads(meta.get("made_from", "null"))
    except (SafetensorError, OSError, ValueError, KeyError):
        return torch.empty(0), None  # made_from None: stale, encoded again


def fit(
    model: nn.Module,
    *,
    train: Any,
    test: Any,
    objective: str = "compressed",
    epochs: int = 10,
    batch_size: int = 128,
    out_dir: str | Path = "runs/fit",
    seed: int = 0,
    beta: float = 1.0,
    lr: float = 1e-3,
    device: str = "auto",
    schedule: str | None = None,
    project_to_sphere: bool | None = None,
    model_kwargs: dict[str, Any] | None = None,
    overrides: list[str] | None = None,
    resume: bool = False,
    callbacks: Sequence[Any] = (),
    loggers: Sequence[Any] = (),
) -> Run:
    """Train ``model`` with ``objective`` and return the :class:`Run` in ``out_dir``.

    Args:
        model: a :class:`~spherevae.models.vae.VAE`, or any module with ``encode``/``decode``.
        train, test: data (see the module docstring); ``test`` gives the per-epoch test
            metrics and the latents the samplers are fitted to.
        objective: a name in :data:`spherevae.training.objectives.OBJECTIVES`.
        out_dir: the run directory (its parent must exist or be creatable).
        schedule: a name in :data:`spherevae.training.schedules.SCHEDULES`; ``None``: the
            objective's ``default_schedule``.
        project_to_sphere: ``None``: the objective's default (on for compressed/authors).
        model_kwargs: JSON keyword arguments that rebuild ``model`` from its class, so that
            :func:`load` needs no ``model=`` (default: the class is called with none).
        overrides: further ``key.sub=value`` config overrides (e.g. ``["train.amp=bf16"]``).
        resume: continue the run in ``out_dir`` (same weights as an uninterrupted run).
        callbacks: objects with ``on_epoch_end``/``on_checkpoint``/``on_fit_end`` methods
            (:mod:`spherevae.training.callbacks`).
        loggers: logger instances (``log_hyperparams``, ``log_metrics``, ``log_artifact``,
            ``finalize``), beside the names a ``train.loggers=[...]`` override picks.

    Returns:
        The :class:`Run` (weights loaded, eval mode), its test latents stored for the samplers.
    """
    from spherevae.training.config import (
        RunConfig,
        apply_overrides,
        config_from_dict,
        config_to_dict,
    )
    from spherevae.training.objectives import objective_class
    from spherevae.training.trainer import Trainer

    declared = objective_class(objective, "objective")
    train_data, test_data = as_tensor_data(train, "train"), as_tensor_data(test, "test")
    check_same_scale(train_data, test_data)
    if train_data.image_shape != test_data.image_shape:
        raise ValueError(
            f"train and test items differ in shape: {train_data.image_shape} vs {test_data.image_shape}"
        )
    out = Path(out_dir)
    sphere = declared.default_project_to_sphere if project_to_sphere is None else project_to_sphere
    model = as_vae_model(model, train_data.images[:2], project_to_sphere=sphere, model_kwargs=model_kwargs)
    sphere = model.radius is not None  # a spherevae model's own setting is what trains
    base = config_to_dict(RunConfig())
    base["data"].update(name=train_data.name, download=False)
    base["model"].update(latent_dim=model.latent_dim, project_to_sphere=sphere)
    base["objective"].update(name=objective, beta=beta)
    base["schedule"] = {"name": schedule or declared.default_schedule, "params": {}}
    base["optim"].update(lr=lr)
    base["train"].update(
        epochs=epochs, batch_size=batch_size, seed=seed, device=device,
        out_dir=str(out.parent), run_name=out.name, progress=False,
    )
    cfg = config_from_dict(apply_overrides(base, list(overrides or [])))
    run_dir = Trainer(cfg, model, train_data, test_data, callbacks=callbacks, loggers=loggers).fit(resume=resume)
    run = load(run_dir, model=model)
    run._store_latents(test_data.images)
    return run


def load(run_dir: str | Path, *, model: nn.Module | None = None,
         allow_classes: Iterable[str | type] = (), device: str = "cpu") -> Run:
    """The trained run in ``run_dir`` (made by the CLI, a sweep or :func:`fit`).

    Loading never runs code a run directory names: a spherevae VAE is rebuilt from its
    recorded config alone; a run of a user model needs ``model=`` (an instance of the
    architecture) or its class on ``allow_classes`` (the class itself, or its import path
    ``"module:Qualname"`` as recorded in ``model.safetensors``; an error names it). Every
    file is read as untrusted input (:mod:`spherevae.io.safe_read`) and ``config.yaml``
    must be the config the weights were trained with.
    """
    from spherevae.training.runs import load_run, weights_identity

    run_dir = Path(run_dir)
    if not RunLayout(run_dir).config.is_file():
        raise FileNotFoundError(f"{str(run_dir)!r} is not a run directory (no config.yaml in it)")
    cfg, net = load_run(run_dir, device=device, model=model, allow_classes=allow_classes)
    identity = weights_identity(run_dir)
    return Run(run_dir, cfg, net, torch.device(device),
               {"sha256": identity["sha256"], "epoch": identity["epoch"]})


@dataclass
class Run:
    """A trained run: its directory, resolved config and model (eval mode).

    Attributes:
        run_dir: the run directory. config: its resolved :class:`~spherevae.training.RunConfig`.
        model: the trained model (a :class:`~spherevae.models.VAE` or a wrapped user model).
        device: where the model lives. weights: the identity of its weights
        (``{"sha256", "epoch"}``): what ``eval/`` and ``samplers/`` must be made from.

    Example (a packaged VAE on random 8x8 images, one epoch, in a temporary directory)::

        >>> import tempfile, torch, spherevae
        >>> from spherevae.models import VAE, ModelConfig
        >>> model = VAE(ModelConfig.from_preset("tiny", image_shape=(1, 8, 8), latent_dim=4,
        ...                                     project_to_sphere=True))
        >>> images = torch.randint(0, 256, (96, 1, 8, 8), dtype=torch.uint8,
        ...                        generator=torch.Generator().manual_seed(0))
        >>> out = f"{tempfile.mkdtemp()}/run"
        >>> run = spherevae.fit(model, train=images[:64], test=images[64:], objective="compressed",
        ...                     epochs=1, batch_size=32, out_dir=out, device="cpu")
        >>> run = spherevae.load(out)             # any run directory, CLI- or fit-made
        >>> mu, logvar = run.encode(images[:5])   # (5, n) each
        >>> run.latent_dim, tuple(mu.shape), tuple(run.reconstruct(images[:5]).shape)
        (4, (5, 4), (5, 1, 8, 8))
        >>> x_new = run.sample(3, sampler="vmf")  # fitted once to the test latents, saved, reused
        >>> tuple(x_new.shape), len(run.history)
        ((3, 1, 8, 8), 1)
    """

    run_dir: Path
    config: Any
    model: VAEModel
    device: torch.device
    weights: dict[str, Any] = field(default_factory=dict)

    @property
    def latent_dim(self) -> int:
        return int(self.model.latent_dim)

    @property
    def metrics(self) -> dict[str, Any]:
        """``eval/metrics.json`` (written by ``spherevae evaluate``); ``{}`` before it. An
        evaluation of other weights (made before a resume) comes back with a ``"stale"``
        entry saying so, and a warning."""
        from spherevae.io.safe_read import read_run_json

        path = RunLayout(self.run_dir).eval_metrics
        if not path.exists():
            return {}
        metrics = read_run_json(self.run_dir, path, hint="run `spherevae evaluate` again")
        stale = stale_reason(metrics.get("weights"), self.weights)
        if stale:
            warnings.warn(f"{path} is stale: {stale}; run `spherevae evaluate` again", stacklevel=2)
            metrics["stale"] = stale
        return metrics

    @property
    def history(self) -> list[dict[str, Any]]:
        """The per-epoch records of ``metrics.jsonl``."""
        from spherevae.io.files import read_jsonl
        from spherevae.io.safe_read import check_run_file

        path = RunLayout(self.run_dir).metrics
        if not path.exists():
            return []
        check_run_file(self.run_dir, path)
        return read_jsonl(path)

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(x)
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        return x.to(self.device)

    @torch.no_grad()
    def encode(self, x: torch.Tensor, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)``, each ``(B, n)`` on the CPU; ``x`` uint8 images or floats."""
        mus, logvars = [], []
        for chunk in torch.as_tensor(x).split(batch_size):
            mu, logvar = self.model.encode(self._inputs(chunk))
            mus.append(mu.float().cpu())
            logvars.append(logvar.float().cpu())
        return torch.cat(mus), torch.cat(logvars)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        """Decoded posterior means (projected to the sphere when the model projects)."""
        parts = [self.model(self._inputs(c), sample=False).x_hat.float().cpu()
                 for c in torch.as_tensor(x).split(batch_size)]
        return torch.cat(parts)

    def test_latents(self) -> torch.Tensor:
        """The test set's latents the samplers are fitted to, ``(N, n)`` (``mu``, projected
        to the sphere when the model projects), from ``latents.safetensors``; encoded from
        the config's test split (and stored) on first use for a CLI-made run."""
        from spherevae.io.safe_read import check_run_file

        path = RunLayout(self.run_dir).latents
        if path.exists() or path.is_symlink():
            check_run_file(self.run_dir, path)
            z, made_from = _read_latents(path)
            if not stale_reason(made_from, self.weights):
                return z
        from spherevae.training.runs import load_split

        self._store_latents(load_split(self.config, "test").images)
        return _read_latents(path)[0]

    def _store_latents(self, images: torch.Tensor) -> None:
        from safetensors.torch import save

        from spherevae.io.files import atomic_write_bytes
        from spherevae.models.inference import sampler_latents

        mu, logvar = self.encode(images)
        z = sampler_latents(self.model, mu).clone()  # safetensors refuses z sharing mu's memory
        blob = save({"z": z.contiguous(), "mu": mu.contiguous(), "logvar": logvar.contiguous()},
                    metadata={"made_from": json.dumps(self.weights)})
        atomic_write_bytes(RunLayout(self.run_dir).latents, blob)

    def sampler(self, name: str) -> Any:
        """The fitted sampler ``name`` (a key of :data:`spherevae.distributions.samplers.SAMPLERS`),
        fitted on :meth:`test_latents` with the run's seed and saved under ``samplers/``
        on first use, loaded from there afterwards."""
        from spherevae._utils.validation import check_choice
        from spherevae.distributions.samplers import SAMPLERS, fit_sampler, sampler_made_from
        from spherevae.io.safe_read import check_run_file

        check_choice(name, "sampler", SAMPLERS)  # before a file name is made from it
        path = RunLayout(self.run_dir).sampler(name)
        if path.exists() or path.is_symlink():
            check_run_file(self.run_dir, path)
            stale = stale_reason(sampler_made_from(path), self.weights)
            if not stale:
                return load_sampler(path)
            warnings.warn(f"{path} was fitted for other weights ({stale}): fitting it again", stacklevel=2)
        radius = getattr(self.model, "radius", None)
        fitted = fit_sampler(name, self.test_latents(), radius=radius, seed=self.config.train.seed)
        save_sampler(fitted, path, made_from=self.weights)
        # Sample from what was saved, so the first call and every later one draw the same.
        return load_sampler(path)

    @torch.no_grad()
    def sample(self, num: int, sampler: str | None = None, *, seed: int = 0) -> torch.Tensor:
        """``num`` decoded samples ``(num, ...)`` from ``sampler`` (default: the objective's
        headline sampler, e.g. ``vmf`` for compressed runs, ``prior`` for standard ones).
        ``num``: a non-negative int, checked before any sampler is fitted."""
        from spherevae.distributions.directions import check_sample_count
        from spherevae.models.inference import decode_samples
        from spherevae.training.objectives import OBJECTIVES

        num = check_sample_count(num, "num")
        one = self.model.decode(torch.randn(1, self.latent_dim, device=self.device))
        per_image = 4 * math.prod(one.shape[1:])  # float32 output
        check_fits_in_memory(num * per_image, f"{num} decoded samples", per_image, "num")
        name = sampler or OBJECTIVES[self.config.objective.name].default_samplers[0]
        z = self.sampler(name).sample(num, generator=torch.Generator().manual_seed(seed))
        return decode_samples(self.model, z.float()).float().cpu()


