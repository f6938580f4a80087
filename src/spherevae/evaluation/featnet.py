"""The domain feature network (backbone ``"domain"``): FID, KID and precision/recall
features for small images, shipped trained for Fashion-MNIST.

The *network* is a small ResNet (conv + BatchNorm, basic residual blocks) trained on the
labelled training split by one fixed recipe (:data:`RECIPE`, version ``domain-v2``). Its
*features* are a read-out of its stage maps taken *after BatchNorm and before the ReLU* (so
no unit is dead), registered in :data:`READOUTS`:

- ``domain-v3`` (the default since 2026-12-07): the spatial mean and the spatial std of
  every stage's maps (2 x (32 + 64 + 192) = 576 dims). The std (the maps' energy around
  their mean) carries the texture and sharpness that a mean of nearly linear early
  filters averages away; early filters are alike across training seeds, so these
  statistics are too, and the FIDs of VAE samples vary less between the networks of
  different seeds (docs/evaluation.md: largest CV over the Fig 1 cells 18.6% -> 8.8%).
- ``domain-v2``: the spatial mean of the last two stages (64 + 192 = 256 dims), kept for
  comparison.

Either is then standardised per unit with the training split's mean and std (a fixed
affine map stored as buffers), so every statistic weighs alike.

Where it comes from (:func:`featnet_backbone`): for a dataset with shipped weights
(:data:`SHIPPED_WEIGHTS`, package data under ``evaluation/weights/`` with a manifest of
recipe, version, seed, test accuracy and sha256, checked on every load) the shipped file,
with the shipped standardisation of the read-out (one small file per read-out and seed,
also checksummed), so every user's ``fid_domain_*`` uses the same network; for any other
dataset the recipe trains it once (about 23 min per seed for 60k images on one CPU
thread) and caches it by (dataset, image shape, split size, seed, recipe version, data
hash), and the read-out's standardisation beside it.

Several trained networks read as one (:class:`FeatEnsemble`, backbones ``"domain-x2"``
and ``"domain-x3"``: feature seed ``s`` = networks :func:`member_seeds` ``(s, size)``) give FIDs that depend less on
which networks were trained (docs/evaluation.md, "Two networks at once").

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "DEFAULT_READOUT",
    "ENSEMBLE_SIZE",
    "MOMENTS",
    "READOUTS",
    "RECIPE",
    "SHIPPED_WEIGHTS",
    "FeatEnsemble",
    "FeatNet",
    "Readout",
    "WeightsChecksumError",
    "augment",
    "build_featnet",
    "featnet_backbone",
    "featnet_ensemble",
    "feature_standardisation",
    "load_featnet",
    "member_seeds",
    "save_featnet",
    "save_standardisation",
    "shipped_featnet",
    "spatial_std",
    "train_featnet",
    "with_readout",
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



@dataclass(frozen=True)
class Readout:
    """Which stages' pre-ReLU maps ``(N, w_s, H_s, W_s)`` become features (1-based stage
    numbers) and which spatial statistics of each: ``"mean"`` and/or ``"std"`` (the
    population std over the ``H_s x W_s`` positions), concatenated stage by stage, each
    stage's statistics in the order given."""

    stages: tuple[int, ...]
    moments: tuple[str, ...]

    def dim(self, widths: Sequence[int]) -> int:
        """Feature dimension ``D`` for a network of stem + stage ``widths``."""
        return len(self.moments) * sum(int(widths[s]) for s in self.stages)


def spatial_std(m: torch.Tensor) -> torch.Tensor:
    """Population std over the positions of a map ``(N, C, H, W)`` -> ``(N, C)``.

    Two vectorised passes over the map shifted by its first value, not ``Tensor.std``:
    torch's CPU std (Welford) is several times slower on these maps. The shift keeps a
    spatially constant map at exactly 0, as ``Tensor.std`` gives (an unshifted two-pass
    std leaves ~1e-7 |c| there, which the features' standardisation would amplify);
    elsewhere the two differ by rounding (~1e-7 relative)."""
    s = m.flatten(2)
    s = s - s[..., :1]
    return (s - s.mean(2, keepdim=True)).square().mean(2).sqrt()


