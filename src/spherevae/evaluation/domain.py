"""The domain feature network: a classifier trained on the run's own labelled training
split and cached on disk; its features give ``fid_domain_*`` (comparable between runs,
never with published Inception FIDs).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "DomainClassifier",
    "domain_backbone",
]


class DomainClassifier(nn.Module):
    """A small CNN classifier; its 128-d penultimate layer gives the domain features."""

    VERSION = 1

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
            nn.Linear(256, 128), nn.ReLU(),
        )
        self.head = nn.Linear(128, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _train_domain_classifier(dataset: Any, *, seed: int, epochs: int, device: str) -> DomainClassifier:
    from spherevae.data.loader import BatchLoader

    num_classes = int(dataset.labels.max()) + 1
    # The weight init draws from the global generator: seed it inside a fork, so the
    # caller's random state is left as it was (the data order has its own generator).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DomainClassifier(dataset.images.shape[1], num_classes).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    loader = BatchLoader(dataset, 256, shuffle=True, seed=seed, device=device)
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for x, y in loader:
            assert y is not None  # dataset.labels was read above
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()


def domain_backbone(dataset: Any, *, seed: int = 0, epochs: int = 2, device: str = "cpu",
                    cache: str | os.PathLike[str] | None = None) -> nn.Module:
    """The domain classifier for ``dataset``, trained once and cached on disk by
    (dataset name, image shape, split size, seed, epochs, architecture version, and a
    hash of the first 64 images and of all labels)."""
    from spherevae.data.base import cache_dir
    from spherevae.io.checkpoint import load_checkpoint, save_checkpoint

    key = f"{dataset.name}-{'x'.join(map(str, dataset.images.shape[1:]))}-s{seed}-e{epochs}-v{DomainClassifier.VERSION}"
    digest = hashlib.sha1(dataset.images[:64].numpy().tobytes())
    digest.update(dataset.labels.numpy().tobytes())
    key += f"-N{dataset.images.shape[0]}-{digest.hexdigest()[:8]}"
    path = Path(cache or cache_dir() / "features") / f"domain-{key}.pt"
    num_classes = int(dataset.labels.max()) + 1
    if path.is_file():
        model = DomainClassifier(dataset.images.shape[1], num_classes)
        model.load_state_dict(load_checkpoint(path)["model"])
        return model.to(device).eval()
    model = _train_domain_classifier(dataset, seed=seed, epochs=epochs, device=device)
    save_checkpoint({"model": {k: v.cpu() for k, v in model.state_dict().items()}}, path)
    return model


