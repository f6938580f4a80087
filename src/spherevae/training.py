"""Training: objectives, the loop, resume, and loading a finished run.

Read top to bottom: the objectives (what is minimised, registry :data:`OBJECTIVES`),
then :func:`train` (one screen of loop), then :func:`load_run`.

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
per epoch), ``checkpoints/last.pt``, ``model.pt`` (final weights + model config).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spherevae._validation import check_choice
from spherevae.checkpoint import load_checkpoint, save_checkpoint
from spherevae.config import AMP_MODES, RunConfig, config_to_dict, load_config, save_config
from spherevae.distributed import (
    DistInfo,
    all_gather_with_grad,
    average_gradients,
    init_distributed,
)
from spherevae.schedules import Clock, make_schedule

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

TERMS = ("loss", "reconstruction", "latent")  # the scalars every objective reports
_LOG = logging.getLogger("spherevae.train")


class TrainingDiverged(RuntimeError):
    """A loss term became NaN or inf; the message says where and which term."""


# --- objectives ---------------------------------------------------------------------


@dataclass
class StepOutput:
    """What one objective evaluation gives the loop.

    ``losses`` maps optimiser name -> the loss whose gradient that optimiser follows;
    ``terms`` holds the reported scalars (:data:`TERMS`), still on the device.
    """

    losses: dict[str, torch.Tensor]
    terms: dict[str, torch.Tensor]


def _reconstruction(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Squared error summed over pixels, mean over the batch (paper eq 1), in float32."""
    return (x_hat.float() - x.float()).square().flatten(1).sum(1).mean()


def _pass_validate_false(fn: Callable[..., Any]) -> dict[str, bool]:
    # Finiteness checks are host syncs; skip them in the step where the callee allows it.
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # pragma: no cover
        return {}
    return {"validate": False} if "validate" in params else {}


class StandardObjective:
    """beta-VAE (paper eq 2): ``MSE + beta * m * KLD``, one Adam for the whole model."""

    default_project_to_sphere = False

    def __init__(self, cfg: RunConfig, model: nn.Module, dataset: str) -> None:
        from spherevae.losses import vae_loss

        self._vae_loss = vae_loss
        self._vae_kwargs = _pass_validate_false(vae_loss)
        self.beta = cfg.objective.beta

    def parameter_groups(self, model: nn.Module) -> dict[str, list[nn.Parameter]]:
        return {"model": list(model.parameters())}

    def learning_rates(self, cfg: RunConfig) -> dict[str, float]:
        return {"model": cfg.optim.lr}

    def compute(
        self, model: nn.Module, x: torch.Tensor, multiplier: float, generator: torch.Generator
    ) -> StepOutput:
        out = model(x, generator)
        x_hat, mu, logvar = out.x_hat, out.mu, out.logvar
        terms = self._vae_loss(
            x.float(), x_hat.float(), mu.float(), logvar.float(), 1.0, **self._vae_kwargs
        )
        total = terms.reconstruction + (self.beta * multiplier) * terms.latent
        return StepOutput(
            {"model": total},
            {"loss": total, "reconstruction": terms.reconstruction, "latent": terms.latent},
        )

    def end_epoch(self, epoch: int, means: dict[str, float]) -> None:
        """Hook after each epoch with the epoch's mean terms (the standard VAE has none)."""

    def state_dict(self) -> dict[str, Any]:
        return {"beta": self.beta}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.beta = float(state["beta"])


