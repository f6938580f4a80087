"""Objectives: what the trainer minimises, as ``nn.Module``\\ s, one registry.

An objective turns a batch into the losses of its optimisers and the scalars the loop
reports (:class:`StepOutput`). It is an ``nn.Module``: its latent prior loss is a
submodule whose targets and gains are buffers, so ``objective.to(device)``,
``.to(torch.float64)``, ``.to("meta")`` and ``state_dict()`` act on it like on any module
(inside a ``lightning.LightningModule`` it is one more child). It is built from the few
numbers it needs (latent size, beta, loss preset and options), not from a run config;
:meth:`Objective.from_config` is the one place a :class:`~spherevae.training.config.RunConfig`
is read, for the trainer.

Each objective also declares what the rest of the library asks of it, so that no other
module keeps a parallel list of objective names:

- ``default_project_to_sphere``: whether ``z`` is projected to radius ``sqrt(n)`` (eq 8)
  when ``model.project_to_sphere`` is unset;
- ``default_auto_balance``: whether ``objective.auto_balance`` (unset) rebalances beta;
- ``default_schedule``: the latent-pressure schedule its paper setting uses;
- ``default_samplers``: its headline sampler and the prior of its latent space (the
  paper's samplers); evaluation adds every fitted sampler of the registry after them;
- ``takes_loss_options``: whether ``objective.loss_overrides`` means anything to it.

Add an objective: subclass :class:`Objective` (or one of the three below), implement
:meth:`~Objective.compute` (and :meth:`~Objective.from_config` if its constructor takes
more than ``beta`` and ``auto_balance``), and :func:`register_objective` it
(docs/design.md, "Adding an objective").

Example::

    >>> import torch
    >>> from spherevae.training.objectives import CompressedObjective
    >>> objective = CompressedObjective(latent_dim=8, beta=1.0)
    >>> objective.latent_loss.mu_angle_mean_target.shape   # a buffer: one target per angle
    torch.Size([7])
    >>> objective.to(torch.float64).latent_loss.mu_angle_mean_target.dtype
    torch.float64
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from spherevae._utils.validation import check_choice
from spherevae.losses.authors import AUTHORS_SIGMA_ANGLE_WEIGHTS, AuthorsLatentLoss
from spherevae.losses.prior import HypersphericalPriorLoss
from spherevae.losses.vae import vae_loss
from spherevae.training.distributed import all_gather_with_grad

if TYPE_CHECKING:  # type names only: the config module imports this registry
    from spherevae.training.config import OptimConfig, RunConfig

__all__ = [
    "AUTHORS_ENCODER_SCALE",
    "OBJECTIVES",
    "TERMS",
    "AuthorsObjective",
    "CompressedObjective",
    "Objective",
    "StandardObjective",
    "StepOutput",
    "build_objective",
    "objective_class",
    "register_objective",
]

TERMS = ("loss", "reconstruction", "latent")  # the scalars every objective reports


@dataclass
class StepOutput:
    """What one objective evaluation gives the loop.

    ``losses`` maps optimiser name -> the loss whose gradient that optimiser follows (the
    ``name`` of an entry of :meth:`Objective.configure_optimizers`); ``terms`` holds the
    reported scalars (keys :data:`TERMS`), 0-dim tensors still on the device.
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


def _loss_options(cls: type, kwargs: dict[str, Any], **fixed: Any) -> nn.Module:
    """``cls(**fixed, **kwargs)``; an unknown option is one ``ValueError`` naming the field."""
    try:
        return cls(**fixed, **kwargs)
    except TypeError as exc:
        raise ValueError(f"objective.loss_overrides: {exc}") from None


