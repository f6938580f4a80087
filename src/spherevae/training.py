"""Training: the loop, resume, and loading a finished run.

What is minimised lives in :mod:`spherevae.objectives` (registry :data:`OBJECTIVES`);
read this module top to bottom: the model and data set-up, :func:`train`, :func:`load_run`.

Conventions kept by the loop:

- No host-device syncs per step. Loss terms are summed on the device; the host
  reads them every ``train.log_every`` steps (progress bar, NaN/inf check) and at the
  end of each epoch (metrics.jsonl, checkpoint).
- Randomness is explicit: model init under a forked global RNG seeded with
  ``train.seed``, a ``torch.Generator`` for the reparameterisation noise, and the
  data order from ``BatchLoader(seed=...)`` + ``set_epoch``. A checkpoint holds all
  of it, so a resumed run ends with the same weights as an uninterrupted one.
- A checkpoint is written only after an epoch whose losses were all finite: when a
  run diverges, ``checkpoints/last.pt`` is the last good state.

Run directory: ``config.yaml`` (resolved config), ``metrics.jsonl`` (one JSON object
per epoch), ``checkpoints/last.pt``, ``model.safetensors`` (final weights + model spec),
``history.jsonl`` (one line per start or resume, with what a resume changed),
``data_fingerprint.json`` (checked at resume and evaluate) and, while a process trains
in it, ``.lock`` (see :mod:`spherevae.rundir` and docs/design.md, "Robustness").
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spherevae._validation import check_choice
from spherevae.checkpoint import load_checkpoint, load_state, save_checkpoint
from spherevae.config import AMP_MODES, RunConfig, config_to_dict, load_config, save_config
from spherevae.distributed import DistInfo, average_gradients, barrier, init_distributed
from spherevae.models import model_from_spec, model_spec
from spherevae.objectives import (  # re-exported: training.OBJECTIVES etc. keep working
    OBJECTIVES,
    TERMS,
    AuthorsObjective,
    CompressedObjective,
    StandardObjective,
    StepOutput,
)
from spherevae.rundir import (
    CheckpointError,
    RunDirLock,
    UserError,
    append_jsonl,
    atomic_write_json,
    atomic_write_text,
    check_fingerprint,
    clean_tmp_files,
    data_fingerprint,
    make_run_dir,
    read_json,
    read_jsonl,
    record_history,
    resume_config,
)
from spherevae.schedules import Clock, make_schedule
from spherevae.weights import load_weights, save_weights

__all__ = [
    "OBJECTIVES",
    "AuthorsObjective",
    "CompressedObjective",
    "StandardObjective",
    "StepOutput",
    "TrainingDiverged",
    "build_model",
    "load_run",
    "train",
]

WEIGHTS_FILE = "model.safetensors"  # a run's final weights (spherevae.weights)
_LOG = logging.getLogger("spherevae.train")


class TrainingDiverged(RuntimeError):
    """A loss term became NaN or inf; the message says where and which term."""


# --- model, data, device ------------------------------------------------------------


def build_model(cfg: RunConfig, image_shape: tuple[int, int, int]) -> nn.Module:
    """The VAE for ``cfg.model`` on images of ``image_shape``, initialised from ``train.seed``."""
    from spherevae.models import MODEL_PRESETS, VAE, ModelConfig

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
    return _limit_split(cfg, split, _load_full_split(cfg, split))


def _load_full_split(cfg: RunConfig, split: str) -> Any:
    from spherevae.data import load_dataset

    return load_dataset(
        cfg.data.name, split, root=cfg.data.root, download=cfg.data.download, **cfg.data.options
    )


def _limit_split(cfg: RunConfig, split: str, ds: Any) -> Any:
    limit = cfg.data.max_train if split == "train" else cfg.data.max_test
    if limit is not None and limit < ds.images.shape[0]:
        labels = ds.labels[:limit] if ds.labels is not None else None
        ds = dataclasses.replace(ds, images=ds.images[:limit], labels=labels)
    return ds


def _resolve_device(name: str, what: str = "train.device") -> torch.device:
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


# --- evaluation and logging ---------------------------------------------------------


@torch.no_grad()
def _test_reconstruction(model: nn.Module, loader: Any, autocast: Any) -> dict[str, float]:
    """Summed squared error per image and RMSE in % of range, decoding the mean ``mu``;
    also the replica angle of the test means (A.8-A.9), logged per epoch so the effect
    of a schedule (e.g. the quench's drop) can be followed."""
    from spherevae.metrics import replica_angles

    model.eval()
    total = None
    count = 0
    mus = []
    for x, _ in loader:
        with autocast():
            # Decode the mean (projected onto the sphere when the model samples there).
            out = model(x, sample=False)
            err = (out.x_hat.float() - x.float()).square().flatten(1).sum(1).sum()
        mus.append(out.mu.detach().float())
        total = err if total is None else total + err
        count += x.shape[0]
    model.train()
    mse_sum = float(total) / max(count, 1)  # one sync per evaluation
    pixels = math.prod(x.shape[1:])
    angles = replica_angles(torch.cat(mus))
    return {
        "test_mse_sum": mse_sum,
        "test_rmse_percent": 100.0 * math.sqrt(mse_sum / pixels),
        "test_replica_angle_mean": float(angles.mean()),
        "test_replica_angle_std": float(angles.std()) if angles.numel() > 1 else 0.0,
    }


def _logger_names(t: Any) -> list[str]:
    """``train.loggers``, plus ``tensorboard`` when the older ``train.tensorboard`` is set."""
    names = list(t.loggers)
    if t.tensorboard and "tensorboard" not in names:
        names.append("tensorboard")
    return names


def _epoch_line(record: dict[str, Any], epochs: int) -> str:
    return (f"epoch {record['epoch'] + 1}/{epochs}: loss {record['train_loss']:.4g}, "
            f"test RMSE {record['test_rmse_percent']:.3g}%, latent {record['train_latent']:.4g}, "
            f"beta {record['beta']:.3g} ({record['epoch_time_s']:.1f} s)")


def _truncate_metrics(path: Path, epochs_done: int) -> None:
    """Keep only the lines of epochs before ``epochs_done`` (a resumed run rewrites the rest);
    a cut-off last line (a crash mid-append) is dropped with a warning. Atomic."""
    if not path.exists():
        return
    kept = [r for r in read_jsonl(path) if r.get("epoch", epochs_done) < epochs_done]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))


