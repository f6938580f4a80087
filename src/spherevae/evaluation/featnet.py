"""The domain feature network ``domain-v2`` (backbone ``"domain"``): FID, KID and
precision/recall features for small images, shipped trained for Fashion-MNIST.

A small ResNet (conv + BatchNorm, basic residual blocks) trained on the labelled training
split by one fixed recipe (:data:`RECIPE`). Its features are not the penultimate ReLU
layer: they are the global-average-pooled outputs of the last ``len(feature_stages)``
stages taken *after BatchNorm and before the ReLU* (so no unit is dead), concatenated
(64 + 192 = 256 dims), then standardised per unit with the training-set mean and std (a
fixed affine map stored as buffers), so the earlier stage, which carries within-class
detail, weighs as much as the last one, which mostly encodes the class.

Where it comes from (:func:`featnet_backbone`): for a dataset with shipped weights
(:data:`SHIPPED_WEIGHTS`, package data under ``evaluation/weights/`` with a manifest of
recipe, version, seed, test accuracy and sha256, checked on every load) the shipped file,
so every user's ``fid_domain_*`` uses the same network; for any other dataset the recipe
trains it once (about 23 min per seed for 60k images on one CPU thread) and caches it by
(dataset, image shape, split size, seed, recipe version, data hash).

Everything random is drawn from explicit :class:`torch.Generator` objects seeded from
``seed``: the weight init, the batch order and the augmentation.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "RECIPE",
    "SHIPPED_WEIGHTS",
    "FeatNet",
    "WeightsChecksumError",
    "augment",
    "build_featnet",
    "featnet_backbone",
    "load_featnet",
    "save_featnet",
    "shipped_featnet",
    "train_featnet",
]

RECIPE: dict[str, Any] = {
    "version": "domain-v2",
    "widths": [16, 32, 64, 192],    # stem (28x28), stage 1 (14x14), stage 2 (7x7), stage 3 (4x4)
    "blocks": [1, 1, 1],            # basic residual blocks per stage
    "feature_stages": [2, 3],       # stages whose GAP (post-BN, pre-ReLU) outputs are features
    "epochs": 15,
    "batch_size": 128,
    "optimizer": "sgd",             # SGD, Nesterov momentum
    "lr": 0.1,                      # OneCycle peak learning rate
    "momentum": 0.9,
    "weight_decay": 5e-4,           # on conv/linear weights only, not BN or biases
    "schedule": "onecycle",         # linear warm-up over pct_start, then cosine to lr/div_final
    "pct_start": 0.15,
    "div_factor": 10.0,
    "final_div_factor": 100.0,
    "label_smoothing": 0.1,
    "crop_padding": 2,              # random crop of the zero-padded image, every image
    "hflip": 0.5,                   # horizontal flip probability
    "bn_eps": 1e-5,
    "bn_momentum": 0.1,
    "stats_batch_size": 1000,       # batch size for the feature standardisation pass
    "channels_last": True,          # memory format while training (CPU speed only)
}

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def _manifest() -> dict[str, Any]:
    path = WEIGHTS_DIR / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else {"files": {}}


# (dataset name, seed) -> file name under evaluation/weights/ (its manifest entry has the
# recipe version, test accuracy and sha256).
SHIPPED_WEIGHTS: dict[tuple[str, int], str] = {
    (entry["dataset"], int(entry["seed"])): name for name, entry in _manifest()["files"].items()
}


class WeightsChecksumError(ValueError):
    """A shipped weights file whose sha256 is not the manifest's (damaged or replaced)."""


def _conv_bn(cin: int, cout: int, stride: int, eps: float, momentum: float) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(cout, eps=eps, momentum=momentum))


class _Block(nn.Module):
    """Basic residual block; ``forward`` returns the pre-ReLU sum ``(N, cout, H', W')``."""

    def __init__(self, cin: int, cout: int, stride: int, eps: float, momentum: float) -> None:
        super().__init__()
        self.conv1 = _conv_bn(cin, cout, stride, eps, momentum)
        self.conv2 = _conv_bn(cout, cout, 1, eps, momentum)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(cout, eps=eps, momentum=momentum))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.conv1(x))) + self.shortcut(x)


