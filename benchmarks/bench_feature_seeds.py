"""How much do the three shipped domain-v2 feature networks agree? (issue 22, 2026-12-07)

The FID of one pair of image sets, computed with each of the networks of seeds 0, 1, 2,
and the coefficient of variation (CV) over the seeds, for sets that differ by what VAE
samples differ by: nothing ("unseen" test images), blur, pixel noise, the samples of a
trained model. Then the same with the features read out or normalised differently (no
retraining), and with two networks' features concatenated (the cheapest ensemble), to see
what lowers the CV. Reference: test images 0-4999; "unseen": test images 5000-9999; the
degraded sets are degraded copies of "unseen". One thread; about 10 minutes on this CPU.

    PYTHONPATH=src python benchmarks/bench_feature_seeds.py [--run RUN_DIR]

``--run`` adds the samples of a trained run (10,000 each of its paper sampler and its `gmm`
against its reconstructions of the test set), e.g. the Fig 1 standard seed-0 run
of docs/results.md.
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from spherevae.data import load_dataset
from spherevae.evaluation import FeatNet, frechet_distance, shipped_featnet

SEEDS = (0, 1, 2)


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(N, C, H, W)`` (replicate padding, radius 3 sigma)."""
    r = int(3 * sigma) + 1
    t = torch.arange(-r, r + 1, dtype=images.dtype)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    c = images.shape[1]
    out = F.conv2d(F.pad(images, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(out, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


@torch.no_grad()
def stage_maps(net: FeatNet, images: torch.Tensor, batch: int = 1000) -> list[torch.Tensor]:
    """The pre-ReLU output maps of each stage, ``[(N, w_s, H_s, W_s)]``."""
    chunks = []
    for i in range(0, images.shape[0], batch):
        h, pre_per_stage = net.stem(images[i:i + batch]), []
        for stage in net.stages:
            for block in stage.children():
                pre = block(h)
                h = F.relu(pre)
            pre_per_stage.append(pre)
        chunks.append(pre_per_stage)
    return [torch.cat([c[s] for c in chunks]) for s in range(len(net.stages))]


# Feature read-outs of the same trained network: name -> maps -> (N, D) raw features.
READOUTS: dict[str, Callable[[list[torch.Tensor]], torch.Tensor]] = {
    "domain-v2 (GAP of stages 2-3)": lambda m: torch.cat([p.mean((2, 3)) for p in m[1:]], 1),
    "+ spatial RMS of stages 1-2": lambda m: torch.cat([p.mean((2, 3)) for p in m[1:]]
                                                       + [p.pow(2).mean((2, 3)).sqrt() for p in m[:2]], 1),
    "GAP + spatial std, stages 1-3": lambda m: torch.cat([p.mean((2, 3)) for p in m]
                                                         + [p.flatten(2).std(2) for p in m], 1),
    "GAP of post-ReLU, stages 1-3": lambda m: torch.cat([F.relu(p).mean((2, 3)) for p in m], 1),
}

# Per-unit scalings of the (centred) raw domain-v2 features: name -> training std -> divisor.
NORMALISATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "per-unit std (domain-v2)": lambda sd: sd,
    "none": lambda sd: torch.ones_like(sd),
    "one global scale": lambda sd: torch.full_like(sd, float(sd.pow(2).mean().sqrt())),
    "per-unit std, floored at the median": lambda sd: sd.clamp_min(float(sd.median())),
    "sqrt of the per-unit std": lambda sd: sd.sqrt(),
}


def cv(values: list[float]) -> float:
    return float(np.std(values, ddof=1) / np.mean(values))


def report(title: str, fids: dict[str, dict[str, list[float]]]) -> None:
    """``fids[variant][set]`` = FIDs per seed."""
    print(f"\n## {title}\n")
    sets = list(next(iter(fids.values())))
    print("| features | " + " | ".join(sets) + " |")
    print("|---|" + "---|" * len(sets))
    for variant, per_set in fids.items():
        print(f"| {variant} | " + " | ".join(f"{np.mean(v):.3g} (CV {cv(v):.1%})" for v in per_set.values()) + " |")


def image_sets(run_dir: str | None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """name -> (reference images, compared images), floats in [0, 1]."""
    x = load_dataset("fashion-mnist", "test").images.float() / 255
    ref, unseen = x[:5000], x[5000:]
    g = torch.Generator().manual_seed(0)
    sets = {"unseen": (ref, unseen), "blur 0.7 px": (ref, gaussian_blur(unseen, 0.7)),
            "blur 1.2 px": (ref, gaussian_blur(unseen, 1.2)),
            "noise 0.05": (ref, (unseen + 0.05 * torch.randn(unseen.shape, generator=g)).clamp(0, 1)),
            "noise 0.15": (ref, (unseen + 0.15 * torch.randn(unseen.shape, generator=g)).clamp(0, 1))}
    if run_dir is not None:
        import spherevae

        run = spherevae.load(run_dir)
        recon = run.reconstruct(x)
        for sampler in (run.metrics.get("main_sampler", "prior"), "gmm"):
            sets[f"run's {sampler} vs its recon"] = (recon, run.sample(10_000, sampler))
    return sets


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default=None, help="a trained Fashion-MNIST run directory (optional)")
    args = p.parse_args()
    torch.set_num_threads(1)
    train = load_dataset("fashion-mnist", "train").images[:20_000].float() / 255
    sets = image_sets(args.run)
    by_readout: dict[str, dict[str, list[float]]] = {}
    by_norm: dict[str, dict[str, list[float]]] = {}
    v2_features: list[dict[str, tuple[np.ndarray, np.ndarray]]] = []
    for seed in SEEDS:
        net = shipped_featnet("fashion-mnist", seed)
        assert net is not None, "the shipped Fashion-MNIST domain-v2 weights are missing"
        train_maps = stage_maps(net, train)
        maps = {name: (stage_maps(net, a), stage_maps(net, b)) for name, (a, b) in sets.items()}
        for readout, f in READOUTS.items():
            raw_train = f(train_maps).double()
            mu, sd = raw_train.mean(0), raw_train.std(0).clamp_min(1e-6)
            for name, (ma, mb) in maps.items():
                fa, fb = (f(ma).double() - mu) / sd, (f(mb).double() - mu) / sd
                by_readout.setdefault(readout, {}).setdefault(name, []).append(frechet_distance(fa.numpy(), fb.numpy()))
        raw = READOUTS["domain-v2 (GAP of stages 2-3)"]
        raw_train = raw(train_maps).double()
        mu, sd = raw_train.mean(0), raw_train.std(0)
        for norm, divisor in NORMALISATIONS.items():
            d = divisor(sd)
            for name, (ma, mb) in maps.items():
                fa, fb = (raw(ma).double() - mu) / d, (raw(mb).double() - mu) / d
                by_norm.setdefault(norm, {}).setdefault(name, []).append(frechet_distance(fa.numpy(), fb.numpy()))
        v2_features.append({name: (((raw(ma).double() - mu) / sd).numpy(), ((raw(mb).double() - mu) / sd).numpy())
                            for name, (ma, mb) in maps.items()})
        print(f"seed {seed} done", flush=True)
    pairs: dict[str, dict[str, list[float]]] = {"one network (seeds 0, 1, 2)": by_readout["domain-v2 (GAP of stages 2-3)"]}
    for name in sets:
        for i, j in itertools.combinations(range(len(SEEDS)), 2):
            fa = np.concatenate([v2_features[i][name][0], v2_features[j][name][0]], 1) / np.sqrt(2)
            fb = np.concatenate([v2_features[i][name][1], v2_features[j][name][1]], 1) / np.sqrt(2)
            pairs.setdefault("two networks concatenated (pairs 01, 02, 12)", {}).setdefault(name, []).append(
                frechet_distance(fa, fb))
    report("Read-outs of the same networks (FID mean over seeds, CV over seeds)", by_readout)
    report("Normalisations of the domain-v2 features", by_norm)
    report("One network vs two concatenated (the pairs share members, so their CV is a lower "
           "bound on that of independent pairs)", pairs)


if __name__ == "__main__":
    main()