class CompressedObjective(StandardObjective):
    """The paper's eq 6: ``MSE + beta * m * HypersphericalPriorLoss(mu, sigma)``.

    The prior loss uses batch statistics, so under DDP it is computed on ``(mu, sigma)``
    gathered from all ranks (with gradients). ``z`` is projected to radius ``sqrt(n)``
    by default (paper eq 8: ``model.project_to_sphere`` unset means on).
    """

    default_project_to_sphere = True

    def __init__(self, cfg: RunConfig, model: nn.Module, dataset: str) -> None:
        from spherevae.losses import HypersphericalPriorLoss

        self.beta = cfg.objective.beta
        self.latent_loss = self._make_latent_loss(cfg, model, dataset, HypersphericalPriorLoss)
        self.latent_loss.to(next(model.parameters()).device)
        self._kwargs = _pass_validate_false(self.latent_loss.forward)
        # On a GPU the eager loss is dozens of tiny kernels; compiled, a few fused ones.
        self._latent_call = torch.compile(self.latent_loss) if cfg.train.compile else self.latent_loss

    @staticmethod
    def _make_latent_loss(cfg: RunConfig, model: nn.Module, dataset: str, cls: Any) -> nn.Module:
        o = cfg.objective
        try:
            return cls(model.latent_dim, preset=o.loss_preset, **o.loss_overrides)
        except TypeError as exc:
            raise ValueError(f"objective.loss_overrides: {exc}") from None

    def _latent(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        mu_all = all_gather_with_grad(mu.float())
        sigma_all = all_gather_with_grad(torch.exp(0.5 * logvar.float()))
        return self._latent_call(mu_all, sigma_all, **self._kwargs)

    def compute(
        self, model: nn.Module, x: torch.Tensor, multiplier: float, generator: torch.Generator
    ) -> StepOutput:
        out = model(x, generator)
        mu, logvar = out.mu, out.logvar
        recon = _reconstruction(x, out.x_hat)
        latent = self._latent(mu, logvar)
        total = recon + (self.beta * multiplier) * latent
        return StepOutput(
            {"model": total}, {"loss": total, "reconstruction": recon, "latent": latent}
        )


# The authors' code scales the encoder loss by this constant (facts file).
AUTHORS_ENCODER_SCALE = 1e-3
# Their sigma-angle gain W_sigma per dataset family (facts file).
AUTHORS_DATASET_WEIGHTS: dict[str, float] = {
    "mnist": 50_000.0,
    "digits": 50_000.0,
    "fashion-mnist": 225_000.0,
    "cifar10": 500_000.0,
    "svhn": 500_000.0,
    "celeba64": 500_000.0,
}


class AuthorsObjective(CompressedObjective):
    """What the authors' released code does (docs/objectives.md), training side.

    - Two optimisers, two updates per batch. The encoder follows
      ``0.001 * (MSE + beta * latent * m)`` with the decoder frozen; the decoder follows
      the reconstruction loss of the DETACHED ``z`` with the encoder frozen. Both
      gradients are taken at the same parameters from one forward pass (``backward(
      inputs=...)``), which is what "decoder step on detached z after the encoder
      step" computes: the decoder has not changed when the encoder steps, and the
      detached ``z`` was made before the encoder stepped.
    - beta auto-balance: epoch 0 runs with ``beta = objective.beta``; after it,
      ``beta = objective.beta * mean(MSE) / (mean(latent) + 1e-3)`` over that epoch,
      then held fixed.
    """

    def __init__(self, cfg: RunConfig, model: nn.Module, dataset: str) -> None:
        from spherevae.losses import AuthorsLatentLoss

        self.beta_target = cfg.objective.beta
        self.beta = cfg.objective.beta
        self.auto_balance = cfg.objective.auto_balance
        self.balanced = False
        weight = cfg.objective.dataset_weight
        if weight is None:
            check_choice(
                dataset,
                "data.name (for the authors' dataset_weight; or set objective.dataset_weight)",
                AUTHORS_DATASET_WEIGHTS,
            )
            weight = AUTHORS_DATASET_WEIGHTS[dataset]
        try:
            self.latent_loss = AuthorsLatentLoss(
                model.latent_dim, sigma_angle_weight=weight, **cfg.objective.loss_overrides
            )
        except TypeError as exc:
            raise ValueError(f"objective.loss_overrides: {exc}") from None
        self.latent_loss.to(next(model.parameters()).device)
        self._kwargs = _pass_validate_false(self.latent_loss.forward)
        # On a GPU the eager loss is dozens of tiny kernels; compiled, a few fused ones.
        self._latent_call = torch.compile(self.latent_loss) if cfg.train.compile else self.latent_loss

    def parameter_groups(self, model: nn.Module) -> dict[str, list[nn.Parameter]]:
        decoder = list(model.decoder.parameters())
        ids = {id(p) for p in decoder}
        # Everything not in the decoder (encoder, mu/logvar heads) is the encoder's.
        return {"encoder": [p for p in model.parameters() if id(p) not in ids], "decoder": decoder}

    def learning_rates(self, cfg: RunConfig) -> dict[str, float]:
        dec = cfg.optim.decoder_lr if cfg.optim.decoder_lr is not None else cfg.optim.lr
        return {"encoder": cfg.optim.lr, "decoder": dec}

    def compute(
        self, model: nn.Module, x: torch.Tensor, multiplier: float, generator: torch.Generator
    ) -> StepOutput:
        out = model(x, generator)
        mu, logvar = out.mu, out.logvar
        recon = _reconstruction(x, out.x_hat)
        latent = self._latent(mu, logvar)
        encoder_loss = AUTHORS_ENCODER_SCALE * (recon + self.beta * latent * multiplier)
        return StepOutput(
            {"encoder": encoder_loss, "decoder": recon},
            {"loss": encoder_loss, "reconstruction": recon, "latent": latent},
        )

    def end_epoch(self, epoch: int, means: dict[str, float]) -> None:
        if self.auto_balance and not self.balanced:
            self.beta = self.beta_target * means["reconstruction"] / (means["latent"] + 1e-3)
            self.balanced = True

    def state_dict(self) -> dict[str, Any]:
        return {"beta": self.beta, "balanced": self.balanced}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.beta = float(state["beta"])
        self.balanced = bool(state["balanced"])


OBJECTIVES: dict[str, type[StandardObjective]] = {
    "standard": StandardObjective,
    "compressed": CompressedObjective,
    "authors": AuthorsObjective,
}


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


def _model_config_dict(model: nn.Module) -> dict[str, Any]:
    mc = dataclasses.asdict(model.config)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in mc.items()}