class FeatNet(nn.Module):
    """Classifier whose ``features(x)``: ``(N, C, H, W)`` floats in [0, 1] -> ``(N, D)``,
    ``D = sum(widths[s] for s in feature_stages)``; ``forward(x)`` -> logits ``(N, classes)``.

    Stage ``s`` (1-based) halves the resolution with a stride-2 first block (stage 1 keeps
    it); the stem is a 3x3 conv at full resolution followed by a 2x2 max pool.
    """

    feat_mean: torch.Tensor  # (D,) buffers: the training-set mean and std of the raw features
    feat_std: torch.Tensor

    def __init__(self, in_channels: int = 1, num_classes: int = 10, *,
                 widths: Sequence[int] = (16, 32, 64, 192), blocks: Sequence[int] = (1, 1, 1),
                 feature_stages: Sequence[int] = (2, 3), bn_eps: float = 1e-5,
                 bn_momentum: float = 0.1) -> None:
        super().__init__()
        if len(widths) != len(blocks) + 1:
            raise ValueError(f"FeatNet needs one width per stage plus the stem, got {list(widths)} "
                             f"for blocks {list(blocks)}")
        self.feature_stages = tuple(int(s) for s in feature_stages)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0], eps=bn_eps, momentum=bn_momentum), nn.ReLU(),
            nn.MaxPool2d(2, ceil_mode=True))
        stages = []
        for i, n in enumerate(blocks):
            cin, cout, stride = widths[i], widths[i + 1], 1 if i == 0 else 2
            stages.append(nn.ModuleList(
                [_Block(cin if j == 0 else cout, cout, stride if j == 0 else 1, bn_eps, bn_momentum)
                 for j in range(n)]))
        self.stages = nn.ModuleList(stages)
        self.head = nn.Linear(widths[-1], num_classes)
        dim = sum(widths[s] for s in self.feature_stages)
        # Per-unit standardisation of the features (training-set statistics; identity until set).
        self.register_buffer("feat_mean", torch.zeros(dim))
        self.register_buffer("feat_std", torch.ones(dim))

    @property
    def feature_dim(self) -> int:
        return int(self.feat_mean.numel())

    def _trunk(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Pre-ReLU GAP ``(N, width_s)`` of each feature stage, and the last post-ReLU map."""
        h = self.stem(x)
        pooled = []
        for s, stage in enumerate(self.stages, start=1):
            pre = h
            for block in stage.children():
                pre = block(h)
                h = F.relu(pre)
            if s in self.feature_stages:
                pooled.append(pre.mean((2, 3)))
        return pooled, h

    def raw_features(self, x: torch.Tensor) -> torch.Tensor:
        """Unstandardised features ``(N, D)``."""
        return torch.cat(self._trunk(x)[0], 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised features ``(N, D)`` of images ``(N, C, H, W)`` in [0, 1]."""
        return (self.raw_features(x) - self.feat_mean) / self.feat_std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self._trunk(x)[1].mean((2, 3)))