# Spatial statistics of a map (N, C, H, W) -> (N, C): the moments a Readout may name.
MOMENTS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "mean": lambda m: m.mean((2, 3)),
    "std": spatial_std,
}

# Feature versions of the one trained network (the backbone registry names them).
READOUTS: dict[str, Readout] = {
    "domain-v2": Readout((2, 3), ("mean",)),
    "domain-v3": Readout((1, 2, 3), ("mean", "std")),
}
DEFAULT_READOUT = "domain-v3"
# The read-out whose standardisation a weights file carries (the recipe's feature_stages).
_RECIPE_READOUT = "domain-v2"

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def _manifest() -> dict[str, Any]:
    path = WEIGHTS_DIR / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else {"files": {}}


# (dataset name, seed) -> file name under evaluation/weights/ (its manifest entry has the
# recipe version, test accuracy and sha256).
SHIPPED_WEIGHTS: dict[tuple[str, int], str] = {
    (entry["dataset"], int(entry["seed"])): name for name, entry in _manifest()["files"].items()
}
# (dataset name, seed, read-out) -> the file of that read-out's standardisation (manifest
# "standardisations": weights file, read-out, sha256), for read-outs other than the one
# the weights file carries.
SHIPPED_STANDARDISATIONS: dict[tuple[str, int, str], str] = {
    (_manifest()["files"][entry["weights"]]["dataset"], int(_manifest()["files"][entry["weights"]]["seed"]),
     entry["readout"]): name
    for name, entry in _manifest().get("standardisations", {}).items()
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
    ``D = len(moments) * sum(widths[s] for s in feature_stages)`` (:class:`Readout`);
    ``forward(x)`` -> logits ``(N, classes)``.

    Stage ``s`` (1-based) halves the resolution with a stride-2 first block (stage 1 keeps
    it); the stem is a 3x3 conv at full resolution followed by a 2x2 max pool.
    """

    feat_mean: torch.Tensor  # (D,) buffers: the training-set mean and std of the raw features
    feat_std: torch.Tensor

    def __init__(self, in_channels: int = 1, num_classes: int = 10, *,
                 widths: Sequence[int] = (16, 32, 64, 192), blocks: Sequence[int] = (1, 1, 1),
                 feature_stages: Sequence[int] = (2, 3), moments: Sequence[str] = ("mean",),
                 bn_eps: float = 1e-5, bn_momentum: float = 0.1) -> None:
        super().__init__()
        if len(widths) != len(blocks) + 1:
            raise ValueError(f"FeatNet needs one width per stage plus the stem, got {list(widths)} "
                             f"for blocks {list(blocks)}")
        bad = [m for m in moments if m not in MOMENTS]
        if bad or not moments:
            raise ValueError(f"FeatNet moments must be a non-empty list of {sorted(MOMENTS)}, got {list(moments)}")
        self.readout = Readout(tuple(int(s) for s in feature_stages), tuple(moments))
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
        dim = self.readout.dim(widths)
        # Per-unit standardisation of the features (training-set statistics; identity until set).
        self.register_buffer("feat_mean", torch.zeros(dim))
        self.register_buffer("feat_std", torch.ones(dim))

    @property
    def feature_dim(self) -> int:
        return int(self.feat_mean.numel())

    def _trunk(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The read-out's statistics ``(N, width_s)`` of each feature stage's pre-ReLU map
        (stage by stage, moments in the read-out's order), and the last post-ReLU map."""
        h = self.stem(x)
        pooled: list[torch.Tensor] = []
        for s, stage in enumerate(self.stages, start=1):
            pre = h
            for block in stage.children():
                pre = block(h)
                h = F.relu(pre)
            if s in self.readout.stages:
                pooled.extend(MOMENTS[m](pre) for m in self.readout.moments)
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


def build_featnet(recipe: dict[str, Any], in_channels: int, num_classes: int,
                  readout: str | None = None) -> FeatNet:
    """An untrained :class:`FeatNet` of ``recipe``'s architecture, its features read out as
    :data:`READOUTS` ``[readout]`` (default: the recipe's ``feature_stages``, means only)."""
    stages, moments = ((recipe["feature_stages"], ("mean",)) if readout is None
                       else (READOUTS[readout].stages, READOUTS[readout].moments))
    return FeatNet(in_channels, num_classes, widths=recipe["widths"], blocks=recipe["blocks"],
                   feature_stages=stages, moments=moments, bn_eps=recipe["bn_eps"],
                   bn_momentum=recipe["bn_momentum"])


@torch.no_grad()
def feature_standardisation(model: FeatNet, images_uint8: torch.Tensor,
                            batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std ``(D,)`` (float64; the std ``ddof=1``, floored at 1e-6) of the raw
    features of ``images_uint8`` ``uint8 (N, C, H, W)``, the model in eval mode: what its
    ``feat_mean``/``feat_std`` are set to, from the training split."""
    model.eval()
    feats = torch.cat([model.raw_features(images_uint8[i:i + batch_size].float() / 255).double()
                       for i in range(0, images_uint8.shape[0], batch_size)])
    return feats.mean(0), feats.std(0).clamp_min(1e-6)


def _set_standardisation(model: FeatNet, mean: torch.Tensor, std: torch.Tensor) -> FeatNet:
    if mean.shape != model.feat_mean.shape or std.shape != model.feat_std.shape:
        raise ValueError(f"a standardisation of {tuple(mean.shape)} features does not fit a read-out of "
                         f"{model.feature_dim}")
    model.feat_mean.copy_(mean.float())
    model.feat_std.copy_(std.float())
    return model


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
    _set_standardisation(model, *feature_standardisation(model, train_images_uint8, recipe["stats_batch_size"]))
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


def with_readout(trained: FeatNet, readout: str, images_uint8: torch.Tensor, *,
                 recipe: dict[str, Any] | None = None) -> FeatNet:
    """A copy of the ``trained`` network (of ``recipe``, default :data:`RECIPE`) that reads
    its features out as :data:`READOUTS` ``[readout]``, standardised over ``images_uint8``
    ``uint8 (N, C, H, W)`` (the training split), in eval mode."""
    recipe = RECIPE if recipe is None else recipe
    stem = trained.stem[0]
    assert isinstance(stem, nn.Conv2d)
    model = build_featnet(recipe, stem.in_channels, trained.head.out_features, readout)
    trunk = {k: v for k, v in trained.state_dict().items() if k not in ("feat_mean", "feat_std")}
    model.load_state_dict(trunk, strict=False)
    return _set_standardisation(model, *feature_standardisation(model, images_uint8, recipe["stats_batch_size"])).eval()


def save_standardisation(model: FeatNet, path: str | os.PathLike[str], readout: str, *,
                         extra: dict[str, str] | None = None) -> None:
    """Write ``model``'s ``feat_mean``/``feat_std`` (float32) as safetensors with metadata
    ``readout`` and ``extra`` (e.g. the weights file they belong to)."""
    from safetensors.torch import save_file

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file({"feat_mean": model.feat_mean.float().contiguous(), "feat_std": model.feat_std.float().contiguous()},
              str(path), metadata={"readout": readout, **(extra or {})})


def _check_sha256(path: str | os.PathLike[str], sha256: str | None) -> None:
    if sha256 is None:
        return
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    if digest != sha256:
        raise WeightsChecksumError(f"{path}: sha256 {digest} is not the manifest's {sha256}: the "
                                   "shipped domain feature network files are damaged; reinstall spherevae")


def load_featnet(path: str | os.PathLike[str], *, sha256: str | None = None, readout: str | None = None,
                 standardisation: str | os.PathLike[str] | None = None,
                 standardisation_sha256: str | None = None) -> tuple[FeatNet, dict[str, str]]:
    """Load a file written by :func:`save_featnet` (strictly). With ``sha256``, the file's
    checksum must be that one, else :class:`WeightsChecksumError`.

    ``readout`` (a key of :data:`READOUTS`): read the features out that way; unless it is
    the one the file's recipe standardised (``domain-v2``), its standardisation comes from
    the file ``standardisation`` (written by :func:`save_standardisation`, checked against
    ``standardisation_sha256`` when given); ``None``: the file's own read-out.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    _check_sha256(path, sha256)
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    recipe = json.loads(meta["recipe"])
    own = readout is None or READOUTS[readout] == Readout(tuple(recipe["feature_stages"]), ("mean",))
    model = build_featnet(recipe, int(meta["in_channels"]), int(meta["num_classes"]),
                          None if own else readout)
    state = load_file(str(path))
    if not own:  # the file's standardisation is that of another read-out
        state = {k: v for k, v in state.items() if k not in ("feat_mean", "feat_std")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")
               and (own or k not in ("feat_mean", "feat_std"))]
    if missing or unexpected:
        raise ValueError(f"{path}: not a domain feature network (missing {missing}, unexpected {unexpected})")
    if not own:
        if standardisation is None:
            raise ValueError(f"load_featnet: read-out {readout!r} needs the file of its standardisation")
        _check_sha256(standardisation, standardisation_sha256)
        stats = load_file(str(standardisation))
        _set_standardisation(model, stats["feat_mean"], stats["feat_std"])
    return model.eval(), meta


def shipped_featnet(dataset_name: str, seed: int = 0, *, image_shape: Sequence[int] | None = None,
                    num_classes: int | None = None, readout: str = DEFAULT_READOUT) -> FeatNet | None:
    """The shipped network for ``(dataset_name, seed)`` read out as ``readout``, its files'
    checksums verified, or ``None`` where none is shipped (:data:`SHIPPED_WEIGHTS`, and
    :data:`SHIPPED_STANDARDISATIONS` for a read-out other than the weights file's own) or
    where the given ``image_shape`` ``(C, H, W)`` or ``num_classes`` differ from the
    manifest's."""
    from spherevae._utils.validation import check_choice

    check_choice(readout, "domain feature read-out", READOUTS)
    name = SHIPPED_WEIGHTS.get((dataset_name, int(seed)))
    if name is None:
        return None
    manifest = _manifest()
    entry = manifest["files"][name]
    if image_shape is not None and tuple(image_shape) != tuple(entry["image_shape"]):
        return None
    if num_classes is not None and num_classes != entry["num_classes"]:
        return None
    if readout == _RECIPE_READOUT:
        return load_featnet(WEIGHTS_DIR / name, sha256=entry["sha256"])[0]
    stats = SHIPPED_STANDARDISATIONS.get((dataset_name, int(seed), readout))
    if stats is None:
        return None
    return load_featnet(WEIGHTS_DIR / name, sha256=entry["sha256"], readout=readout,
                        standardisation=WEIGHTS_DIR / stats,
                        standardisation_sha256=manifest["standardisations"][stats]["sha256"])[0]


def featnet_backbone(dataset: Any, *, seed: int = 0, device: str = "cpu",
                     cache: str | os.PathLike[str] | None = None,
                     log: Callable[[str], None] | None = None, readout: str = DEFAULT_READOUT) -> FeatNet:
    """The domain feature network for ``dataset`` (training split, ``images`` uint8 and
    ``labels``), read out as ``readout`` (:data:`READOUTS`): the shipped one when the
    dataset name, image shape and class count match a shipped file for ``seed``; otherwise
    trained by :data:`RECIPE` once and cached by (name, image shape, split size, seed,
    recipe version, hash of the first 64 images and of all labels), with the read-out's
    standardisation (from the whole training split) cached beside it. The network comes in
    eval mode with its weights channels-last (:func:`_for_inference`)."""
    from spherevae.data.base import cache_dir

    num_classes = int(dataset.labels.max()) + 1
    shipped = shipped_featnet(dataset.name, seed, image_shape=dataset.images.shape[1:],
                              num_classes=num_classes, readout=readout)
    if shipped is not None:
        return _for_inference(shipped, device)
    digest = hashlib.sha1(dataset.images[:64].numpy().tobytes())
    digest.update(dataset.labels.numpy().tobytes())
    key = (f"{dataset.name}-{'x'.join(map(str, dataset.images.shape[1:]))}-s{seed}-{RECIPE['version']}"
           f"-N{dataset.images.shape[0]}-{digest.hexdigest()[:8]}")
    path = Path(cache or cache_dir() / "features") / f"{key}.safetensors"
    if not path.is_file():
        model, _ = train_featnet(dataset.images, dataset.labels, seed=seed, log=log)
        save_featnet(model, path, RECIPE, extra={"dataset": dataset.name, "seed": str(seed)})
    if readout == _RECIPE_READOUT:
        return _for_inference(load_featnet(path)[0], device)
    stats = path.with_name(f"{key}.{readout}.safetensors")
    if not stats.is_file():
        save_standardisation(with_readout(load_featnet(path)[0], readout, dataset.images), stats, readout,
                             extra={"weights": path.name})
    return _for_inference(load_featnet(path, readout=readout, standardisation=stats)[0], device)


# Networks per ensemble by default (backbones "domain-x2" and "domain-x3" name their own
# size). For independent networks an ensemble of k spreads 1/sqrt(k) as much as one
# network's FID; measured: docs/evaluation.md.
ENSEMBLE_SIZE = 2


class FeatEnsemble(nn.Module):
    """Several trained domain networks read as one: ``features(x)``: ``(N, C, H, W)``
    floats in [0, 1] -> ``(N, sum D_i)``, the members' standardised features concatenated
    and divided by ``sqrt(k)`` for ``k`` members (so the FID of uncorrelated members is on
    the scale of one member's, their mean; correlated members give 2-15% more, measured);
    ``forward(x)`` -> ``(N, classes)`` logits of the ensemble's classifier: the log of the
    mean of the members' class probabilities (whose accuracy ``feature_quality`` reports)."""

    def __init__(self, members: Sequence[FeatNet]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"FeatEnsemble needs at least 2 member networks, got {len(members)}")
        self.members = nn.ModuleList(members)

    def _nets(self) -> list[FeatNet]:
        return [cast(FeatNet, m) for m in self.members]

    @property
    def feature_dim(self) -> int:
        return sum(m.feature_dim for m in self._nets())

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Features ``(N, sum D_i)`` of images ``(N, C, H, W)`` in [0, 1]."""
        return torch.cat([m.features(x) for m in self._nets()], 1) / math.sqrt(len(self.members))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x).softmax(1) for m in self._nets()]).mean(0).log()


def member_seeds(seed: int, size: int = ENSEMBLE_SIZE) -> list[int]:
    """The network seeds of ensemble ``seed``: ``size*seed .. size*seed + size - 1``, so
    ensembles of different seeds share no network (seeds 0, 1, 2 of pairs: networks 0-5)."""
    if seed < 0 or size < 2:
        raise ValueError(f"member_seeds: seed must be >= 0 and size >= 2, got seed {seed}, size {size}")
    return [size * seed + j for j in range(size)]


def featnet_ensemble(dataset: Any, *, seed: int = 0, size: int = ENSEMBLE_SIZE, device: str = "cpu",
                     cache: str | os.PathLike[str] | None = None, log: Callable[[str], None] | None = None,
                     readout: str = DEFAULT_READOUT) -> FeatEnsemble:
    """The ensemble ``seed`` of ``size`` domain networks for ``dataset``, each from
    :func:`featnet_backbone` with the seeds :func:`member_seeds` gives (shipped where
    shipped, else trained once and cached: ``size`` trainings per ensemble seed), in
    eval mode on ``device``."""
    return FeatEnsemble([featnet_backbone(dataset, seed=s, device=device, cache=cache, log=log, readout=readout)
                         for s in member_seeds(seed, size)]).eval()


def _for_inference(model: FeatNet, device: str) -> FeatNet:
    """``model`` on ``device`` in eval mode, its conv weights channels-last: with oneDNN's
    channels-last kernels features come 1.2-1.5x faster on a CPU at batch 128 (measured,
    docs/benchmarks.md#feature-extraction), equal to the default layout's to float32
    rounding (8e-6 on features of unit spread)."""
    # Module.to documents memory_format, but torch's typing overloads leave it out.
    return model.to(device).to(memory_format=torch.channels_last).eval()  # type: ignore[call-overload]
