"""Objectives: what the trainer minimises, one class per objective, one registry.

An objective turns a batch into the losses of its optimisers and the scalars the loop
reports (:class:`StepOutput`). It also declares what it needs from the rest of the
library, so that no other module keeps a parallel list of objective names:

- ``default_project_to_sphere``: whether ``z`` is projected to radius ``sqrt(n)`` (eq 8)
  when ``model.project_to_sphere`` is unset;
- ``default_auto_balance``: whether ``objective.auto_balance`` (unset) rebalances beta;
- ``default_schedule``: the latent-pressure schedule its paper setting uses;
- ``default_samplers``: its headline sampler and the prior of its latent space (the
  paper's samplers); evaluation adds every fitted sampler of the registry after them.

Add an objective: write a class with the :class:`Objective` surface (subclassing
:class:`StandardObjective` is the short way) and :func:`register_objective` it.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import nn

from spherevae._utils.validation import check_choice
from spherevae.training.config import RunConfig
from spherevae.training.distributed import all_gather_with_grad

if TYPE_CHECKING:
    from spherevae.models.adapter import VAEModel

__all__ = [
    "AUTHORS_DATASET_WEIGHTS",
    "AUTHORS_ENCODER_SCALE",
    "OBJECTIVES",
    "TERMS",
    "AuthorsObjective",
    "CompressedObjective",
    "Objective",
    "StandardObjective",
    "StepOutput",
    "register_objective",
]

TERMS = ("loss", "reconstruction", "latent")  # the scalars every objective reports


@dataclass
class StepOutput:
    """What one objective evaluation gives the loop.

    ``losses`` maps optimiser name -> the loss whose gradient that optimiser follows;
    ``terms`` holds the reported scalars (keys :data:`TERMS`), still on the device.
    """

    losses: dict[str, torch.Tensor]
    terms: dict[str, torch.Tensor]


@runtime_checkable
class Objective(Protocol):
    """The surface the trainer uses (see the module docstring for the class attributes).

    ``compute`` runs inside the training step: it must not read values back to the host.
    Its ``multiplier`` (the schedule's factor) is a 0-dim float32 tensor on the device
    when the trainer calls it (a float elsewhere): use it in tensor arithmetic only.
    ``end_epoch`` receives the epoch's mean :data:`TERMS` (host floats). ``state_dict`` /
    ``load_state_dict`` hold what a resume needs (e.g. an auto-balanced beta): plain JSON
    values only, so checkpoints never carry objects.
    """

    default_project_to_sphere: ClassVar[bool]
    default_auto_balance: ClassVar[bool]
    default_schedule: ClassVar[str]
    default_samplers: ClassVar[tuple[str, ...]]
    beta: float

    def __init__(self, cfg: RunConfig, model: VAEModel, dataset: str) -> None: ...

    def parameter_groups(self, model: nn.Module) -> dict[str, list[nn.Parameter]]: ...

    def learning_rates(self, cfg: RunConfig) -> dict[str, float]: ...

    def compute(
        self, model: nn.Module, x: torch.Tensor, multiplier: float | torch.Tensor, generator: torch.Generator
    ) -> StepOutput: ...

    def end_epoch(self, epoch: int, means: dict[str, float]) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...



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

    default_project_to_sphere: ClassVar[bool] = False
    default_auto_balance: ClassVar[bool] = False
    default_schedule: ClassVar[str] = "constant"
    # The paper's headline for the standard VAE: N(0, I) prior samples.
    default_samplers: ClassVar[tuple[str, ...]] = ("prior",)
    # Whether a latent prior loss takes objective.loss_overrides (the KLD takes none).
    takes_loss_overrides: ClassVar[bool] = False

    def __init__(self, cfg: RunConfig, model: VAEModel, dataset: str) -> None:
        from spherevae.losses.vae import vae_loss

        if cfg.objective.loss_overrides and not self.takes_loss_overrides:
            # Accepted and ignored, they would be recorded in config.yaml as if they acted.
            raise ValueError(f"objective.loss_overrides {sorted(cfg.objective.loss_overrides)} do "
                             f"nothing with objective.name {cfg.objective.name!r}: its KLD has no options")

        self._vae_loss = vae_loss
        self._vae_kwargs = _pass_validate_false(vae_loss)
        self._init_beta(cfg)

    def _init_beta(self, cfg: RunConfig) -> None:
        """``beta``, and the auto-balance (``objective.auto_balance``, ``None``: the
        objective's default): epoch 0 runs with ``beta = objective.beta``; after it,
        ``beta = objective.beta * mean(MSE) / (mean(latent) + 1e-3)`` over that epoch,
        then held fixed (the authors' code; offered to every objective)."""
        self.beta_target = cfg.objective.beta
        self.beta = cfg.objective.beta
        chosen = cfg.objective.auto_balance
        self.auto_balance = self.default_auto_balance if chosen is None else bool(chosen)
        self.balanced = False

    def parameter_groups(self, model: nn.Module) -> dict[str, list[nn.Parameter]]:
        """The trainable parameters (frozen ones, ``requires_grad=False``, are left out:
        an optimiser or ``backward(inputs=...)`` must not see them)."""
        return {"model": [p for p in model.parameters() if p.requires_grad]}

    def learning_rates(self, cfg: RunConfig) -> dict[str, float]:
        return {"model": cfg.optim.lr}

    def compute(
        self, model: nn.Module, x: torch.Tensor, multiplier: float | torch.Tensor, generator: torch.Generator
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
        """Hook after each epoch with the epoch's mean terms: the beta auto-balance."""
        if self.auto_balance and not self.balanced:
            self.beta = self.beta_target * means["reconstruction"] / (means["latent"] + 1e-3)
            self.balanced = True

    def state_dict(self) -> dict[str, Any]:
        return {"beta": self.beta, "balanced": self.balanced}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.beta = float(state["beta"])
        # Checkpoints from before the auto-balance was shared hold only beta.
        self.balanced = bool(state.get("balanced", False))


class CompressedObjective(StandardObjective):
    """The paper's eq 6: ``MSE + beta * m * HypersphericalPriorLoss(mu, sigma)``.

    The prior loss uses batch statistics, so under DDP it is computed on ``(mu, sigma)``
    gathered from all ranks (with gradients). ``z`` is projected to radius ``sqrt(n)``
    by default (paper eq 8: ``model.project_to_sphere`` unset means on).
    """

    default_project_to_sphere: ClassVar[bool] = True
    default_schedule: ClassVar[str] = "quench_anneal"
    # Latents on the sphere: the paper's vMF is the headline (Fig 1), then the uniform prior.
    default_samplers: ClassVar[tuple[str, ...]] = ("vmf", "prior_sphere")
    takes_loss_overrides: ClassVar[bool] = True

    def __init__(self, cfg: RunConfig, model: VAEModel, dataset: str) -> None:
        from spherevae.losses.prior import HypersphericalPriorLoss

        self._init_beta(cfg)
        self.latent_loss = self._make_latent_loss(cfg, model, dataset, HypersphericalPriorLoss)
        self.latent_loss.to(next(model.parameters()).device)
        self._kwargs = _pass_validate_false(self.latent_loss.forward)
        # On a GPU the eager loss is dozens of tiny kernels; compiled, a few fused ones.
        self._latent_call = torch.compile(self.latent_loss) if cfg.train.compile else self.latent_loss

    @staticmethod
    def _make_latent_loss(cfg: RunConfig, model: VAEModel, dataset: str, cls: Any) -> nn.Module:
        o = cfg.objective
        try:
            return cls(model.latent_dim, preset=o.loss_preset, **o.loss_overrides)
        except TypeError as exc:
            raise ValueError(f"objective.loss_overrides: {exc}") from None

    def _latent(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        mu_all = all_gather_with_grad(mu.float())
        sigma_all = all_gather_with_grad(torch.exp(0.5 * logvar.float()))
        return self._latent_call(mu_all, sigma_all, **self._kwargs)

    def _recon_and_latent(
        self, model: nn.Module, x: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out = model(x, generator)
        return _reconstruction(x, out.x_hat), self._latent(out.mu, out.logvar)

    def compute(
        self, model: nn.Module, x: torch.Tensor, multiplier: float | torch.Tensor, generator: torch.Generator
    ) -> StepOutput:
        recon, latent = self._recon_and_latent(model, x, generator)
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


def _warn_if_schedule_differs(cfg: RunConfig, compression: str) -> None:
    """The authors' quench drops back to m = 1 only with full compression: say so when the
    configured schedule does otherwise (a deliberate ablation stays possible)."""
    if cfg.schedule.name != "quench_anneal":
        return
    anneal = bool(cfg.schedule.params.get("anneal", True))
    if anneal != (compression == "full"):
        warnings.warn(
            f"objective authors with compression={compression!r}: the authors' code "
            f"{'anneals' if compression == 'full' else 'never anneals'} its quench; set "
            f"schedule.params.anneal={str(compression == 'full').lower()} to match it",
            stacklevel=3,
        )


class AuthorsObjective(CompressedObjective):
    """What the authors' released code does (docs/objectives.md), training side.

    - Two optimisers, two updates per batch. The encoder follows
      ``0.001 * (MSE + beta * latent * m)`` with the decoder frozen; the decoder follows
      the reconstruction loss of the DETACHED ``z`` with the encoder frozen. Both
      gradients are taken at the same parameters from one forward pass (``backward(
      inputs=...)``), which is what "decoder step on detached z after the encoder
      step" computes: the decoder has not changed when the encoder steps, and the
      detached ``z`` was made before the encoder stepped.
    - beta auto-balance on by default (see :meth:`StandardObjective._init_beta`).
    - The latent penalty is :class:`~spherevae.losses.authors.AuthorsLatentLoss`; its options
      (``compression``, ``sigma_radius_factor``, ``tail_eps``, ``ones_profile``) go in
      ``objective.loss_overrides``. With ``compression: half`` their quench never drops
      back (``schedule.params.anneal: false``).
    """

    default_auto_balance: ClassVar[bool] = True

    def __init__(self, cfg: RunConfig, model: VAEModel, dataset: str) -> None:
        from spherevae.losses.authors import AuthorsLatentLoss

        self._init_beta(cfg)
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
        _warn_if_schedule_differs(cfg, self.latent_loss.compression)

    def parameter_groups(self, model: nn.Module) -> dict[str, list[nn.Parameter]]:
        submodule = getattr(model, "decoder", None)
        if not isinstance(submodule, nn.Module):
            raise ValueError(
                "objective authors updates the decoder on its own: the model needs a "
                "`decoder` submodule holding the decoder's parameters"
            )
        decoder = [p for p in submodule.parameters() if p.requires_grad]
        ids = {id(p) for p in submodule.parameters()}
        # Everything not in the decoder (encoder, mu/logvar heads) is the encoder's;
        # frozen parameters are in neither.
        encoder = [p for p in model.parameters() if id(p) not in ids and p.requires_grad]
        return {"encoder": encoder, "decoder": decoder}

    def learning_rates(self, cfg: RunConfig) -> dict[str, float]:
        dec = cfg.optim.decoder_lr if cfg.optim.decoder_lr is not None else cfg.optim.lr
        return {"encoder": cfg.optim.lr, "decoder": dec}

    def compute(
        self, model: nn.Module, x: torch.Tensor, multiplier: float | torch.Tensor, generator: torch.Generator
    ) -> StepOutput:
        recon, latent = self._recon_and_latent(model, x, generator)
        encoder_loss = AUTHORS_ENCODER_SCALE * (recon + self.beta * latent * multiplier)
        return StepOutput(
            {"encoder": encoder_loss, "decoder": recon},
            {"loss": encoder_loss, "reconstruction": recon, "latent": latent},
        )



OBJECTIVES: dict[str, type[Objective]] = {
    "standard": StandardObjective,
    "compressed": CompressedObjective,
    "authors": AuthorsObjective,
}


def register_objective(name: str, cls: type[Objective]) -> None:
    """Add ``cls`` to :data:`OBJECTIVES` under ``name`` (configs then accept it)."""
    if name in OBJECTIVES:
        raise ValueError(f"objective {name!r} is already registered; choose another name")
    missing = [a for a in ("default_project_to_sphere", "default_auto_balance",
                           "default_schedule", "default_samplers") if not hasattr(cls, a)]
    if missing:
        raise TypeError(f"objective class {cls.__name__} lacks the class attributes {missing}")
    OBJECTIVES[name] = cls