def _divergence_message(
    first_bad: list[int], epoch: int, steps: int, run_dir: Path, last_good: int | None
) -> str:
    bad = {name: s for name, s in zip(TERMS, first_bad, strict=True) if s >= 0}
    step = min(bad.values())
    names = [n for n, s in bad.items() if s == step and n != "loss"] or ["loss"]
    where = (
        f"the last good checkpoint is {run_dir / 'checkpoints' / 'last.pt'} (after epoch {last_good})"
        if last_good is not None
        else "no checkpoint was written (it diverged in the first epoch)"
    )
    return (
        f"training diverged at epoch {epoch}, step {step} of {steps}: the "
        f"{' and '.join(names)} term became NaN or inf; {where}. "
        "Try a lower optim.lr, optim.grad_clip, or a lower objective.beta."
    )


# --- the loop -----------------------------------------------------------------------


def train(
    cfg: RunConfig,
    *,
    resume: bool = False,
    model: nn.Module | None = None,
    data: tuple[Any, Any] | None = None,
) -> Path:
    """Train the run described by ``cfg``; return its directory.

    ``resume=True`` continues from ``<run_dir>/checkpoints/last.pt`` and gives the same
    weights as a run that was never stopped. A resume may change only
    :data:`spherevae.rundir.RESUMABLE_KEYS` (e.g. ``train.epochs``; a schedule sized by
    the total keeps its old length, see :func:`spherevae.rundir.pin_schedule`); any other
    difference from the run's ``config.yaml`` is an error. Under ``torchrun`` every rank
    trains on its shard of each (global) batch of ``train.batch_size`` images; rank 0
    holds the run directory's lock and writes.

    ``model`` (a :class:`~spherevae.models.VAE` or :class:`~spherevae.models.ModelAdapter`)
    and ``data`` (``(train, test)`` datasets with ``images``/``labels``, e.g.
    :class:`spherevae.api.TensorData`) replace what ``cfg.model`` and ``cfg.data`` would
    build: :func:`spherevae.fit` passes them. The final weights go to ``model.safetensors``.
    """
    dist_info: DistInfo = init_distributed(cfg.train.device)
    run_dir = cfg.run_dir
    ckpt_path = run_dir / "checkpoints" / "last.pt"
    if resume and not ckpt_path.is_file():
        raise FileNotFoundError(f"cannot resume: {str(ckpt_path)!r} does not exist (a run killed "
                                "before its first checkpoint starts again without --resume)")
    if dist_info.is_main:
        from spherevae.loggers import check_loggers

        check_loggers(_logger_names(cfg.train))  # asked for but not installed: before any work
        make_run_dir(cfg.train.out_dir, run_dir)
    with RunDirLock(run_dir) if dist_info.is_main else contextlib.nullcontext():
        if dist_info.is_main:
            clean_tmp_files(run_dir)  # what a kill during a write left; we hold the lock
        changes: dict[str, list[Any]] = {}
        if resume:
            cfg, changes = resume_config(cfg, run_dir)
        barrier()  # every rank has read config.yaml before rank 0 rewrites it
        return _train(cfg, resume, dist_info, changes, model, data)


