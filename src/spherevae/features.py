"""Feature backbones for FID, KID and precision/recall, registered as specs.

:data:`FEATURE_BACKBONES` maps a backbone name to a :class:`BackboneSpec`: a builder
(``build(dataset, *, weights, device, seed) -> extractor``, the extractor any callable
from float images ``(N, C, H, W)`` in [0, 1] to features ``(N, D)``), the batch size it
runs at and a label for titles and logs. Metric keys carry the name (``fid_domain_...``).
Adding a backbone is one entry in that dict (docs/design.md, "Adding a feature backbone").

- ``"domain"``: :class:`DomainClassifier`, a small CNN trained here on the labelled
  training split and cached on disk (:func:`domain_backbone`). Its FIDs compare runs
  with each other; they are NOT comparable to published Inception FIDs.
- ``"inception"``: Inception-v3 FID features from a local weights file (never downloaded).

The Inception network is the variant of Inception-v3 used for FID (the TensorFlow graph
``pt_inception-2015-12-05``, as ported by pytorch-fid): average pools that do not count
padding in the A, C and first E blocks, a max pool in the last E block's pool branch, and
BatchNorm with ``eps = 1e-3``. Features are the 2048 global-average-pooled outputs of
``Mixed_7c``. Module names follow that file's state-dict keys
(``Conv2d_1a_3x3.conv.weight``, ``Mixed_5b.branch1x1.bn.running_mean``, ...), so the
public weights file ``pt_inception-2015-12-05-6726825d.pth`` loads as is; its 1008-way
``fc`` and any ``AuxLogits`` (torchvision's files) are ignored. torchvision's own
``inception_v3`` weights have the same keys and load too, but that network pools
differently and was trained differently: FIDs computed with it are not the standard ones.

Only ``fid_inception_*`` numbers are comparable to published FIDs; ``fid_domain_*`` numbers
are not.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "FEATURE_BACKBONES",
    "FID_WEIGHTS_URL",
    "BackboneSpec",
    "BackboneUnavailableError",
    "DomainClassifier",
    "InceptionV3Features",
    "InceptionWeightsNotFoundError",
    "WrongWeightsError",
    "backbone_extractor",
    "check_backbone",
    "domain_backbone",
    "extract_features",
    "inception_backbone",
    "load_inception_weights",
]

# images (N, C, H, W) float in [0, 1] -> features (N, D)
Extractor = Callable[[torch.Tensor], torch.Tensor]

FID_WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"
)
WEIGHTS_ENV = "SPHEREVAE_INCEPTION_WEIGHTS"


class InceptionWeightsNotFoundError(FileNotFoundError):
    """No Inception weights file was given or the given one does not exist."""


class WrongWeightsError(ValueError):
    """The weights file is not an Inception-v3 FID network (missing/unexpected/mis-shaped keys)."""


class BackboneUnavailableError(ValueError):
    """The data lacks what the backbone needs (the domain classifier and a training split
    without labels): nothing the user typed is wrong, so evaluation goes on without the
    metrics of these features (``spherevae.evaluation``)."""


class _Conv(nn.Module):
    """Conv (no bias) + BatchNorm(eps=1e-3) + ReLU; submodules named ``conv`` and ``bn``."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int], stride: int = 1,
                 padding: int | tuple[int, int] = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool(x: torch.Tensor) -> torch.Tensor:
    # The FID graph's average pools ignore the zero padding (count_include_pad=False).
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class _BlockA(nn.Module):
    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = _Conv(cin, 64, 1)
        self.branch5x5_1 = _Conv(cin, 48, 1)
        self.branch5x5_2 = _Conv(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _Conv(cin, 64, 1)
        self.branch3x3dbl_2 = _Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, 3, padding=1)
        self.branch_pool = _Conv(cin, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_avg_pool(x)),
        ], 1)


class _BlockB(nn.Module):  # grid reduction 35 -> 17
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = _Conv(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = _Conv(cin, 64, 1)
        self.branch3x3dbl_2 = _Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, 3, stride=2),
        ], 1)


class _BlockC(nn.Module):  # factorised 7x7 convolutions
    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        self.branch1x1 = _Conv(cin, 192, 1)
        self.branch7x7_1 = _Conv(cin, c7, 1)
        self.branch7x7_2 = _Conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = _Conv(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = _Conv(cin, c7, 1)
        self.branch7x7dbl_2 = _Conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = _Conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = _Conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = _Conv(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = _Conv(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3,
                      self.branch7x7dbl_4, self.branch7x7dbl_5):
            d = layer(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_avg_pool(x))], 1)