def _load_split(cfg: RunConfig, split: str) -> Any:
    from spherevae.data import load_dataset

    ds = load_dataset(
        cfg.data.name, split, root=cfg.data.root, download=cfg.data.download, **cfg.data.options
    )
    limit = cfg.data.max_train if split == "train" else cfg.data.max_test
    if limit is not None and limit < ds.images.shape[0]:
        labels = ds.labels[:limit] if ds.labels is not None else None
        ds = dataclasses.replace(ds, images=ds.images[:limit], labels=labels)
    return ds


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"train.device={name!r} but CUDA is not available; use train.device=cpu")
    return torch.device(name)


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
    """Keep only the lines of epochs before ``epochs_done`` (a resumed run rewrites the rest)."""
    if not path.exists():
        return
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    kept = [ln for ln in lines if json.loads(ln)["epoch"] < epochs_done]
    path.write_text("".join(ln + "\n" for ln in kept))


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


def train(cfg: RunConfig, *, resume: bool = False) -> Path:
    """Train the run described by ``cfg``; return its directory.

    ``resume=True`` continues from ``<run_dir>/checkpoints/last.pt`` and gives the same
    weights as a run that was never stopped. Under ``torchrun`` every rank trains on
    its shard of each (global) batch of ``train.batch_size`` images; rank 0 writes.
    """
    from spherevae.data import BatchLoader

    t = cfg.train
    dist_info: DistInfo = init_distributed(t.device)
    device = _resolve_device(t.device)
    if device.type == "cuda" and dist_info.world_size > 1:
        device = torch.device("cuda", dist_info.local_rank)
    if t.batch_size % dist_info.world_size:
        raise ValueError(
            f"train.batch_size={t.batch_size} must be divisible by the world size {dist_info.world_size}"
        )
    run_dir = cfg.run_dir
    from spherevae.loggers import check_loggers, make_loggers

    check_loggers(_logger_names(t))  # a logger asked for but not installed: fail before work
    ckpt_path = run_dir / "checkpoints" / "last.pt"
    if resume and not ckpt_path.is_file():
        raise FileNotFoundError(f"cannot resume: {str(ckpt_path)!r} does not exist")
    if not resume and (run_dir / "metrics.jsonl").exists():
        raise ValueError(
            f"run directory {str(run_dir)!r} already holds a run; pass --resume or choose another train.run_name"
        )

    train_ds, test_ds = _load_split(cfg, "train"), _load_split(cfg, "test")
    model = build_model(cfg, tuple(train_ds.images.shape[1:])).to(device)
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
        state = load_checkpoint(ckpt_path, map_location=device)
        model.load_state_dict(state["model"])
        for n, opt in optimizers.items():
            opt.load_state_dict(state["optimizers"][n])
            schedulers[n].load_state_dict(state["schedulers"][n])
        scaler.load_state_dict(state["scaler"])
        objective.load_state_dict(state["objective"])
        noise.set_state(state["rng"]["noise"].cpu())  # generator states are CPU byte tensors
        last_good = int(state["epoch"])
        start_epoch = last_good + 1
    if dist_info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
        _truncate_metrics(run_dir / "metrics.jsonl", start_epoch)
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
            with open(run_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            for lg in loggers:
                lg.log_metrics(record, epoch)
            if t.progress and not on_tty:
                _LOG.info("%s: %s", run_dir.name, _epoch_line(record, t.epochs))
            if (epoch + 1) % t.checkpoint_every == 0 or epoch + 1 == t.epochs:
                save_checkpoint(
                    {
                        "epoch": epoch,
                        "model": model.state_dict(),
                        "model_config": _model_config_dict(model),
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
        save_checkpoint(
            {"model": model.state_dict(), "model_config": _model_config_dict(model)},
            run_dir / "model.pt",
        )
        for lg in loggers:
            for name in ("config.yaml", "metrics.jsonl", "model.pt"):
                lg.log_artifact(run_dir / name)
            lg.finalize("success")
    return run_dir


def _mean_over_ranks(means: dict[str, float], device: torch.device) -> dict[str, float]:
    import torch.distributed as dist

    v = torch.tensor(list(means.values()), device=device)
    dist.all_reduce(v)
    v /= dist.get_world_size()
    return dict(zip(means, v.tolist(), strict=True))


def load_run(
    run_dir: str | Path, *, device: str | torch.device = "cpu"
) -> tuple[RunConfig, nn.Module]:
    """The config and trained VAE (eval mode) of a run; falls back to the last checkpoint."""
    from spherevae.models import VAE, ModelConfig

    run_dir = Path(run_dir)
    cfg = load_config(run_dir / "config.yaml")
    path = run_dir / "model.pt"
    if not path.is_file():
        path = run_dir / "checkpoints" / "last.pt"
    state = load_checkpoint(path, map_location=device)
    mc = {k: tuple(v) if isinstance(v, list) else v for k, v in state["model_config"].items()}
    model = VAE(ModelConfig(**mc))
    model.load_state_dict(state["model"])
    return cfg, model.to(device).eval()
