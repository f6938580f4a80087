"""The spread of the network population behind ``domain-x2`` and ``domain-x3`` (issue 22).

A CV over three feature networks (or three ensembles) is a noisy estimate of how much the
FID of a cell depends on which networks read it. This script draws a run's samplers once
(the evaluation's seed, 10,000 samples each), reads them, the run's reconstructions and the
real test images in **every shipped network** (nine for Fashion-MNIST), and computes the
FID in each network and in **every ensemble of ``--size`` networks** (the ``domain-x<k>``
read-out: the networks' ``domain-v3`` features concatenated over sqrt(k)). Per (sampler,
reference) it prints the single networks' FIDs and their CV, the shipped ensembles'
(``domain-x<k>`` feature seeds 0/1/2 = networks ``k*s .. k*s + k - 1``) and their CV, and
the distribution over **every splitting**: every way to pick three disjoint ensembles from
the networks, as the shipped feature seeds are one such pick (mean CV, share above 10%,
the shipped one's rank, 1 = lowest CV). ``--quality`` first prints every network's and
every shipped ensemble's test accuracy, effective dimension and dead units.

An ensemble's mean and covariance are blocks of the joint statistics of all networks'
features (divided by sqrt(k) and k), so each set's features are extracted once per
network. One thread; about 50 minutes for three samplers at ``--size 2 3`` beside two
evaluations on 2 cores (2026-12-08).

    PYTHONPATH=src python benchmarks/bench_feature_ensembles.py RUN_DIR SAMPLER [SAMPLER ...] \
        [--size 2 3] [--quality]
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Iterator

import numpy as np
import torch

from spherevae.evaluation import (
    SHIPPED_WEIGHTS,
    EvalConfig,
    FeatEnsemble,
    FeatNet,
    encode,
    extract_features,
    feature_quality,
    fit_samplers,
    frechet_distance_from_stats,
    generate,
    load_context,
    member_seeds,
    psd_sqrt,
    shipped_featnet,
)

DATASET = "fashion-mnist"
FEATURE_SEEDS = 3  # feature seeds per evaluation, as the Fig 1 sweeps use


def cv(values: list[float]) -> float:
    return float(np.std(values, ddof=1) / np.mean(values))


def network(seed: int) -> FeatNet:
    net = shipped_featnet(DATASET, seed)
    if net is None:
        raise SystemExit(f"no shipped {DATASET} feature network of seed {seed}")
    return net


def splittings(networks: list[int], size: int, count: int = FEATURE_SEEDS) -> Iterator[tuple[tuple[int, ...], ...]]:
    """Every unordered pick of ``count`` disjoint ensembles of ``size`` networks, each
    ensemble a sorted tuple; the picks in lexicographic order (first ensemble smallest)."""
    def pick(rest: list[int], left: int, lowest: tuple[int, ...]) -> Iterator[tuple[tuple[int, ...], ...]]:
        if left == 0:
            yield ()
            return
        for first in itertools.combinations(rest, size):
            if first > lowest:
                others = [n for n in rest if n not in first]
                for tail in pick(others, left - 1, first):
                    yield (first, *tail)
    yield from pick(sorted(networks), count, ())


def quality(loaded: dict[int, FeatNet], sizes: list[int], x: torch.Tensor, y: torch.Tensor) -> None:
    nets: dict[str, torch.nn.Module] = {f"network {s}": net for s, net in loaded.items()}
    nets |= {f"domain-x{size} seed {s}": FeatEnsemble([loaded[k] for k in member_seeds(s, size)])
             for size in sizes for s in range(FEATURE_SEEDS)}
    for name, net in nets.items():
        q = feature_quality(net, extract_features(net, x, batch_size=128), x, y)
        print(f"{name}: test accuracy {q['test_accuracy']:.4f}, effective dim {q['effective_dim']:.2f}, "
              f"dead units {q['dead_units']} of {q['feature_dim']}", flush=True)


class JointStats:
    """Mean and covariance of all networks' features of one image set, side by side: the
    statistics of any ensemble are a block of them (``ensemble(nets)``: mean / sqrt(k),
    covariance / k)."""

    def __init__(self, feats: list[np.ndarray]) -> None:
        self.dims = np.cumsum([0] + [f.shape[1] for f in feats])
        joint = np.concatenate(feats, 1).astype(np.float64)
        self.mu = joint.mean(0)
        self.cov = np.cov(joint, rowvar=False)

    def ensemble(self, nets: tuple[int, ...], positions: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
        idx = np.concatenate([np.arange(self.dims[positions[n]], self.dims[positions[n] + 1]) for n in nets])
        return self.mu[idx] / np.sqrt(len(nets)), self.cov[np.ix_(idx, idx)] / len(nets)


def report(label: str, single: list[float], fids: dict[tuple[int, ...], float], size: int,
           networks: list[int]) -> None:
    shipped = tuple(tuple(member_seeds(s, size)) for s in range(FEATURE_SEEDS))
    cvs = {split: cv([fids[e] for e in split]) for split in splittings(networks, size)}
    ranked = sorted(cvs.values())
    print(f"{label}: networks {np.round(single, 1)} CV {cv(single):.1%} | shipped x{size} "
          f"{np.round([fids[e] for e in shipped], 1)} CV {cvs[shipped]:.1%} | {len(cvs)} splittings: mean CV "
          f"{np.mean(ranked):.1%}, {np.mean(np.array(ranked) > 0.10):.0%} above 10%, shipped ranks "
          f"{ranked.index(cvs[shipped]) + 1}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir")
    p.add_argument("samplers", nargs="+")
    p.add_argument("--size", type=int, nargs="+", default=[3], help="networks per ensemble (default 3; several: "
                   "each, on the same features)")
    p.add_argument("--quality", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(1)
    networks = sorted(s for (d, s) in SHIPPED_WEIGHTS if d == DATASET)
    if min(args.size) < 2 or len(networks) < FEATURE_SEEDS * max(args.size):
        raise SystemExit(f"--size {args.size}: needs sizes >= 2 and {FEATURE_SEEDS} x size networks, "
                         f"{len(networks)} shipped")
    positions = {n: i for i, n in enumerate(networks)}
    loaded = {s: network(s) for s in networks}  # each file read and checksummed once
    ctx = load_context(args.run_dir, EvalConfig(samplers=tuple(args.samplers), num_samples=10_000, seed=0,
                                                figures=False))
    encode(ctx)
    assert ctx.x_test is not None and ctx.x_hat is not None and ctx.test_labels is not None
    if args.quality:
        quality(loaded, args.size, ctx.x_test, ctx.test_labels)
    fit_samplers(ctx)
    generate(ctx)
    sets = {"recon": ctx.x_hat, "test": ctx.x_test, **ctx.samples}
    stats = {k: JointStats([extract_features(loaded[s], v, batch_size=128) for s in networks])
             for k, v in sets.items()}
    for size in args.size:
        ensembles = list(itertools.combinations(networks, size))
        for ref in ("recon", "test"):
            blocks = {e: stats[ref].ensemble(e, positions) for e in [*((n,) for n in networks), *ensembles]}
            roots = {e: psd_sqrt(cov) for e, (_, cov) in blocks.items()}  # once per reference, for every sampler
            for name in args.samplers:
                fids = {e: frechet_distance_from_stats(*blocks[e], *stats[name].ensemble(e, positions),
                                                       root1=roots[e]) for e in blocks}
                report(f"{name} vs {ref}", [fids[(n,)] for n in networks], fids, size, networks)

if __name__ == "__main__":
    main()