class Objective(nn.Module):
    """The surface the trainer uses; subclasses implement :meth:`compute`.

    Args:
        beta: the latent term's weight (paper eq 2/6); ``>= 0``.
        auto_balance: after epoch 0, ``beta <- beta * mean(MSE) / (mean(latent) + 1e-3)`` of
            that epoch, then held fixed (the authors' code; offered to every objective).
            ``None``: the class's ``default_auto_balance``.

    ``beta`` and whether it was balanced are plain floats (``beta * multiplier`` stays in
    the multiplier's dtype) kept in the module's state through ``get_extra_state``, so
    ``state_dict()``/``load_state_dict()`` carry them with the buffers (tensors and JSON
    values only: checkpoints never carry objects).

    :meth:`compute` runs inside the training step: it must not read values back to the
    host. Its ``multiplier`` (the schedule's factor) is a 0-dim float32 tensor on the
    device when the trainer calls it (a float elsewhere): use it in tensor arithmetic only.
    """

    default_project_to_sphere: ClassVar[bool] = False
    default_auto_balance: ClassVar[bool] = False
    default_schedule: ClassVar[str] = "constant"
    default_samplers: ClassVar[tuple[str, ...]] = ("prior",)
    takes_loss_options: ClassVar[bool] = False

    def __init__(self, *, beta: float = 1.0, auto_balance: bool | None = None) -> None:
        super().__init__()
        if not isinstance(beta, int | float) or isinstance(beta, bool) or not beta >= 0:
            raise ValueError(f"beta must be a number >= 0, got {beta!r}")
        self.beta_target = float(beta)
        self.beta = float(beta)
        self.auto_balance = self.default_auto_balance if auto_balance is None else bool(auto_balance)
        self.balanced = False

    @classmethod
    def from_config(cls, cfg: RunConfig, latent_dim: int) -> Objective:
        """The objective ``cfg.objective`` describes, for latents of size ``latent_dim``.

        The base version passes ``beta`` and ``auto_balance`` and refuses
        ``objective.loss_overrides`` (accepted and ignored, they would be recorded in
        ``config.yaml`` as if they acted); override it when the constructor takes more.
        """
        o = cfg.objective
        if o.loss_overrides and not cls.takes_loss_options:
            raise ValueError(f"objective.loss_overrides {sorted(o.loss_overrides)} do "
                             f"nothing with objective.name {o.name!r}: its KLD has no options")
        return cls(beta=o.beta, auto_balance=o.auto_balance)

    # --- what the trainer calls ---------------------------------------------------------

    def compute(
        self, model: nn.Module, x: torch.Tensor, multiplier: float | torch.Tensor, generator: torch.Generator
    ) -> StepOutput:
        """Forward ``x`` ``(B, ...)`` through ``model`` and return the losses and terms."""
        raise NotImplementedError(f"{type(self).__name__} must implement compute()")

    def forward(
        self, model: nn.Module, x: torch.Tensor, multiplier: float | torch.Tensor, generator: torch.Generator
    ) -> StepOutput:
        """``objective(model, x, multiplier, generator)`` is :meth:`compute`."""
        return self.compute(model, x, multiplier, generator)

    def parameter_groups(self, model: nn.Module) -> dict[str, list[nn.Parameter]]:
        """Optimiser name -> the trainable parameters it updates (frozen ones,
        ``requires_grad=False``, are left out: an optimiser or ``backward(inputs=...)``
        must not see them). One group, ``"model"``, here."""
        return {"model": [p for p in model.parameters() if p.requires_grad]}

    def learning_rate(self, group: str, optim: OptimConfig) -> float:
        """The learning rate of parameter group ``group`` (``optim.lr`` here)."""
        del group
        return optim.lr

    def configure_optimizers(self, model: nn.Module, optim: OptimConfig) -> list[dict[str, Any]]:
        """The optimisers, in the list-of-dicts shape of Lightning's ``configure_optimizers``.

        Returns one ``{"name", "optimizer", "lr_scheduler"}`` dict per parameter group:
        ``name`` is the key of that optimiser's loss in :class:`StepOutput` ``.losses``,
        ``optimizer`` a ``torch.optim.Optimizer`` over the group (the trainer reads the
        group's parameters back from its ``param_groups``), ``lr_scheduler`` an LR
        scheduler stepped once per epoch, or ``None``. The default: Adam (``optim.lr``,
        ``betas``, ``weight_decay``) with ``ExponentialLR(optim.lr_decay)`` per group.
        """
        out = []
        for name, params in self.parameter_groups(model).items():
            lr = self.learning_rate(name, optim)
            opt = torch.optim.Adam(params, lr=lr, betas=optim.betas, weight_decay=optim.weight_decay)
            sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=optim.lr_decay)
            out.append({"name": name, "optimizer": opt, "lr_scheduler": sched})
        return out

    def end_epoch(self, epoch: int, means: dict[str, float]) -> None:
        """Hook after each epoch with the epoch's mean :data:`TERMS` (host floats): the
        beta auto-balance."""
        if self.auto_balance and not self.balanced:
            self.beta = self.beta_target * means["reconstruction"] / (means["latent"] + 1e-3)
            self.balanced = True

    def get_extra_state(self) -> dict[str, Any]:
        return {"beta": self.beta, "balanced": self.balanced}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.beta = float(state["beta"])
        self.balanced = bool(state["balanced"])

    def extra_repr(self) -> str:
        return f"beta={self.beta:g}, auto_balance={self.auto_balance}"