def augment(x: torch.Tensor, generator: torch.Generator, *, padding: int, hflip: float) -> torch.Tensor:
    """Random crop of the zero-padded batch (every image its own offset) and horizontal
    flip with probability ``hflip``: ``(B, C, H, W)`` -> ``(B, C, H, W)``."""
    b, _, h, w = x.shape
    if padding > 0:
        xp = F.pad(x, (padding,) * 4)
        oy = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
        ox = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
        rows = (oy[:, None] + torch.arange(h))[:, None, :, None]         # (B, 1, H, 1)
        cols = (ox[:, None] + torch.arange(w))[:, None, None, :]         # (B, 1, 1, W)
        bi = torch.arange(b)[:, None, None, None]
        ci = torch.arange(x.shape[1])[None, :, None, None]
        x = xp[bi, ci, rows, cols]
    if hflip > 0:
        flip = torch.rand(b, generator=generator) < hflip
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay = [p for p in model.parameters() if p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.dim() <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _init_weights(model: nn.Module, generator: torch.Generator) -> None:
    """Kaiming-normal convs (fan_out), default-style uniform head, BN weight 1 / bias 0,
    and the last BN of each residual branch zero-initialised, all from ``generator``."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.out_channels * m.kernel_size[0] * m.kernel_size[1]
            with torch.no_grad():
                m.weight.normal_(0.0, math.sqrt(2.0 / fan_out), generator=generator)
        elif isinstance(m, nn.Linear):
            bound = 1.0 / math.sqrt(m.in_features)
            with torch.no_grad():
                m.weight.uniform_(-bound, bound, generator=generator)
                m.bias.uniform_(-bound, bound, generator=generator)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for m in model.modules():
        if isinstance(m, _Block):
            bn = m.conv2[1]
            assert isinstance(bn, nn.BatchNorm2d)
            nn.init.zeros_(bn.weight)


def build_featnet(recipe: dict[str, Any], in_channels: int, num_classes: int) -> FeatNet:
    """An untrained :class:`FeatNet` of ``recipe``'s architecture."""
    return FeatNet(in_channels, num_classes, widths=recipe["widths"], blocks=recipe["blocks"],
                   feature_stages=recipe["feature_stages"], bn_eps=recipe["bn_eps"],
                   bn_momentum=recipe["bn_momentum"])


@torch.no_grad()
def _feature_stats(model: FeatNet, images_uint8: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std ``(D,)`` (float64) of the raw features of ``images_uint8`` in eval mode."""
    model.eval()
    feats = torch.cat([model.raw_features(images_uint8[i:i + batch_size].float() / 255).double()
                       for i in range(0, images_uint8.shape[0], batch_size)])
    return feats.mean(0), feats.std(0)


def _epoch(model: FeatNet, opt: torch.optim.Optimizer, sched: Any, images: torch.Tensor,
           labels: torch.Tensor, order: torch.Tensor, aug_gen: torch.Generator,
           recipe: dict[str, Any], max_steps: int | None) -> tuple[float, float, int]:
    """One training epoch over ``order``: (mean loss, train accuracy, steps taken)."""
    fmt = torch.channels_last if recipe["channels_last"] else torch.contiguous_format
    bs, tot_loss, correct, seen, steps = recipe["batch_size"], 0.0, 0, 0, 0
    model.train()
    for b in range(0, order.numel(), bs):
        idx = order[b:b + bs]
        x = augment(images[idx].float() / 255, aug_gen, padding=recipe["crop_padding"],
                    hflip=recipe["hflip"]).contiguous(memory_format=fmt)
        logits = model(x)
        loss = F.cross_entropy(logits, labels[idx], label_smoothing=recipe["label_smoothing"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        tot_loss += float(loss.detach()) * len(idx)
        correct += int((logits.argmax(1) == labels[idx]).sum())
        seen, steps = seen + len(idx), steps + 1
        if max_steps is not None and steps >= max_steps:
            break
    return tot_loss / seen, correct / seen, steps


def train_featnet(train_images_uint8: torch.Tensor, train_labels: torch.Tensor, *, seed: int,
                  epochs: int | None = None, recipe: dict[str, Any] | None = None,
                  log: Callable[[str], None] | None = None,
                  max_steps: int | None = None) -> tuple[FeatNet, dict[str, Any]]:
    """Train a :class:`FeatNet` by ``recipe`` (default :data:`RECIPE`; ``epochs`` overrides
    its epoch count) on ``train_images_uint8`` ``uint8 (N, C, H, W)`` with ``train_labels``
    ``int64 (N,)``, then set its feature standardisation from the (unaugmented) training
    images. Returns the model in eval mode and a dict of per-epoch timings and losses.

    Randomness: init from ``Generator(seed)``, batch order from ``Generator(seed + 1_000_003 *
    (epoch + 1))``, augmentation from one ``Generator`` seeded ``seed + 7_919``; the global
    generator is left as it was. ``max_steps`` stops early (tests and timing only; the
    schedule is still sized for ``epochs``).
    """
    recipe = dict(RECIPE if recipe is None else recipe)
    if epochs is not None:
        recipe["epochs"] = int(epochs)
    if train_images_uint8.dtype != torch.uint8 or train_images_uint8.dim() != 4:
        raise ValueError(f"train_featnet: images must be uint8 (N, C, H, W), got "
                         f"{train_images_uint8.dtype} {tuple(train_images_uint8.shape)}")
    n = train_images_uint8.shape[0]
    with torch.random.fork_rng(devices=[]):  # module constructors draw from the global RNG
        model = build_featnet(recipe, train_images_uint8.shape[1], int(train_labels.max()) + 1)
    _init_weights(model, torch.Generator().manual_seed(seed))
    fmt = torch.channels_last if recipe["channels_last"] else torch.contiguous_format
    model = model.to(memory_format=fmt)  # type: ignore[call-overload]  # torch's stubs lack it
    opt = torch.optim.SGD(_param_groups(model, recipe["weight_decay"]), lr=recipe["lr"],
                          momentum=recipe["momentum"], nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=recipe["lr"], total_steps=recipe["epochs"] * math.ceil(n / recipe["batch_size"]),
        pct_start=recipe["pct_start"], div_factor=recipe["div_factor"],
        final_div_factor=recipe["final_div_factor"], anneal_strategy="cos", cycle_momentum=False)
    aug_gen = torch.Generator().manual_seed(seed + 7_919)
    history: dict[str, Any] = {"epoch_seconds": [], "epoch_loss": [], "epoch_train_acc": []}
    steps_left = max_steps
    for epoch in range(recipe["epochs"]):
        t0 = time.perf_counter()
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1_000_003 * (epoch + 1)))
        loss, acc, steps = _epoch(model, opt, sched, train_images_uint8, train_labels, order,
                                  aug_gen, recipe, steps_left)
        history["epoch_seconds"].append(time.perf_counter() - t0)
        history["epoch_loss"].append(loss)
        history["epoch_train_acc"].append(acc)
        if log is not None:
            log(f"domain-v2 epoch {epoch + 1}/{recipe['epochs']}: loss {loss:.4f} train acc {acc:.4f}")
        if steps_left is not None:
            steps_left -= steps
            if steps_left <= 0:
                break
    mean, std = _feature_stats(model, train_images_uint8, recipe["stats_batch_size"])
    model.feat_mean.copy_(mean.float())
    model.feat_std.copy_(std.clamp_min(1e-6).float())
    history["recipe"] = recipe
    return model.to(memory_format=torch.contiguous_format).eval(), history


def save_featnet(model: FeatNet, path: str | os.PathLike[str], recipe: dict[str, Any], *,
                 extra: dict[str, str] | None = None) -> None:
    """Write the float32 state dict as safetensors with metadata ``version``, ``recipe``
    (JSON), ``in_channels``, ``num_classes`` and ``extra``."""
    from safetensors.torch import save_file

    state = {k: (v.float() if v.is_floating_point() else v).contiguous()
             for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    meta = {"version": recipe["version"], "recipe": json.dumps(recipe, sort_keys=True),
            "in_channels": str(model.stem[0].in_channels), "num_classes": str(model.head.out_features)}
    meta.update(extra or {})
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata=meta)


def load_featnet(path: str | os.PathLike[str], *, sha256: str | None = None) -> tuple[FeatNet, dict[str, str]]:
    """Load a file written by :func:`save_featnet` (strictly). With ``sha256``, the file's
    checksum must be that one, else :class:`WeightsChecksumError`."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    if sha256 is not None:
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        if digest != sha256:
            raise WeightsChecksumError(f"{path}: sha256 {digest} is not the manifest's {sha256}: the "
                                       "shipped domain-v2 weights are damaged; reinstall spherevae")
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    model = build_featnet(json.loads(meta["recipe"]), int(meta["in_channels"]), int(meta["num_classes"]))
    missing, unexpected = model.load_state_dict(load_file(str(path)), strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"{path}: not a domain-v2 network (missing {missing}, unexpected {unexpected})")
    return model.eval(), meta


def shipped_featnet(dataset_name: str, seed: int = 0, *, image_shape: Sequence[int] | None = None,
                    num_classes: int | None = None) -> FeatNet | None:
    """The shipped network for ``(dataset_name, seed)``, checksum verified, or ``None``
    where none is shipped (:data:`SHIPPED_WEIGHTS`) or where the given ``image_shape``
    ``(C, H, W)`` or ``num_classes`` differ from the manifest's."""
    name = SHIPPED_WEIGHTS.get((dataset_name, int(seed)))
    if name is None:
        return None
    entry = _manifest()["files"][name]
    if image_shape is not None and tuple(image_shape) != tuple(entry["image_shape"]):
        return None
    if num_classes is not None and num_classes != entry["num_classes"]:
        return None
    return load_featnet(WEIGHTS_DIR / name, sha256=entry["sha256"])[0]


def featnet_backbone(dataset: Any, *, seed: int = 0, device: str = "cpu",
                     cache: str | os.PathLike[str] | None = None,
                     log: Callable[[str], None] | None = None) -> FeatNet:
    """The ``domain-v2`` network for ``dataset`` (training split, ``images`` uint8 and
    ``labels``): the shipped one when the dataset name, image shape and class count match
    a shipped file for ``seed``; otherwise trained by :data:`RECIPE` once and cached by
    (name, image shape, split size, seed, recipe version, hash of the first 64 images
    and of all labels)."""
    from spherevae.data.base import cache_dir

    num_classes = int(dataset.labels.max()) + 1
    shipped = shipped_featnet(dataset.name, seed, image_shape=dataset.images.shape[1:],
                              num_classes=num_classes)
    if shipped is not None:
        return shipped.to(device)
    digest = hashlib.sha1(dataset.images[:64].numpy().tobytes())
    digest.update(dataset.labels.numpy().tobytes())
    key = (f"{dataset.name}-{'x'.join(map(str, dataset.images.shape[1:]))}-s{seed}-{RECIPE['version']}"
           f"-N{dataset.images.shape[0]}-{digest.hexdigest()[:8]}")
    path = Path(cache or cache_dir() / "features") / f"{key}.safetensors"
    if path.is_file():
        return load_featnet(path)[0].to(device)
    model, _ = train_featnet(dataset.images, dataset.labels, seed=seed, log=log)
    save_featnet(model, path, RECIPE, extra={"dataset": dataset.name, "seed": str(seed)})
    return model.to(device)