class _BlockD(nn.Module):  # grid reduction 17 -> 8
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = _Conv(cin, 192, 1)
        self.branch3x3_2 = _Conv(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _Conv(cin, 192, 1)
        self.branch7x7x3_2 = _Conv(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _Conv(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _Conv(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, 3, stride=2)], 1)


class _BlockE(nn.Module):  # expanded filter bank; ``max_pool`` in the last block of the FID graph
    def __init__(self, cin: int, *, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = _Conv(cin, 320, 1)
        self.branch3x3_1 = _Conv(cin, 384, 1)
        self.branch3x3_2a = _Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _Conv(cin, 448, 1)
        self.branch3x3dbl_2 = _Conv(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _Conv(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg_pool(x)
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(a), self.branch3x3_2b(a),
            self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d),
            self.branch_pool(pooled),
        ], 1)


class InceptionV3Features(nn.Module):
    """Inception-v3 (FID variant) up to the 2048-d pool. ``features(x)``: float images
    ``(N, C, H, W)`` in [0, 1], C = 1 or 3, any size -> ``(N, 2048)``."""

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = _Conv(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _Conv(32, 32, 3)
        self.Conv2d_2b_3x3 = _Conv(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = _Conv(64, 80, 1)
        self.Conv2d_4a_3x3 = _Conv(80, 192, 3)
        self.Mixed_5b = _BlockA(192, 32)
        self.Mixed_5c = _BlockA(256, 64)
        self.Mixed_5d = _BlockA(288, 64)
        self.Mixed_6a = _BlockB(288)
        self.Mixed_6b = _BlockC(768, 128)
        self.Mixed_6c = _BlockC(768, 160)
        self.Mixed_6d = _BlockC(768, 160)
        self.Mixed_6e = _BlockC(768, 192)
        self.Mixed_7a = _BlockD(768)
        self.Mixed_7b = _BlockE(1280, max_pool=False)
        self.Mixed_7c = _BlockE(2048, max_pool=True)
        self.eval()

    @staticmethod
    def preprocess(x: torch.Tensor) -> torch.Tensor:
        """[0, 1] images -> 3 channels, 299x299 (bilinear), scaled to [-1, 1]."""
        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"images must have shape (N, 1 or 3, H, W), got {tuple(x.shape)}")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        return 2 * x - 1

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(x)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b,
                      self.Mixed_6c, self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b,
                      self.Mixed_7c):
            x = block(x)
        return x.mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


_IGNORED_PREFIXES = ("fc.", "AuxLogits.")


def _resolve_path(weights: str | os.PathLike[str] | None) -> Path:
    how = (
        f"Inception-v3 FID weights cannot be downloaded automatically. Download {FID_WEIGHTS_URL} "
        f"on a machine with internet, then pass it: `spherevae evaluate RUN --backbone inception "
        f"--inception-weights PATH` (or set {WEIGHTS_ENV}=PATH). Without it, use the default "
        "`--backbone domain` (FID on domain features, not comparable to published FIDs)."
    )
    if weights is None:
        weights = os.environ.get(WEIGHTS_ENV)
        if not weights:
            raise InceptionWeightsNotFoundError(f"no Inception weights file given. {how}")
    path = Path(weights)
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise InceptionWeightsNotFoundError(f"Inception weights file {path} {what}. {how}")
    return path


def load_inception_weights(weights: str | os.PathLike[str] | None = None) -> InceptionV3Features:
    """Build the network and load ``weights`` (or ``$SPHEREVAE_INCEPTION_WEIGHTS``), strictly:
    any missing, unexpected or mis-shaped tensor raises :class:`WrongWeightsError`. The file
    is read with ``torch.load(weights_only=True)``: it cannot run code."""
    path = _resolve_path(weights)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling refused, truncated zip, not a torch file
        raise WrongWeightsError(f"{path}: not a loadable tensor file ({type(exc).__name__}: {exc})") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WrongWeightsError(f"{path}: expected a state dict of tensors, got {type(state).__name__}")
    model = InceptionV3Features()
    expected = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    given = {k: v for k, v in state.items()
             if not k.startswith(_IGNORED_PREFIXES) and not k.endswith("num_batches_tracked")}
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    mismatched = sorted(k for k in set(expected) & set(given) if tuple(expected[k].shape) != tuple(given[k].shape))
    if missing or unexpected or mismatched:
        def few(keys: list[str]) -> str:
            return ", ".join(keys[:4]) + (", ..." if len(keys) > 4 else "")

        raise WrongWeightsError(
            f"{path} is not an Inception-v3 FID network: {len(missing)} missing keys ({few(missing)}), "
            f"{len(unexpected)} unexpected keys ({few(unexpected)}), {len(mismatched)} with wrong shapes "
            f"({few([f'{k} {tuple(given[k].shape)} != {tuple(expected[k].shape)}' for k in mismatched])})"
        )
    model.load_state_dict({**model.state_dict(), **given})
    return model.eval()


def _check_inception(dataset: object = None, weights: str | os.PathLike[str] | None = None) -> None:
    """``FEATURE_BACKBONES["inception"].check``: the weights file exists (else
    :class:`InceptionWeightsNotFoundError`) and loads strictly into the network (else the
    loader's one-line error), before any evaluation stage: a second load later costs about
    a second, a wrong file found only at the FID stage cost every stage before it."""
    del dataset
    load_inception_weights(weights)


def inception_backbone(dataset: object = None, *, weights: str | os.PathLike[str] | None = None,
                       device: str = "cpu", seed: int = 0) -> nn.Module:
    """Builder of ``FEATURE_BACKBONES["inception"]`` (dataset and seed unused)."""
    del dataset, seed
    return load_inception_weights(weights).to(device)


# ------------------------------------------------------------------ domain classifier


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
    from spherevae.data import BatchLoader

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
    from spherevae.checkpoint import load_checkpoint, save_checkpoint
    from spherevae.data import cache_dir

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


def _check_domain(dataset: Any = None, weights: str | None = None) -> None:
    """``FEATURE_BACKBONES["domain"].check``: the training split has class labels, else
    :class:`BackboneUnavailableError` (a flat image folder has none)."""
    del weights
    if dataset is None or getattr(dataset, "labels", None) is None:
        raise BackboneUnavailableError(
            "the domain FID backbone is a classifier trained on the class labels of the training "
            "data, which has none (e.g. a flat image folder): for FID, KID and precision/recall put "
            "the images in class subfolders, or use --backbone inception --inception-weights FILE"
        )


def _build_domain(dataset: Any = None, *, weights: str | None = None, device: str = "cpu",
                  seed: int = 0) -> nn.Module:
    _check_domain(dataset, weights)
    return domain_backbone(dataset, seed=seed, device=device)


# ------------------------------------------------------------------ the registry


@dataclass(frozen=True)
class BackboneSpec:
    """One entry of :data:`FEATURE_BACKBONES`.

    ``build(dataset=None, *, weights=None, device="cpu", seed=0)`` returns the extractor:
    a module with a ``features(x)`` method, or any callable ``x -> (N, D)`` features of
    float images ``x`` ``(N, C, H, W)`` in [0, 1]. ``dataset`` is the training split
    (``images`` uint8, ``labels``; for backbones trained on the data), ``weights`` a local
    weights file. ``batch_size``: images per extractor call. ``label``: what the features
    are, for titles and logs. ``check(dataset, weights)``, optional: raises, cheaply and
    before any work, what ``build`` would raise for these inputs
    (:class:`BackboneUnavailableError` when the data lacks what it needs; any other error
    when the user's inputs are wrong, e.g. a missing weights file); ``None``: nothing to check.
    """

    build: Callable[..., Any]
    batch_size: int
    label: str
    check: Callable[[Any, str | None], None] | None = None


# Only "inception" FIDs are comparable to published numbers; "domain" FIDs compare runs
# with each other. Inception runs at 299x299: smaller batches keep memory modest on CPU.
FEATURE_BACKBONES: dict[str, BackboneSpec] = {
    "domain": BackboneSpec(_build_domain, 500, "domain features", _check_domain),
    "inception": BackboneSpec(inception_backbone, 50, "Inception (pytorch-fid weights)", _check_inception),
}


def check_backbone(name: str, *, dataset: Any = None, weights: str | None = None) -> None:
    """Raise now what building the backbone ``name`` for ``dataset`` and ``weights`` would
    raise later (its spec's ``check``): :class:`BackboneUnavailableError` when the data
    lacks what it needs, :class:`InceptionWeightsNotFoundError` for a missing weights file,
    ``ValueError`` for an unknown name."""
    from spherevae._validation import check_choice

    check_choice(name, "FID backbone", FEATURE_BACKBONES)
    spec = FEATURE_BACKBONES[name]
    if spec.check is not None:
        spec.check(dataset, weights)


def backbone_extractor(name: str, *, dataset: Any = None, weights: str | None = None,
                       device: str = "cpu", seed: int = 0) -> Any:
    """Build the extractor of the registered backbone ``name``."""
    from spherevae._validation import check_choice

    check_choice(name, "FID backbone", FEATURE_BACKBONES)
    return FEATURE_BACKBONES[name].build(dataset, weights=weights, device=device, seed=seed)


@torch.no_grad()
def extract_features(extractor: Any, images: torch.Tensor, *, batch_size: int = 500,
                     device: str | torch.device = "cpu") -> np.ndarray:
    """Features ``(N, D)`` float64 of float images ``(N, C, H, W)`` in [0, 1], ``batch_size``
    images at a time on ``device``. ``extractor``: a module whose ``features`` method
    gives them (the module is put in eval mode), or any callable ``images -> features``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(extractor, nn.Module):
        extractor.eval()
    extract = getattr(extractor, "features", extractor)
    out = [torch.as_tensor(extract(images[i : i + batch_size].to(device).float())).double().cpu()
           for i in range(0, images.shape[0], batch_size)]
    return torch.cat(out).numpy()