class StandardObjective(Objective):
    """beta-VAE (paper eq 2): ``MSE + beta * m * KLD``, one Adam for the whole model.

    Example::

        >>> obj = StandardObjective(beta=0.5)
        >>> obj.beta, obj.default_samplers
        (0.5, ('prior',))
    """

    def __init__(self, *, beta: float = 1.0, auto_balance: bool | None = None) -> None:
        super().__init__(beta=beta, auto_balance=auto_balance)
        self._vae_kwargs = _pass_validate_false(vae_loss)

    def compute(
        self, model: nn.Module, x: torch.Tensor, multiplier: float | torch.Tensor, generator: torch.Generator
    ) -> StepOutput:
        out = model(x, generator)
        terms = vae_loss(x.float(), out.x_hat.float(), out.mu.float(), out.logvar.float(), 1.0,
                         **self._vae_kwargs)
        total = terms.reconstruction + (self.beta * multiplier) * terms.latent
        return StepOutput(
            {"model": total},
            {"loss": total, "reconstruction": terms.reconstruction, "latent": terms.latent},
        )


class CompressedObjective(Objective):
    """The paper's eq 6: ``MSE + beta * m * HypersphericalPriorLoss(mu, sigma)``.

    Args:
        latent_dim: ``n``, the latents' size (the loss's targets are per angle).
        beta, auto_balance: see :class:`Objective`.
        preset: a :data:`~spherevae.losses.targets.PRESETS` name (``"full"``: the paper's
            compression toward the pole).
        loss_options: keyword options of :class:`~spherevae.losses.prior.HypersphericalPriorLoss`
            (targets, gains, switches, ``backend``): ``objective.loss_overrides`` in a config.
        compile: ``torch.compile`` the latent loss (on a GPU: a few fused kernels).

    The prior loss uses batch statistics, so under DDP it is computed on ``(mu, sigma)``
    gathered from all ranks (with gradients). ``z`` is projected to radius ``sqrt(n)``
    by default (paper eq 8: ``model.project_to_sphere`` unset means on).

    Example (one step of a packaged VAE; the objective is one more module)::

        >>> import torch
        >>> from spherevae.models import VAE, ModelConfig
        >>> from spherevae.training import OptimConfig
        >>> model = VAE(ModelConfig.from_preset("tiny", image_shape=(1, 8, 8), latent_dim=4,
        ...                                     project_to_sphere=True))
        >>> objective = CompressedObjective(latent_dim=4, beta=1.0)
        >>> out = objective(model, torch.rand(16, 1, 8, 8), 1.0, torch.Generator().manual_seed(0))
        >>> sorted(out.terms), sorted(out.losses)
        (['latent', 'loss', 'reconstruction'], ['model'])
        >>> [e["name"] for e in objective.configure_optimizers(model, OptimConfig())]
        ['model']
    """

    default_project_to_sphere: ClassVar[bool] = True
    default_schedule: ClassVar[str] = "quench_anneal"
    # Latents on the sphere: the paper's vMF is the headline (Fig 1), then the uniform prior.
    default_samplers: ClassVar[tuple[str, ...]] = ("vmf", "prior_sphere")
    takes_loss_options: ClassVar[bool] = True

    def __init__(self, latent_dim: int, *, beta: float = 1.0, auto_balance: bool | None = None,
                 preset: str = "full", loss_options: dict[str, Any] | None = None,
                 compile: bool = False) -> None:
        super().__init__(beta=beta, auto_balance=auto_balance)
        self.latent_loss = _loss_options(HypersphericalPriorLoss, dict(loss_options or {}),
                                         latent_dim=latent_dim, preset=preset)
        self._use_compile = compile
        self._finish_latent_loss()

    @classmethod
    def from_config(cls, cfg: RunConfig, latent_dim: int) -> Objective:
        o = cfg.objective
        return cls(latent_dim, beta=o.beta, auto_balance=o.auto_balance, preset=o.loss_preset,
                   loss_options=o.loss_overrides, compile=cfg.train.compile)

    def _finish_latent_loss(self) -> None:
        self._kwargs = _pass_validate_false(self.latent_loss.forward)
        # On a GPU the eager loss is dozens of tiny kernels; compiled, a few fused ones.
        self._latent_call = torch.compile(self.latent_loss) if self._use_compile else self.latent_loss

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
            stacklevel=4,
        )


