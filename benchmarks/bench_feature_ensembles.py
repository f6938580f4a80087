"""The spread of the network population behind ``domain-x2`` (issue 22, 2026-12-07).

A CV over three feature networks (or three pairs) is a noisy estimate of how much the FID
of a cell depends on which networks read it. This script draws a run's samplers once (the
evaluation's seed, 10,000 samples each), reads them and the run's reconstructions and real
test images in **each of the six shipped networks** and **every one of the 15 pairs**
(the ``domain-x2`` read-out: two networks' ``domain-v3`` features concatenated over
sqrt(2)), and prints the FIDs with the CV over networks 0-2 (``domain``'s feature seeds),
over all six, over the three shipped pairs (``domain-x2``'s feature seeds 0/1/2 = networks
0+1, 2+3, 4+5) and over all 15 pairs. ``--quality`` first prints every network's and every
shipped pair's test accuracy, effective dimension and dead units on the 10,000 test
images. One thread; about 5 minutes per run for three samplers.

    PYTHONPATH=src python benchmarks/bench_feature_pairs.py RUN_DIR SAMPLER [SAMPLER ...] [--quality]
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
import torch

from spherevae.evaluation import (
    EvalConfig,
    FeatEnsemble,
    FeatNet,
    encode,
    extract_features,
    feature_quality,
    fit_samplers,
    frechet_distance,
    generate,
    load_context,
    member_seeds,
    shipped_featnet,
)

NETWORKS = range(6)


def cv(values: list[float]) -> float:
    return float(np.std(values, ddof=1) / np.mean(values))


def network(seed: int) -> FeatNet:
    net = shipped_featnet("fashion-mnist", seed)
    if net is None:
        raise SystemExit(f"no shipped Fashion-MNIST feature network of seed {seed}")
    return net


def quality(x: torch.Tensor, y: torch.Tensor) -> None:
    nets: dict[str, torch.nn.Module] = {f"network {s}": network(s) for s in NETWORKS}
    nets |= {f"domain-x2 seed {s}": FeatEnsemble([network(k) for k in member_seeds(s)]) for s in range(3)}
    for name, net in nets.items():
        q = feature_quality(net, extract_features(net, x, batch_size=128), x, y)
        print(f"{name}: test accuracy {q['test_accuracy']:.4f}, effective dim {q['effective_dim']:.2f}, "
              f"dead units {q['dead_units']} of {q['feature_dim']}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir")
    p.add_argument("samplers", nargs="+")
    p.add_argument("--quality", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(1)
    ctx = load_context(args.run_dir, EvalConfig(samplers=tuple(args.samplers), num_samples=10_000, seed=0,
                                                figures=False))
    encode(ctx)
    assert ctx.x_test is not None and ctx.x_hat is not None and ctx.test_labels is not None
    if args.quality:
        quality(ctx.x_test, ctx.test_labels)
    fit_samplers(ctx)
    generate(ctx)
    sets = {"recon": ctx.x_hat, "test": ctx.x_test, **ctx.samples}
    feats = [{k: extract_features(network(s), v, batch_size=128) for k, v in sets.items()}
             for s in NETWORKS]
    for name, ref in itertools.product(args.samplers, ("recon", "test")):
        single = [frechet_distance(f[ref], f[name]) for f in feats]
        pairs = {}
        for a, b in itertools.combinations(NETWORKS, 2):
            def cat(k: str, a: int = a, b: int = b) -> np.ndarray:
                return np.concatenate([feats[a][k], feats[b][k]], 1) / np.sqrt(2)
            pairs[(a, b)] = frechet_distance(cat(ref), cat(name))
        shipped = [pairs[tuple(member_seeds(s))] for s in range(3)]  # type: ignore[index]
        print(f"{name} vs {ref}: networks {np.round(single, 1)}; CV 0-2 {cv(single[:3]):.1%}, 0-5 {cv(single):.1%} | "
              f"shipped pairs {np.round(shipped, 1)} CV {cv(shipped):.1%} | all 15 pairs CV "
              f"{cv(list(pairs.values())):.1%}", flush=True)


if __name__ == "__main__":
    main()
