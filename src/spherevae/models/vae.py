"""ResNet-type VAE: encoder, reparameterisation (optionally onto a sphere), decoder.

The architecture follows paper section 4.1 ("a ResNet-type architecture for both
encoder and decoder"); the paper gives no further detail, so the sizes are ours and
configurable through :class:`ModelConfig`.

Shapes (``s = len(channels)`` stages, ``h, w = H / 2**s, W / 2**s``)::

    x (B, C, H, W) in [0, 1]
      -> stem 3x3 conv                          (B, channels[0], H, W)
      -> per stage i: stride-2 conv, residual blocks  (B, channels[i], H/2**(i+1), ...)
      -> flatten -> linear                      mu, logvar (B, n)
    z = mu + sigma * eps  [-> sqrt(n) * z / |z|  when project_to_sphere, eq 8]
      -> linear -> reshape                      (B, channels[-1], h, w)
      -> per stage, deepest first: residual blocks, 2x upsample
      -> norm, act, 3x3 conv, sigmoid           x_hat (B, C, H, W) in [0, 1]

The building blocks (norms, residual blocks, upsamplers) are in :mod:`spherevae.models.layers`,
the architecture's configuration and presets in :mod:`spherevae.models.config`; their
names are re-exported here. Any other model with ``encode``/``decode`` is wrapped in
:class:`ModelAdapter`; :func:`model_spec`/:func:`model_from_spec` rebuild either kind.

Design decisions (see also the :class:`ModelConfig` field docs):

- **Normalisation defaults to GroupNorm.** With BatchNorm, in train mode each sample's
  ``mu`` and ``x_hat`` depend on the other samples of its batch, and in eval mode on
  running statistics collected from *posterior* latents, which is wrong for decoding
  prior samples. GroupNorm treats every sample on its own, identically in train and
  eval mode, and needs no SyncBatchNorm under DDP. ``norm="batch"`` remains available.
- **logvar is soft-limited** to ``(logvar_min, logvar_max)`` with a scaled tanh, which
  is close to the identity in the middle of the range and never lets ``exp(logvar)``
  overflow (float16 included) or ``log sigma`` reach -inf.
- **The logvar head starts at ``sigma = init_sigma`` for every input** (zero weights,
  matching bias): the noise starts below the prior's unit scale so the decoder gets
  an informative ``z`` from the first step.
- **``forward`` samples in eval mode too** (``sample=True`` by default), so a
  validation loss estimates the same quantity as the training loss; pass
  ``sample=False`` for a deterministic reconstruction from ``mu``. :meth:`VAE.embed`
  always returns ``mu``, never a sampled ``z``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from spherevae._utils.validation import check_floating
from spherevae.geometry import coordinates
from spherevae.models.config import ModelConfig
from spherevae.models.layers import BLOCKS, NORMS, UPSAMPLERS, _conv3x3

__all__ = [
    "VAE",
    "Decoder",
    "Encoder",
    "VAEOutput",
]


# --------------------------------------------------------------------------- networks

class Encoder(nn.Module):
    """``x (B, C, H, W) -> features (B, channels[-1] * h * w)``, ``h, w = H, W / 2**s``."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        norm = _norm_factory(config)
        block = BLOCKS[config.block]
        layers: list[nn.Module] = [_conv3x3(config.image_shape[0], config.channels[0])]
        c_prev = config.channels[0]
        for c in config.channels:
            layers.append(_conv3x3(c_prev, c, stride=2))  # strided conv: learnt downsampling
            layers += [block(c, norm) for _ in range(config.blocks_per_stage)]
            c_prev = c
        # Pre-activation blocks leave an un-normalised sum; normalise before the head.
        layers += [norm(c_prev), nn.SiLU(), nn.Flatten()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Decoder(nn.Module):
    """``z (B, n) -> x_hat (B, C, H, W)`` in ``[0, 1]``; mirrors :class:`Encoder`."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        norm = _norm_factory(config)
        block = BLOCKS[config.block]
        upsample = UPSAMPLERS[config.upsample]
        bottleneck = config.bottleneck_shape
        self.fc = nn.Linear(config.latent_dim, math.prod(bottleneck))
        self.unflatten = nn.Unflatten(1, bottleneck)
        layers: list[nn.Module] = []
        # Deepest stage first; each stage ends by upsampling to the next shallower width.
        widths = list(reversed(config.channels))
        for c, c_next in zip(widths, widths[1:] + widths[-1:], strict=True):
            layers += [block(c, norm) for _ in range(config.blocks_per_stage)]
            layers.append(upsample(c, c_next))
        layers += [norm(widths[-1]), nn.SiLU(), nn.Conv2d(widths[-1], config.image_shape[0], 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(self.unflatten(self.fc(z))))


def _norm_factory(config: ModelConfig) -> Callable[[int], nn.Module]:
    make = NORMS[config.norm]
    return lambda channels: make(channels, config.norm_groups)


# --------------------------------------------------------------------------- the VAE

@dataclass
class VAEOutput:
    """What :meth:`VAE.forward` returns.

    Attributes:
        x_hat: ``(B, C, H, W)`` reconstruction in ``[0, 1]``.
        mu, logvar: ``(B, n)`` posterior mean and log-variance.
        z: ``(B, n)`` the latent that was decoded (sampled, projected when the model projects).
    """

    x_hat: torch.Tensor
    mu: torch.Tensor
    logvar: torch.Tensor
    z: torch.Tensor

    @property
    def sigma(self) -> torch.Tensor:
        """``(B, n)`` posterior standard deviation ``exp(logvar / 2)``."""
        return torch.exp(0.5 * self.logvar)


class VAE(nn.Module):
    """Gaussian-posterior VAE with ResNet encoder and decoder (paper secs 1.1, 3, 4.1).

    Example::

        model = VAE(ModelConfig.from_preset("cifar10", project_to_sphere=True))
        out = model(x, generator=torch.Generator().manual_seed(0))   # VAEOutput
        out.x_hat, out.mu, out.sigma, out.z
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise TypeError(f"config must be a ModelConfig, got {type(config).__name__}")
        self.config = config
        n = config.latent_dim
        self.encoder = Encoder(config)
        self.head = nn.Linear(math.prod(config.bottleneck_shape), 2 * n)  # -> (mu, raw logvar)
        self.decoder = Decoder(config)
        # The soft limit maps raw -> mid + half * tanh((raw - mid) / half), in (min, max).
        self._logvar_mid = 0.5 * (config.logvar_max + config.logvar_min)
        self._logvar_half = 0.5 * (config.logvar_max - config.logvar_min)
        self._init_logvar_head()

    def _init_logvar_head(self) -> None:
        # Zero weights and the bias that the soft limit maps to log(init_sigma**2): every
        # input starts at sigma = init_sigma exactly, and the weights still get gradients.
        target = 2.0 * math.log(self.config.init_sigma)
        raw = self._logvar_mid + self._logvar_half * math.atanh(
            (target - self._logvar_mid) / self._logvar_half
        )
        n = self.latent_dim
        with torch.no_grad():
            self.head.weight[n:].zero_()
            self.head.bias[n:].fill_(raw)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def radius(self) -> float | None:
        """``sqrt(n)`` when sampled latents are projected onto a sphere (eq 8), else ``None``."""
        return coordinates.sphere_radius(self.latent_dim) if self.config.project_to_sphere else None

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x (B, C, H, W) -> (mu, logvar)``, each ``(B, n)``; logvar soft-limited."""
        self._check_images(x)
        mu, raw = self.head(self.encoder(x)).chunk(2, dim=1)
        logvar = self._logvar_mid + self._logvar_half * torch.tanh(
            (raw - self._logvar_mid) / self._logvar_half
        )
        return mu, logvar

    def reparameterize(
        self, mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``z = mu + sigma * eps`` with ``eps ~ N(0, I)``, then ``sqrt(n) z / |z|`` if projecting.

        Args:
            mu, logvar: ``(B, n)``.
            generator: source of ``eps`` (on ``mu``'s device); ``None`` uses torch's default.

        Returns:
            ``z`` of shape ``(B, n)``.
        """
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
        return self._to_sphere(mu + torch.exp(0.5 * logvar) * eps)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``z (B, n) -> x_hat (B, C, H, W)`` in ``[0, 1]``."""
        check_floating(z, "z")
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(
                f"z must have shape (B, n) = (B, {self.latent_dim}), got {tuple(z.shape)}"
            )
        return self.decoder(z)

    def forward(
        self, x: torch.Tensor, generator: torch.Generator | None = None, *, sample: bool = True
    ) -> VAEOutput:
        """Encode, sample (or take ``mu`` when ``sample=False``), decode.

        Sampling does not depend on ``train()``/``eval()``: pass ``sample=False`` for a
        deterministic reconstruction (``z = mu``, projected when the model projects).
        """
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar, generator) if sample else self._to_sphere(mu)
        return VAEOutput(x_hat=self.decoder(z), mu=mu, logvar=logvar, z=z)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The posterior mean ``mu`` of shape ``(B, n)``: deterministic, never a sampled ``z``.

        ``mu`` is not projected; project it with
        ``coordinates.project_to_sphere(mu, model.radius)`` if you need it on the sphere.
        """
        return self.encode(x)[0]

    def _to_sphere(self, z: torch.Tensor) -> torch.Tensor:
        if self.radius is None:
            return z
        return coordinates.project_to_sphere(z, self.radius, validate=False)

    def _check_images(self, x: torch.Tensor) -> None:
        check_floating(x, "x")
        expected = self.config.image_shape
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            c, h, w = expected
            raise ValueError(
                f"x must have shape (B, C, H, W) = (B, {c}, {h}, {w}) for this model, "
                f"got {tuple(x.shape)}"
            )


# --------------------------------------------------------------------------- any encode/decode model


