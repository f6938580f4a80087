"""The architecture of the ResNet VAE as data: :class:`ModelConfig` (validated on
construction) and the named presets ``MODEL_PRESETS``. The networks built from it are in
:mod:`spherevae.models.vae`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from spherevae._utils.validation import check_choice
from spherevae.models.layers import BLOCKS, NORMS, UPSAMPLERS

__all__ = [
    "MODEL_PRESETS",
    "ModelConfig",
]


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a :class:`VAE`; validated on construction.

    Attributes:
        image_shape: ``(C, H, W)`` of the inputs; ``H`` and ``W`` divisible by ``2**len(channels)``.
        latent_dim: ``n >= 2``, the number of latent dimensions.
        channels: channels of each resolution stage, shallowest first; one 2x
            down/upsampling per stage.
        blocks_per_stage: residual blocks per stage (``>= 0``) in encoder and decoder.
        project_to_sphere: renormalise sampled ``z`` to radius ``sqrt(n)`` (paper eq 8).
        norm: a key of :data:`NORMS`; ``"group"`` by default (see :mod:`spherevae.models.vae`).
        norm_groups: groups of GroupNorm; must divide every entry of ``channels``.
        block: a key of :data:`BLOCKS`: ``"preact"`` or ``"postact"`` residual blocks.
        upsample: a key of :data:`UPSAMPLERS`: ``"nearest"`` (+ conv) or ``"transpose"`` conv.
        init_sigma: the posterior ``sigma`` of every input at initialisation.
        logvar_min, logvar_max: soft limits of ``logvar`` (``sigma`` in
            ``[exp(min/2), exp(max/2)]``, about ``[3.4e-4, 55]`` by default).
    """

    image_shape: tuple[int, int, int] = (1, 28, 28)
    latent_dim: int = 128
    channels: tuple[int, ...] = (32, 64)
    blocks_per_stage: int = 1
    project_to_sphere: bool = False
    norm: str = "group"
    norm_groups: int = 8
    block: str = "preact"
    upsample: str = "nearest"
    init_sigma: float = 0.5
    logvar_min: float = -16.0
    logvar_max: float = 8.0

    def __post_init__(self) -> None:
        # Lists (from YAML or JSON) become tuples so the frozen config stays hashable.
        object.__setattr__(self, "image_shape", _int_tuple(self.image_shape, "image_shape"))
        object.__setattr__(self, "channels", _int_tuple(self.channels, "channels"))
        self._validate()

    def _validate(self) -> None:
        if len(self.image_shape) != 3 or min(self.image_shape) < 1:
            raise ValueError(
                f"ModelConfig.image_shape must be 3 positive ints (C, H, W), got {self.image_shape}"
            )
        if not self.channels or min(self.channels) < 1:
            raise ValueError(
                f"ModelConfig.channels must be a non-empty tuple of positive ints, got {self.channels}"
            )
        factor = 2 ** len(self.channels)
        _, height, width = self.image_shape
        if height % factor or width % factor:
            raise ValueError(
                f"ModelConfig.channels has {len(self.channels)} stages, so the images' H and W must "
                f"be divisible by 2**len(channels) = {factor}, got (H, W) = ({height}, {width}); "
                f"use fewer stages or another image size"
            )
        _check_int(self.latent_dim, "latent_dim", minimum=2)
        _check_int(self.blocks_per_stage, "blocks_per_stage", minimum=0)
        _check_int(self.norm_groups, "norm_groups", minimum=1)
        if not isinstance(self.project_to_sphere, bool):
            raise TypeError(
                f"ModelConfig.project_to_sphere must be a bool, got {type(self.project_to_sphere).__name__}"
            )
        check_choice(self.norm, "ModelConfig.norm", NORMS)
        check_choice(self.block, "ModelConfig.block", BLOCKS)
        check_choice(self.upsample, "ModelConfig.upsample", UPSAMPLERS)
        if self.norm == "group" and any(c % self.norm_groups for c in self.channels):
            raise ValueError(
                f"ModelConfig.norm_groups must divide every entry of channels with norm='group', "
                f"got norm_groups={self.norm_groups} and channels={self.channels}"
            )
        if not (math.isfinite(self.logvar_min) and math.isfinite(self.logvar_max)
                and self.logvar_min < self.logvar_max):
            raise ValueError(
                f"ModelConfig.logvar_min < logvar_max must be finite, "
                f"got logvar_min={self.logvar_min}, logvar_max={self.logvar_max}"
            )
        lo, hi = math.exp(0.5 * self.logvar_min), math.exp(0.5 * self.logvar_max)
        if not lo < self.init_sigma < hi:
            raise ValueError(
                f"ModelConfig.init_sigma must lie strictly inside (exp(logvar_min/2), "
                f"exp(logvar_max/2)) = ({lo:.3g}, {hi:.3g}), got {self.init_sigma}"
            )

    @property
    def num_stages(self) -> int:
        return len(self.channels)

    @property
    def bottleneck_shape(self) -> tuple[int, int, int]:
        """``(channels[-1], H / 2**s, W / 2**s)``: the encoder's last feature map."""
        _, height, width = self.image_shape
        factor = 2**self.num_stages
        return self.channels[-1], height // factor, width // factor

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> ModelConfig:
        """The preset ``name`` of :data:`MODEL_PRESETS` with some fields replaced.

        Example: ``ModelConfig.from_preset("cifar10", latent_dim=1000, project_to_sphere=True)``.
        """
        check_choice(name, "preset", MODEL_PRESETS)
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise ValueError(f"unknown ModelConfig field(s) {unknown}; the fields are {sorted(fields)}")
        return cls(**{**MODEL_PRESETS[name], **overrides})


def _int_tuple(value: Any, name: str) -> tuple[int, ...]:
    try:
        items = tuple(value)
    except TypeError:
        raise TypeError(f"ModelConfig.{name} must be a tuple of ints, got {value!r}") from None
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        raise TypeError(f"ModelConfig.{name} must be a tuple of ints, got {value!r}")
    return items


def _check_int(value: Any, name: str, *, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"ModelConfig.{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"ModelConfig.{name} must be an int >= {minimum}, got {value}")


MODEL_PRESETS: dict[str, dict[str, Any]] = {
    # 8x8 grey digits, < 50k parameters: for tests.
    "tiny": dict(image_shape=(1, 8, 8), latent_dim=4, channels=(8, 16), blocks_per_stage=1,
                 norm_groups=4),
    # Paper sec 4.3 uses n = 128 on MNIST.
    "mnist": dict(image_shape=(1, 28, 28), latent_dim=128, channels=(32, 64), blocks_per_stage=2),
    # Small enough for an epoch of Fashion-MNIST at batch 128 in well under a minute on 2
    # CPU cores (docs/bench/models.md).
    "fashion-mnist-cpu": dict(image_shape=(1, 28, 28), latent_dim=32, channels=(8, 16),
                              blocks_per_stage=1, norm_groups=4),
    # Paper: n = 200 (and up to 1000) on CIFAR10.
    "cifar10": dict(image_shape=(3, 32, 32), latent_dim=200, channels=(64, 128, 256),
                    blocks_per_stage=2),
    # Paper appendix A.14: n = 1000 on CelebA64.
    "celeba64": dict(image_shape=(3, 64, 64), latent_dim=1000, channels=(64, 128, 256, 256),
                     blocks_per_stage=2),
}
"""Named architectures: keyword arguments of :class:`ModelConfig`."""