def _train(
    cfg: RunConfig,
    resume: bool,
    dist_info: DistInfo,
    changes: dict[str, list[Any]],
    model: nn.Module | None,
    data: tuple[Any, Any] | None,
) -> Path:
    from spherevae.data import BatchLoader

    t = cfg.train
    device = _resolve_device(t.device)
    if device.type == "cuda" and dist_info.world_size > 1:
        device = torch.device("cuda", dist_info.local_rank)
    if t.batch_size % dist_info.world_size:
        raise ValueError(
            f"train.batch_size={t.batch_size} must be divisible by the world size {dist_info.world_size}"
        )
    run_dir = cfg.run_dir
    from spherevae.loggers import make_loggers

    ckpt_path = run_dir / "checkpoints" / "last.pt"
    if not resume and (ckpt_path.is_file() or any((run_dir / f).is_file() for f in (WEIGHTS_FILE, "model.pt"))):
        # (A run killed before its first checkpoint has nothing to resume: it starts again.)
        raise UserError(
            f"run directory {str(run_dir)!r} already holds a run; pass --resume or choose another train.run_name"
        )

    if data is not None:
        full = {"train": data[0], "test": data[1]}
    else:
        full = {s: _load_full_split(cfg, s) for s in ("train", "test")}
    fingerprint = data_fingerprint(cfg.data.name, full["train"], full["test"])
    fp_path = run_dir / "data_fingerprint.json"
    if resume and fp_path.is_file():
        check_fingerprint(read_json(fp_path), fingerprint, fp_path)
    train_ds, test_ds = (_limit_split(cfg, s, full.pop(s)) for s in ("train", "test"))
    if model is None:
        model = build_model(cfg, tuple(train_ds.images.shape[1:]))
    model = model.to(device)
    objective = OBJECTIVES[cfg.objective.name](cfg, model, cfg.data.name)
    groups = objective.parameter_groups(model)
    lrs = objective.learning_rates(cfg)
    o = cfg.optim
    optimizers = {
        name: torch.optim.Adam(ps, lr=lrs[name], betas=o.betas, weight_decay=o.weight_decay)
        for name, ps in groups.items()
    }
    schedulers = {
        n: torch.optim.lr_scheduler.ExponentialLR(opt, gamma=o.lr_decay)
        for n, opt in optimizers.items()
    }
    amp_dtype = AMP_MODES[t.amp]
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == "float16")

    def autocast() -> Any:
        return torch.autocast(
            device.type, dtype=getattr(torch, amp_dtype or "float32"), enabled=amp_dtype is not None
        )

    if t.compile:
        model.compile()  # in place: state-dict keys stay the same
    schedule = make_schedule(cfg.schedule.name, cfg.schedule.params)
    noise = torch.Generator(device).manual_seed(t.seed + 1 + 7919 * dist_info.rank)
    per_rank = t.batch_size // dist_info.world_size
    loader = BatchLoader(
        train_ds,
        per_rank,
        shuffle=True,
        seed=t.seed,
        drop_last=True,
        device=device,
        rank=dist_info.rank,
        world_size=dist_info.world_size,
        keep_on_device=cfg.data.keep_on_device,
    )
    test_loader = BatchLoader(test_ds, t.eval_batch_size, shuffle=False, seed=t.seed, device=device)
    steps = len(loader)
    if steps == 0:
        raise ValueError(
            f"train.batch_size={t.batch_size} is larger than the {train_ds.images.shape[0]} training images"
        )

    start_epoch, last_good = 0, None
    if resume:
        state = load_checkpoint(ckpt_path, map_location=device, required=_RESUME_ENTRIES)
        load_state(model, state["model"], ckpt_path)
        for n, opt in optimizers.items():
            load_state(opt, state["optimizers"].get(n, {}), ckpt_path, f"{n} optimiser")
            schedulers[n].load_state_dict(state["schedulers"][n])
        scaler.load_state_dict(state["scaler"])
        objective.load_state_dict(state["objective"])
        noise.set_state(state["rng"]["noise"].cpu())  # generator states are CPU byte tensors
        last_good = int(state["epoch"])
        start_epoch = last_good + 1
        if t.epochs < start_epoch:
            raise UserError(f"{run_dir} has already trained {start_epoch} epochs; train.epochs="
                            f"{t.epochs} would go back (use train.epochs >= {start_epoch})")
    if dist_info.is_main:
        save_config(cfg, run_dir / "config.yaml")
        if not (resume and fp_path.is_file()):
            atomic_write_json(fp_path, fingerprint, indent=2)
        _truncate_metrics(run_dir / "metrics.jsonl", start_epoch)
        record_history(run_dir, resume, start_epoch, t.epochs, changes)
    loggers = []
    if dist_info.is_main:
        loggers = make_loggers(_logger_names(t), run_dir, run_dir.name, t.logger_options)
        for lg in loggers:
            lg.log_hyperparams(config_to_dict(cfg))
    all_params = [p for ps in groups.values() for p in ps]

    from tqdm.auto import tqdm

    # A bar on a terminal; in a log file one line per epoch instead of carriage returns.
    on_tty = sys.stderr.isatty()
    bar = tqdm(
        total=(t.epochs - start_epoch) * steps,
        disable=not (t.progress and dist_info.is_main and on_tty),
        desc=run_dir.name,
        dynamic_ncols=True,
    )
    model.train()
    for epoch in range(start_epoch, t.epochs):
        loader.set_epoch(epoch)
        t0 = time.perf_counter()
        sums = torch.zeros(len(TERMS), device=device)  # summed on device, read at log points
        first_bad = torch.full((len(TERMS),), -1, dtype=torch.long, device=device)
        mult_sum = 0.0
        for step, (x, _) in enumerate(loader):
            m = schedule(Clock(epoch, step, steps, t.epochs))
            mult_sum += m
            with autocast():
                out = objective.compute(model, x, m, noise)
            # One backward per optimiser, each into its own parameters only (the
            # authors' two-step: encoder <- encoder loss, decoder <- reconstruction).
            losses = list(out.losses.items())
            for i, (name, loss) in enumerate(losses):
                scaler.scale(loss).backward(inputs=groups[name], retain_graph=i < len(losses) - 1)
            average_gradients(all_params)
            for name, opt in optimizers.items():
                if o.grad_clip is not None:
                    scaler.unscale_(opt)
                    torch.nn.utils.clip_grad_norm_(groups[name], o.grad_clip)
                scaler.step(opt)
                opt.zero_grad(set_to_none=True)
            scaler.update()

            terms = torch.stack([out.terms[k].detach().float() for k in TERMS])
            sums += terms
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(terms), step, first_bad)
            if (step + 1) % t.log_every == 0 or step + 1 == steps:
                bad = first_bad.tolist()  # the host read: once per log_every steps
                if max(bad) >= 0:
                    bar.close()
                    for lg in loggers:
                        lg.finalize("failed")
                    raise TrainingDiverged(
                        _divergence_message(bad, epoch, steps, run_dir, last_good)
                    )
                mean = (sums / (step + 1)).tolist()
                bar.set_postfix(
                    epoch=epoch, loss=f"{mean[0]:.4g}", beta=f"{objective.beta:.3g}", m=f"{m:.3g}"
                )
            bar.update(1)

        means = dict(zip(TERMS, (sums / steps).tolist(), strict=True))
        if dist_info.world_size > 1:
            means = _mean_over_ranks(means, device)
        beta_used = objective.beta
        objective.end_epoch(epoch, means)
        lr_used = {n: opt.param_groups[0]["lr"] for n, opt in optimizers.items()}
        for sched in schedulers.values():
            sched.step()
        pixels = math.prod(train_ds.images.shape[1:])
        record = {
            "epoch": epoch,
            "train_loss": means["loss"],
            "train_mse_sum": means["reconstruction"],
            "train_rmse_percent": 100.0 * math.sqrt(max(means["reconstruction"], 0.0) / pixels),
            "train_latent": means["latent"],
            **_test_reconstruction(model, test_loader, autocast),
            "beta": beta_used,
            "beta_next": objective.beta,
            "multiplier": mult_sum / steps,
            "lr": lr_used,
            "epoch_time_s": time.perf_counter() - t0,
        }
        if dist_info.is_main:
            append_jsonl(run_dir / "metrics.jsonl", record)
            for lg in loggers:
                lg.log_metrics(record, epoch)
            if t.progress and not on_tty:
                _LOG.info("%s: %s", run_dir.name, _epoch_line(record, t.epochs))
            if (epoch + 1) % t.checkpoint_every == 0 or epoch + 1 == t.epochs:
                save_checkpoint(
                    {
                        "epoch": epoch,
                        "model": model.state_dict(),
                        "model_spec": model_spec(model),
                        "optimizers": {n: opt.state_dict() for n, opt in optimizers.items()},
                        "schedulers": {n: s.state_dict() for n, s in schedulers.items()},
                        "scaler": scaler.state_dict(),
                        "objective": objective.state_dict(),
                        "rng": {"noise": noise.get_state()},
                    },
                    ckpt_path,
                )
                last_good = epoch
    bar.close()
    if dist_info.is_main:
        save_weights(run_dir / WEIGHTS_FILE, model.state_dict(), model_spec(model))
        for lg in loggers:
            for name in ("config.yaml", "metrics.jsonl", WEIGHTS_FILE):
                lg.log_artifact(run_dir / name)
            lg.finalize("success")
    return run_dir


_RESUME_ENTRIES = ("epoch", "model", "optimizers", "schedulers", "scaler", "objective", "rng")


def _mean_over_ranks(means: dict[str, float], device: torch.device) -> dict[str, float]:
    import torch.distributed as dist

    v = torch.tensor(list(means.values()), device=device)
    dist.all_reduce(v)
    v /= dist.get_world_size()
    return dict(zip(means, v.tolist(), strict=True))


def load_run(
    run_dir: str | Path, *, device: str | torch.device = "cpu", model: nn.Module | None = None
) -> tuple[RunConfig, nn.Module]:
    """The config and trained model (eval mode) of a run.

    Weights come from ``model.safetensors``; runs from before it fall back to ``model.pt``
    and then to the last checkpoint (both read with ``weights_only=True``). ``model``: an
    instance of the architecture, needed only for a user model whose class was not
    recorded (see :func:`spherevae.models.model_from_spec`).
    """
    run_dir = Path(run_dir)
    cfg = load_config(run_dir / "config.yaml")
    path = run_dir / WEIGHTS_FILE
    if path.is_file():
        state, spec = load_weights(path, device=device)
    else:
        path = run_dir / "model.pt"
        if not path.is_file():
            path = run_dir / "checkpoints" / "last.pt"
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
