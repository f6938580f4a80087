"""The :class:`Trainer`: trains any VAE-like module with an objective into a run directory.

A model is anything with ``encode(x) -> (mu, logvar)`` and ``decode(z) -> x_hat``
(wrapped in :class:`~spherevae.models.adapter.ModelAdapter`; a spherevae
:class:`~spherevae.models.vae.VAE` is used as it is). Data: a tensor or array ``(N, ...)``, a
``Dataset``, a ``DataLoader`` (read once into memory, see
:func:`spherevae.data.as_tensor_data`) or an ``ImageDataset``. :func:`spherevae.training.runs.train`
(the CLI, sweeps, :func:`spherevae.fit`) is a Trainer that builds both from the config.

:meth:`Trainer.fit` runs these steps, each a method, top to bottom:

1. open the run directory: create, lock (rank 0), apply a resume's config rules;
2. :meth:`~Trainer.setup`: device, data and loaders, model, objective (an ``nn.Module``
   moved to the device), the objective's optimisers and lr schedules
   (``objective.configure_optimizers``), latent-pressure schedule, AMP, noise generator
   (nothing written);
3. :meth:`~Trainer.start`: restore a checkpoint (:meth:`~Trainer.load_state_dict`) or
   start fresh; write ``config.yaml``, the data fingerprint, ``history.jsonl``; loggers;
4. per epoch: :meth:`~Trainer.train_epoch` (:meth:`~Trainer.train_step` per batch, host
   reads only at log points), :meth:`~Trainer.end_epoch` (test pass, the epoch record,
   objective hook, lr decay), :meth:`~Trainer.log` (metrics.jsonl, loggers, progress),
   the callbacks' ``on_epoch_end``, :meth:`~Trainer.checkpoint` (then ``on_checkpoint``);
   a callback that sets ``trainer.should_stop`` ends the run after that epoch's checkpoint;
5. :meth:`~Trainer.finish`: final weights (``model.safetensors``) and logger artifacts,
   then the callbacks' ``on_fit_end``.

Extending it needs no subclass: the objective says its optimisers, callbacks
(:mod:`spherevae.training.callbacks`) run at the hooks above, and logger *instances*
(anything with the :class:`~spherevae.training.loggers.RunLogger` methods) are accepted
beside the names in ``train.loggers``.

Conventions: no host-device sync inside :meth:`~Trainer.train_step` (terms are summed
on the device; the host reads them every ``train.log_every`` steps and at epoch ends);
the per-step scalars it reads are device tensors (the schedule's multiplier) or plain
attributes changed only between epochs (``objective.beta``, the learning rates), so a
later change can capture the step in a CUDA graph. Randomness is explicit (model init
from ``train.seed``, a ``torch.Generator`` for the noise, the data order from
``(seed, epoch)``) and all of it is in a checkpoint, so a resumed run ends bit-identical
to an uninterrupted one. A checkpoint is written only after an epoch whose losses were
all finite.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spherevae.data.fingerprint import check_fingerprint, data_fingerprint
from spherevae.io.checkpoint import load_checkpoint, load_state, save_checkpoint
from spherevae.io.errors import UserError
from spherevae.io.files import append_jsonl, atomic_write_json, clean_tmp_files
from spherevae.io.layout import RunLayout, make_run_dir
from spherevae.io.lock import RunDirLock
from spherevae.io.safe_read import check_run_file
from spherevae.io.weights import save_weights
from spherevae.models.adapter import VAEModel
from spherevae.models.spec import model_spec
from spherevae.training.callbacks import check_callback
from spherevae.training.config import (
    AMP_MODES,
    RunConfig,
    config_to_dict,
    load_config,
    save_config,
)
from spherevae.training.distributed import DistInfo, average_gradients, barrier, init_distributed
from spherevae.training.loggers import check_logger
from spherevae.training.objectives import TERMS, build_objective, objective_class
from spherevae.training.provenance import check_config, check_fingerprint_file, make_provenance
from spherevae.training.records import (
    EpochSums,
    divergence_message,
    epoch_line,
    mean_over_ranks,
    progress_bar,
    test_reconstruction,
    truncate_metrics,
)
from spherevae.training.resume import record_history, resume_config
from spherevae.training.schedules import Clock, make_schedule

__all__ = [
    "Trainer",
    "TrainingDiverged",
    "limit_split",
    "resolve_device",
]

_RESUME_ENTRIES = ("epoch", "model", "optimizers", "schedulers", "scaler", "objective", "rng")
_LOG = logging.getLogger("spherevae.train")


class TrainingDiverged(RuntimeError):
    """A loss term became NaN or inf; the message says where and which term."""


def resolve_device(name: str, what: str = "train.device") -> torch.device:
    """``auto`` | ``cpu`` | ``cuda[:i]`` | ``mps`` as a device; :class:`UserError` if absent."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"{what}={name!r} but CUDA is not available on this machine; use cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"{what}='mps' but MPS is not available on this machine; use cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"{what}={name!r} is not a device (cpu, cuda, cuda:<i>, mps)") from None
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"{what}={name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def limit_split(cfg: RunConfig, split: str, ds: Any) -> Any:
    """The first ``data.max_train`` / ``data.max_test`` items of ``ds`` (images/labels)."""
    limit = cfg.data.max_train if split == "train" else cfg.data.max_test
    if limit is not None and limit < ds.images.shape[0]:
        labels = ds.labels[:limit] if ds.labels is not None else None
        ds = dataclasses.replace(ds, images=ds.images[:limit], labels=labels)
    return ds


