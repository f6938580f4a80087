"""The FID feature networks as instruments, on real Fashion-MNIST test images (issue 22).

For each shipped network (seeds 0, 1, 2), read out as domain-v3 (the default) and as
domain-v2: test accuracy, effective dimension (participation ratio
of the test features' covariance), dead units, extraction time; FID of 2,000 test images
vs 2,000 other test images ("unseen") and vs "one image per class, repeated" (a collapsed
generator), with the coefficient of variation over the seeds; and the same FIDs plus
precision/recall/density/coverage for the old domain-v1 classifier (trained here, 2
epochs on 10,000 training images, as it was). One thread, so numbers are comparable
between runs; minutes on a CPU.

    PYTHONPATH=src python benchmarks/bench_features.py
"""

from __future__ import annotations

import tempfile
import time

import numpy as np
import torch

from spherevae.data import ImageDataset, load_dataset
from spherevae.evaluation import (
    density_coverage,
    domain_backbone,
    extract_features,
    feature_quality,
    frechet_distance,
    precision_recall,
    shipped_featnet,
)


def main() -> None:
    torch.set_num_threads(1)
    test, train = load_dataset("fashion-mnist", "test"), load_dataset("fashion-mnist", "train")
    x, y = test.images.float() / 255, test.labels
    ref, unseen = x[:2000], x[2000:4000]
    firsts = torch.stack([x[4000:][int(torch.nonzero(y[4000:] == c)[0])] for c in range(10)])
    sets = {"unseen": unseen, "one per class": firsts.repeat_interleave(200, 0),
            "class means": torch.stack([ref[y[:2000] == c].mean(0) for c in range(10)]).repeat_interleave(200, 0)}
    for readout in ("domain-v3", "domain-v2"):
        rows = []
        for seed in (0, 1, 2):
            net = shipped_featnet("fashion-mnist", seed, readout=readout)
            t0 = time.perf_counter()
            feats = extract_features(net, x)
            seconds = time.perf_counter() - t0
            quality = feature_quality(net, feats, x, y)
            fids = [frechet_distance(feats[:2000], extract_features(net, sets[k])) for k in ("unseen", "one per class")]
            rows.append(fids)
            print(f"{readout} seed {seed}: {quality}, extract 10k {seconds:.1f} s, "
                  f"FID unseen {fids[0]:.3f}, one per class {fids[1]:.2f} ({fids[1] / fids[0]:.0f}x)")
        a = np.array(rows)
        print(f"{readout}: CV over seeds (unseen, one per class):", np.round(a.std(0, ddof=1) / a.mean(0), 3).tolist())
    with tempfile.TemporaryDirectory() as cache:
        old = domain_backbone(ImageDataset(train.images[:10_000], train.labels[:10_000], "fashion-mnist"),
                              seed=0, epochs=2, cache=cache)
    for name, net in (("domain-v3 seed 0", shipped_featnet("fashion-mnist", 0)),
                      ("domain-v2 seed 0", shipped_featnet("fashion-mnist", 0, readout="domain-v2")),
                      ("domain-v1", old)):
        f_ref = extract_features(net, ref)
        for key, images in sets.items():
            f = extract_features(net, images)
            print(f"{name} vs {key}: FID {frechet_distance(f_ref, f):.3f}, "
                  f"{precision_recall(f_ref, f)}, {density_coverage(f_ref, f)}")


if __name__ == "__main__":
    main()