class AuthorsObjective(CompressedObjective):
    """What the authors' released code does (docs/objectives.md), training side.

    Args:
        latent_dim, beta, auto_balance, compile: see :class:`CompressedObjective`
            (auto-balance is on by default here).
        sigma_angle_weight: their ``W_sigma`` (:data:`AUTHORS_SIGMA_ANGLE_WEIGHTS` per data set).
        loss_options: keyword options of :class:`~spherevae.losses.authors.AuthorsLatentLoss`
            (``compression``, ``sigma_radius_factor``, ``tail_eps``, ``ones_profile``).

    - Two optimisers, two updates per batch. The encoder follows
      ``0.001 * (MSE + beta * latent * m)`` with the decoder frozen; the decoder follows
      the reconstruction loss of the DETACHED ``z`` with the encoder frozen. Both
      gradients are taken at the same parameters from one forward pass (``backward(
      inputs=...)``), which is what "decoder step on detached z after the encoder
      step" computes: the decoder has not changed when the encoder steps, and the
      detached ``z`` was made before the encoder stepped.
    - With ``compression: half`` their quench never drops back
      (``schedule.params.anneal: false``); :meth:`from_config` warns otherwise.
    """

    default_auto_balance: ClassVar[bool] = True

    def __init__(self, latent_dim: int, *, sigma_angle_weight: float, beta: float = 1.0,
                 auto_balance: bool | None = None, loss_options: dict[str, Any] | None = None,
                 compile: bool = False) -> None:
        Objective.__init__(self, beta=beta, auto_balance=auto_balance)
        self.latent_loss = _loss_options(AuthorsLatentLoss, dict(loss_options or {}),
                                         latent_dim=latent_dim, sigma_angle_weight=sigma_angle_weight)
        self._use_compile = compile
        self._finish_latent_loss()

    @classmethod
    def from_config(cls, cfg: RunConfig, latent_dim: int) -> Objective:
        o = cfg.objective
        weight = o.dataset_weight
        if weight is None:
            check_choice(
                cfg.data.name,
                "data.name (for the authors' dataset_weight; or set objective.dataset_weight)",
                AUTHORS_SIGMA_ANGLE_WEIGHTS,
            )
            weight = AUTHORS_SIGMA_ANGLE_WEIGHTS[cfg.data.name]
        objective = cls(latent_dim, sigma_angle_weight=weight, beta=o.beta, auto_balance=o.auto_balance,
                        loss_options=o.loss_overrides, compile=cfg.train.compile)
        _warn_if_schedule_differs(cfg, str(objective.latent_loss.compression))
        return objective

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

    def learning_rate(self, group: str, optim: OptimConfig) -> float:
        if group == "decoder" and optim.decoder_lr is not None:
            return optim.decoder_lr
        return optim.lr

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
    """Add ``cls`` (an :class:`Objective` subclass) to :data:`OBJECTIVES` under ``name``
    (configs then accept ``objective.name: <name>``)."""
    if name in OBJECTIVES:
        raise ValueError(f"objective {name!r} is already registered; choose another name")
    if not (isinstance(cls, type) and issubclass(cls, Objective)):
        raise TypeError(f"an objective must subclass spherevae.training.objectives.Objective, got {cls!r}")
    OBJECTIVES[name] = cls


def objective_class(name: str, what: str = "objective.name") -> type[Objective]:
    """The registered objective class ``name`` (a ``ValueError`` naming ``what`` lists the
    known names)."""
    check_choice(name, what, OBJECTIVES)
    return OBJECTIVES[name]


def build_objective(cfg: RunConfig, latent_dim: int) -> Objective:
    """The objective of ``cfg`` for latents of size ``latent_dim``
    (``objective_class(cfg.objective.name).from_config(cfg, latent_dim)``)."""
    return objective_class(cfg.objective.name).from_config(cfg, latent_dim)
