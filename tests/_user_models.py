"""A user's own VAE, not spherevae's: an MLP on flat vectors (used by tests/test_api.py,
also imported by name in a fresh process, as a user's own module would be)."""

import torch
from torch import nn


class MLPVAE(nn.Module):
    def __init__(self, d_in: int = 64, latent: int = 8, hidden: int = 32) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent))
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, d_in))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.enc(x.flatten(1)).chunk(2, dim=1)
        return mu, logvar.clamp(-8, 4)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z))


class ImageMLPVAE(MLPVAE):
    """:class:`MLPVAE` on 1x8x8 images (the bundled digits data set): it decodes images."""

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return super().decode(z).view(-1, 1, 8, 8)


class BatchNormMLPVAE(MLPVAE):
    """:class:`MLPVAE` with batch norm in its encoder: its output depends on train/eval
    mode, so a trainer that trains it in the wrong mode is caught. (No dropout: it draws
    from torch's global generator, which no checkpoint holds.)"""

    def __init__(self, d_in: int = 64, latent: int = 8, hidden: int = 32) -> None:
        super().__init__(d_in, latent, hidden)
        self.enc = nn.Sequential(nn.Linear(d_in, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                                 nn.Linear(hidden, 2 * latent))