def _as_split(data: Any, what: str) -> Any:
    """An ``images``/``labels`` data set as it is; anything else via ``as_tensor_data``."""
    from spherevae.data.tensors import as_tensor_data

    return data if hasattr(data, "images") else as_tensor_data(data, what)


def _logger_names(t: Any) -> list[str]:
    """``train.loggers``, plus ``tensorboard`` when the older ``train.tensorboard`` is set."""
    names = list(t.loggers)
    if t.tensorboard and "tensorboard" not in names:
        names.append("tensorboard")
    return names


class Trainer:
    """Trains ``model`` on ``train`` (testing on ``test``) as ``cfg`` says, into
    ``cfg.run_dir``; :meth:`fit` runs the steps listed in the module docstring.

    ``model``: a spherevae VAE, or any ``nn.Module`` with ``encode``/``decode`` (projected
    to the sphere as ``cfg.model.project_to_sphere`` says; unset: the objective's default).
    ``train``, ``test``: see the module docstring. ``cfg.data.name`` only labels the data
    (fingerprint, authors' dataset weight). Under ``torchrun`` every rank trains on its
    shard of each global batch of ``train.batch_size`` items; rank 0 holds the run
    directory's lock and writes. Steps can be overridden in a subclass (e.g.
    :meth:`load_data` and :meth:`make_model`, as :func:`spherevae.training.runs.train` does).
    """

    # Without a terminal (output to a file or a pipe) and with ``train.progress``, a
    # progress line at least this often (seconds, checked at each ``log_every`` host read),
    # so a log never goes silent for a whole long epoch.
    progress_every_s: float = 30.0

    def __init__(self, cfg: RunConfig, model: nn.Module | None = None,
                 train: Any = None, test: Any = None, *,
                 callbacks: Sequence[Any] = (), loggers: Sequence[Any] = ()) -> None:
        self.cfg = cfg
        self._model, self._data = model, (train, test)
        self.dist = DistInfo()
        self.last_good: int | None = None  # the epoch of the last checkpoint written
        self.callbacks = [check_callback(cb) for cb in callbacks]
        self._logger_instances = [check_logger(lg) for lg in loggers]
        self.loggers: list[Any] = []
        self.changes: dict[str, list[Any]] = {}  # what a resume changed in the config
        self._stored: dict[str, Any] | None = None  # the resumed checkpoint's provenance
        self.should_stop = False  # a callback sets it to end the run after this epoch
        self._last_line = time.monotonic()  # when the last progress line was logged

    def add_callback(self, callback: Any) -> None:
        """Append ``callback`` (see :mod:`spherevae.training.callbacks`)."""
        self.callbacks.append(check_callback(callback))

    def _call(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            fn = getattr(cb, hook, None)
            if callable(fn):
                fn(self, *args)

    @property
    def run_dir(self) -> Path:
        return self.cfg.run_dir

    @property
    def layout(self) -> RunLayout:
        """The run directory's files (:class:`spherevae.io.layout.RunLayout`)."""
        return RunLayout(self.cfg.run_dir)

    # --- where the data and the model come from (overridden by the config path) -----

    def load_data(self) -> tuple[Any, Any]:
        """The full ``(train, test)`` splits, before ``data.max_train``/``max_test``."""
        if any(d is None for d in self._data):
            raise ValueError("Trainer needs train= and test= data (spherevae.training.runs.train "
                             "loads the data set that cfg.data names)")
        return _as_split(self._data[0], "train"), _as_split(self._data[1], "test")

    def make_model(self, sample: torch.Tensor) -> VAEModel:
        """The model to train; ``sample``: two training items (for a wrapped model's ``n``)."""
        from spherevae.models.adapter import as_vae_model

        if self._model is None:
            raise ValueError("Trainer needs a model (spherevae.training.runs.train builds the one cfg.model describes)")
        sphere = self.cfg.model.project_to_sphere
        if sphere is None:
            sphere = objective_class(self.cfg.objective.name).default_project_to_sphere
        return as_vae_model(self._model, sample, project_to_sphere=sphere)

    # --- the run ----------------------------------------------------------------------

    def fit(self, *, resume: bool = False) -> Path:
        """Train (``resume``: continue from the last checkpoint); return the run directory.

        A resume may change only :data:`spherevae.training.resume.RESUMABLE_KEYS` (e.g.
        ``train.epochs``; a schedule sized by the total keeps its old length, see
        :func:`spherevae.training.resume.pin_schedule`) and ends with the same weights as a run
        that was never stopped.
        """
        self.dist = init_distributed(self.cfg.train.device)
        with self._open_run_dir(resume):
            self.setup()
            start = self.start(resume)
            bar = self._progress_bar(start)
            try:
                for epoch in range(start, self.cfg.train.epochs):
                    self.train_epoch(epoch, bar)
                    record = self.end_epoch(epoch)
                    self.log(record)
                    self._call("on_epoch_end", record)
                    self.checkpoint(epoch, force=self.should_stop)
                    if self.should_stop:
                        _LOG.info("%s: stopped by a callback after epoch %d of %d", self.run_dir.name,
                                  epoch + 1, self.cfg.train.epochs)
                        break
            except BaseException:  # divergence, Ctrl-C, OOM, a full disk: close the loggers' runs
                for lg in self.loggers:
                    lg.finalize("failed")
                raise
            finally:
                bar.close()
            self.finish()
        self._call("on_fit_end", self.run_dir)
        return self.run_dir

    @contextlib.contextmanager
    def _open_run_dir(self, resume: bool) -> Iterator[None]:
        """Create and lock the run directory (rank 0); a resume's config is checked against
        ``config.yaml`` (:func:`~spherevae.training.resume.resume_config`) and replaces ``self.cfg``."""
        ckpt = self.layout.checkpoint
        if resume and not ckpt.is_file():
            raise FileNotFoundError(f"cannot resume: {str(ckpt)!r} does not exist (a run killed "
                                    "before its first checkpoint starts again without --resume)")
        main = self.dist.is_main
        if main:
            from spherevae.training.loggers import check_loggers

            check_loggers(_logger_names(self.cfg.train))  # asked for but not installed: before any work
            make_run_dir(self.cfg.train.out_dir, self.run_dir)
        with RunDirLock(self.run_dir) if main else contextlib.nullcontext():
            if main:
                clean_tmp_files(self.run_dir)  # what a kill during a write left; we hold the lock
            if resume:
                self.cfg, self.changes = resume_config(self.cfg, self.run_dir)
            barrier()  # every rank has read config.yaml before rank 0 rewrites it
            finished = [self.layout.checkpoint, self.layout.weights, self.layout.legacy_weights]
            if not resume and any(p.is_file() for p in finished):
                # (A run killed before its first checkpoint has nothing to resume: it starts again.)
                raise UserError(f"run directory {str(self.run_dir)!r} already holds a run; pass "
                                "--resume or choose another train.run_name")
            yield

    def setup(self) -> None:
        """Device, data and loaders, model, objective, optimisers and lr decay, AMP, the
        latent-pressure schedule and the noise generator. Reads data; writes nothing."""
        from spherevae.data.loader import BatchLoader

        cfg, t, world = self.cfg, self.cfg.train, self.dist.world_size
        self.device = resolve_device(t.device)
        if self.device.type == "cuda" and world > 1:
            self.device = torch.device("cuda", self.dist.local_rank)
        if t.batch_size % world:
            raise ValueError(f"train.batch_size={t.batch_size} must be divisible by the world size {world}")
        full = self.load_data()
        self.fingerprint = data_fingerprint(cfg.data.name, *full)
        train_ds, test_ds = (limit_split(cfg, s, ds) for s, ds in zip(("train", "test"), full, strict=True))
        del full
        self.model = self.make_model(train_ds.images[:2]).to(self.device)
        self.objective = build_objective(cfg, self.model.latent_dim).to(self.device)
        self._setup_optimizers()
        if t.compile:
            self.model.compile()  # in place: state-dict keys stay the same
        self.schedule = make_schedule(cfg.schedule.name, cfg.schedule.params)
        self.noise = torch.Generator(self.device).manual_seed(t.seed + 1 + 7919 * self.dist.rank)
        self.loader = BatchLoader(
            train_ds, t.batch_size // world, shuffle=True, seed=t.seed, drop_last=True,
            device=self.device, rank=self.dist.rank, world_size=world,
            keep_on_device=cfg.data.keep_on_device,
        )
        self.test_loader = BatchLoader(test_ds, t.eval_batch_size, shuffle=False, seed=t.seed, device=self.device)
        self.steps = len(self.loader)
        if self.steps == 0:
            raise ValueError(f"train.batch_size={t.batch_size} is larger than the "
                             f"{train_ds.images.shape[0]} training images")
        self.pixels = math.prod(train_ds.images.shape[1:])
        self.sums = EpochSums(self.device)

    def _setup_optimizers(self) -> None:
        """The objective's optimisers and LR schedules (:meth:`~spherevae.training.
        objectives.Objective.configure_optimizers`: one Adam + exponential decay per
        parameter group by default), the gradient scaler (fp16 only) and the autocast dtype."""
        entries = self.objective.configure_optimizers(self.model, self.cfg.optim)
        self.optimizers = {e["name"]: e["optimizer"] for e in entries}
        self.schedulers = {e["name"]: e["lr_scheduler"] for e in entries if e.get("lr_scheduler") is not None}
        self.groups = {name: [p for g in opt.param_groups for p in g["params"]]
                       for name, opt in self.optimizers.items()}
        self.params = [p for ps in self.groups.values() for p in ps]
        trainable = {id(p) for p in self.model.parameters() if p.requires_grad}
        self._one_group = len(self.groups) == 1 and {id(p) for p in self.params} == trainable
        self.amp_dtype = AMP_MODES[self.cfg.train.amp]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == "float16")

    def autocast(self) -> Any:
        """The autocast context of ``train.amp`` (disabled for ``none``)."""
        dtype = getattr(torch, self.amp_dtype or "float32")
        return torch.autocast(self.device.type, dtype=dtype, enabled=self.amp_dtype is not None)

    # --- start, resume, checkpoint ----------------------------------------------------

    def start(self, resume: bool) -> int:
        """Restore the checkpoint (``resume``) or start fresh; record the start in the run
        directory and open the loggers. Returns the first epoch to train."""
        fp_path = self.layout.fingerprint
        start = self.resume() if resume else 0  # checks config.yaml against the checkpoint
        stored_fp = check_fingerprint_file(self.run_dir, self._stored) if resume else None
        if stored_fp is not None:
            check_fingerprint(stored_fp, self.fingerprint, fp_path)
        t = self.cfg.train
        if self.dist.is_main:
            from spherevae.training.loggers import make_loggers

            save_config(self.cfg, self.layout.config)
            if not fp_path.is_file():  # a new run, or a deleted file (checked above)
                atomic_write_json(fp_path, self.fingerprint, indent=2)
            truncate_metrics(self.layout.metrics, start)
            self._forget_derived_files()
            record_history(self.run_dir, resume, start, t.epochs, self.changes)
            self.loggers = [*make_loggers(_logger_names(t), self.run_dir, self.run_dir.name, t.logger_options),
                            *self._logger_instances]
            for lg in self.loggers:
                lg.log_hyperparams(config_to_dict(self.cfg))
        return start

    def _forget_derived_files(self) -> None:
        """Training changes the weights, so the latents and fitted samplers cached for the
        old weights (``spherevae.load(...).sampler``, ``evaluate``) no longer describe the
        run: remove them (they are rebuilt on demand)."""
        self.layout.latents.unlink(missing_ok=True)
        if self.layout.samplers_dir.is_dir():
            for path in self.layout.samplers_dir.glob("*.safetensors"):
                path.unlink()

    def resume(self) -> int:
        """Load ``checkpoints/last.pt`` into the model, optimisers, schedules, scaler,
        objective and noise generator; return the epoch after it."""
        path = self.layout.checkpoint
        check_run_file(self.run_dir, path)  # no link out of the run, no FIFO
        state = load_checkpoint(path, map_location=self.device, required=_RESUME_ENTRIES)
        self._stored = state.get("provenance")
        on_disk = load_config(self.layout.config, run_root=self.run_dir)
        check_config(self._stored, on_disk, self.layout.config, path)
        self.load_state_dict(state, path)
        self.last_good = int(state["epoch"])
        start = self.last_good + 1
        if self.cfg.train.epochs < start:
            raise UserError(f"{self.run_dir} has already trained {start} epochs; train.epochs="
                            f"{self.cfg.train.epochs} would go back (use train.epochs >= {start})")
        return start

    def state_dict(self, epoch: int) -> dict[str, Any]:
        """Everything a resume needs after ``epoch`` (tensors and plain values only)."""
        return {
            "epoch": epoch,
            "model": self.model.state_dict(),
            "model_spec": model_spec(self.model),
            "provenance": self.provenance(epoch),
            "optimizers": {n: opt.state_dict() for n, opt in self.optimizers.items()},
            "schedulers": {n: s.state_dict() for n, s in self.schedulers.items()},
            "scaler": self.scaler.state_dict(),
            "objective": self.objective.state_dict(),
            "rng": {"noise": self.noise.get_state()},
        }

    def provenance(self, epoch: int) -> dict[str, Any]:
        """What the weights after ``epoch`` were trained from (:mod:`spherevae.training.provenance`)."""
        return make_provenance(self.cfg, model_spec(self.model), self.fingerprint, epoch)

    def load_state_dict(self, state: dict[str, Any], path: Path) -> None:
        """The inverse of :meth:`state_dict` (``path`` names the file in errors)."""
        load_state(self.model, state["model"], path)
        for n, opt in self.optimizers.items():
            load_state(opt, state["optimizers"].get(n, {}), path, f"{n} optimiser")
        for n, sched in self.schedulers.items():
            sched.load_state_dict(state["schedulers"][n])
        self.scaler.load_state_dict(state["scaler"])
        load_state(self.objective, state["objective"], path, "objective state")
        self.noise.set_state(state["rng"]["noise"].cpu())  # generator states are CPU byte tensors

    def checkpoint(self, epoch: int, *, force: bool = False) -> None:
        """Write ``checkpoints/last.pt`` atomically every ``train.checkpoint_every`` epochs,
        after the last and when ``force`` (rank 0); then the callbacks' ``on_checkpoint``."""
        t = self.cfg.train
        if (epoch + 1) % t.checkpoint_every and epoch + 1 != t.epochs and not force:
            return
        if self.dist.is_main:
            save_checkpoint(self.state_dict(epoch), self.layout.checkpoint)
        self.last_good = epoch
        self._call("on_checkpoint", epoch, self.layout.checkpoint)

    def finish(self) -> None:
        """Final weights with the model's spec (``model.safetensors``); logger artifacts."""
        if not self.dist.is_main:
            return
        save_weights(self.layout.weights, self.model.state_dict(), model_spec(self.model),
                     self.provenance(self.last_good if self.last_good is not None else -1))
        for lg in self.loggers:
            for artifact in (self.layout.config, self.layout.metrics, self.layout.weights):
                lg.log_artifact(artifact)
            lg.finalize("success")

    # --- the epoch --------------------------------------------------------------------

    def train_step(self, x: torch.Tensor, multiplier: torch.Tensor) -> None:
        """One batch ``x`` ``(B, ...)`` with the schedule's ``multiplier`` (a 0-dim device
        tensor): forward, objective, backward, gradient averaging and clipping, optimiser
        steps; the reported terms are added to :attr:`sums`. No host-device sync (except
        the fp16 scaler's own inf check)."""
        with self.autocast():
            out = self.objective.compute(self.model, x, multiplier, self.noise)
        # One backward per optimiser, each into its own parameters only (the authors'
        # two-step: encoder <- encoder loss, decoder <- reconstruction). One loss for all
        # parameters needs no `inputs=`, which costs a graph traversal per step.
        losses = list(out.losses.items())
        for i, (name, loss) in enumerate(losses):
            inputs = None if self._one_group else self.groups[name]
            self.scaler.scale(loss).backward(inputs=inputs, retain_graph=i < len(losses) - 1)
        average_gradients(self.params)
        clip = self.cfg.optim.grad_clip
        for name, opt in self.optimizers.items():
            if clip is not None:
                self.scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(self.groups[name], clip)
            self.scaler.step(opt)
            opt.zero_grad(set_to_none=True)
        self.scaler.update()
        self.sums.add(out.terms)

    def train_epoch(self, epoch: int, bar: Any) -> None:
        """Every batch of ``epoch``. The schedule's multipliers are computed for the whole
        epoch at its start (one host-to-device copy); the host reads the sums only every
        ``train.log_every`` steps and at the last (NaN/inf check, progress bar)."""
        t = self.cfg.train
        # Train mode every epoch: the test pass switches to eval, and a caller's model
        # (e.g. one returned by spherevae.load) may arrive in eval mode; batch norm and
        # dropout must not train in it, or a resume would not be bit-identical.
        self.model.train()
        self.loader.set_epoch(epoch)
        self._t0 = time.perf_counter()
        ms = [self.schedule(Clock(epoch, s, self.steps, t.epochs)) for s in range(self.steps)]
        self._multiplier_mean = sum(ms) / self.steps
        multipliers = torch.tensor(ms, dtype=torch.float32, device=self.device)
        self.sums.reset()
        for step, (x, _) in enumerate(self.loader):
            self.train_step(x, multipliers[step])
            if (step + 1) % t.log_every == 0 or step + 1 == self.steps:
                self._log_point(epoch, step, ms[step], bar)
            bar.update(1)

    def _log_point(self, epoch: int, step: int, multiplier: float, bar: Any) -> None:
        """The host read every ``log_every`` steps: stop on NaN/inf, update the bar."""
        bad = self.sums.first_bad()
        if max(bad) >= 0:
            raise TrainingDiverged(divergence_message(
                bad, epoch, self.steps, self.layout.checkpoint, self.last_good))
        if not bar.disable:
            mean = self.sums.means(step + 1)
            bar.set_postfix(epoch=epoch, loss=f"{mean[0]:.4g}", beta=f"{self.objective.beta:.3g}",
                            m=f"{multiplier:.3g}")
        elif self._quiet_progress_due():
            mean = self.sums.means(step + 1)
            _LOG.info("%s: epoch %d/%d, step %d/%d, train loss %.5g (%.0f s into the epoch)",
                      self.run_dir.name, epoch + 1, self.cfg.train.epochs, step + 1, self.steps,
                      mean[0], time.perf_counter() - self._t0)

    def _quiet_progress_due(self) -> bool:
        """Rank 0, ``train.progress``, no terminal, and :attr:`progress_every_s` since the last line."""
        if not (self.cfg.train.progress and self.dist.is_main and not self._on_tty):
            return False
        now = time.monotonic()
        if now - self._last_line < self.progress_every_s:
            return False
        self._last_line = now
        return True

    def end_epoch(self, epoch: int) -> dict[str, Any]:
        """The epoch's record (mean train terms over ranks, the test pass, beta, lr), then
        the objective's epoch hook (e.g. beta auto-balance) and the lr decay step."""
        means = dict(zip(TERMS, self.sums.means(self.steps), strict=True))
        if self.dist.world_size > 1:
            means = mean_over_ranks(means, self.device)
        beta_used = self.objective.beta
        self.objective.end_epoch(epoch, means)
        lr_used = {n: opt.param_groups[0]["lr"] for n, opt in self.optimizers.items()}
        for sched in self.schedulers.values():
            sched.step()
        return {
            "epoch": epoch,
            "train_loss": means["loss"],
            "train_mse_sum": means["reconstruction"],
            "train_rmse_percent": 100.0 * math.sqrt(max(means["reconstruction"], 0.0) / self.pixels),
            "train_latent": means["latent"],
            **test_reconstruction(self.model, self.test_loader, self.autocast),
            "beta": beta_used,
            "beta_next": self.objective.beta,
            "multiplier": self._multiplier_mean,
            "lr": lr_used,
            "epoch_time_s": time.perf_counter() - self._t0,
        }

    # --- logging ----------------------------------------------------------------------

    def _progress_bar(self, start: int) -> Any:
        """A tqdm bar on a terminal (rank 0, ``train.progress``); disabled otherwise, when
        :meth:`log` writes one line per epoch instead of carriage returns."""
        t = self.cfg.train
        self._on_tty = sys.stderr.isatty()
        self._last_line = time.monotonic()  # the set-up's lines count as the last
        return progress_bar((t.epochs - start) * self.steps, self.run_dir.name,
                            enabled=t.progress and self.dist.is_main and self._on_tty)

    def log(self, record: dict[str, Any]) -> None:
        """Rank 0: one line in ``metrics.jsonl``, the loggers, and (``train.progress``
        without a terminal) one log line per epoch."""
        if not self.dist.is_main:
            return
        append_jsonl(self.layout.metrics, record)
        for lg in self.loggers:
            lg.log_metrics(record, record["epoch"])
        if self.cfg.train.progress and not self._on_tty:
            _LOG.info("%s: %s", self.run_dir.name, epoch_line(record, self.cfg.train.epochs))
            self._last_line = time.monotonic()
