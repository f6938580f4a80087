"""Building blocks of the ResNet encoder and decoder, in registries by name: the
normalisation layers (``NORMS``), the residual blocks (``BLOCKS``) and the 2x upsampling
layers (``UPSAMPLERS``) that :class:`~spherevae.models.config.ModelConfig`'s ``norm``, ``block``
and ``upsample`` fields choose from. Adding one is adding an entry.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = [
    "BLOCKS",
    "NORMS",
    "UPSAMPLERS",
    "PostActBlock",
    "PreActBlock",
]


def _batch_norm(channels: int, groups: int) -> nn.Module:
    return nn.BatchNorm2d(channels)


def _group_norm(channels: int, groups: int) -> nn.Module:
    return nn.GroupNorm(groups, channels)


NORMS: dict[str, Callable[[int, int], nn.Module]] = {
    "batch": _batch_norm,
    "group": _group_norm,
}
"""Normalisation layers by name: ``factory(channels, groups) -> nn.Module``."""


def _conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False)


class PreActBlock(nn.Module):
    """Pre-activation residual block (He et al. 2016): ``x + conv(act(norm(conv(act(norm(x))))))``.

    Shape-preserving: ``(B, channels, H, W) -> (B, channels, H, W)``.
    """

    def __init__(self, channels: int, norm: Callable[[int], nn.Module]) -> None:
        super().__init__()
        self.body = nn.Sequential(
            norm(channels), nn.SiLU(), _conv3x3(channels, channels),
            norm(channels), nn.SiLU(), _conv3x3(channels, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class PostActBlock(nn.Module):
    """Post-activation residual block (He et al. 2015): ``act(x + norm(conv(act(norm(conv(x))))))``.

    Shape-preserving: ``(B, channels, H, W) -> (B, channels, H, W)``.
    """

    def __init__(self, channels: int, norm: Callable[[int], nn.Module]) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv3x3(channels, channels), norm(channels), nn.SiLU(),
            _conv3x3(channels, channels), norm(channels),
        )
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.body(x))


BLOCKS: dict[str, type[nn.Module]] = {"preact": PreActBlock, "postact": PostActBlock}
"""Residual block classes by name: ``cls(channels, norm)``."""


def _nearest_upsample(c_in: int, c_out: int) -> nn.Module:
    # Nearest-neighbour then a 3x3 conv: no checkerboard artefacts.
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), _conv3x3(c_in, c_out))


def _transpose_upsample(c_in: int, c_out: int) -> nn.Module:
    # kernel 4, stride 2, padding 1 doubles H and W exactly.
    return nn.ConvTranspose2d(c_in, c_out, kernel_size=4, stride=2, padding=1, bias=False)


UPSAMPLERS: dict[str, Callable[[int, int], nn.Module]] = {
    "nearest": _nearest_upsample,
    "transpose": _transpose_upsample,
}
"""2x upsampling layers by name: ``factory(c_in, c_out) -> nn.Module``."""
