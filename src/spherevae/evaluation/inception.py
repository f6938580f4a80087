"""Inception-v3 FID features from a local weights file (never downloaded).

The network is the variant of Inception-v3 used for FID (the TensorFlow graph
``pt_inception-2015-12-05``, as ported by pytorch-fid): average pools that do not count
padding in the A, C and first E blocks, a max pool in the last E block's pool branch, and
BatchNorm with ``eps = 1e-3``. Features are the 2048 global-average-pooled outputs of
``Mixed_7c``. Module names follow that file's state-dict keys
(``Conv2d_1a_3x3.conv.weight``, ``Mixed_5b.branch1x1.bn.running_mean``, ...), so the
public weights file ``pt_inception-2015-12-05-6726825d.pth`` loads as is; its 1008-way
``fc`` and any ``AuxLogits`` (torchvision's files) are ignored. torchvision's own
``inception_v3`` weights have the same keys and load too, but that network pools
differently and was trained differently: FIDs computed with it are not the standard ones.
Only ``fid_inception_*`` numbers are comparable to published FIDs.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "FID_WEIGHTS_URL",
    "WEIGHTS_ENV",
    "InceptionV3Features",
    "InceptionWeightsNotFoundError",
    "WrongWeightsError",
    "inception_backbone",
    "load_inception_weights",
]

FID_WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"
)


WEIGHTS_ENV = "SPHEREVAE_INCEPTION_WEIGHTS"


class InceptionWeightsNotFoundError(FileNotFoundError):
    """No Inception weights file was given or the given one does not exist."""


class WrongWeightsError(ValueError):
    """The weights file is not an Inception-v3 FID network (missing/unexpected/mis-shaped keys)."""


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


