"""Write the shipped standardisation of a domain feature read-out for the shipped networks.

The weights files under ``src/spherevae/evaluation/weights/`` carry the standardisation of
the read-out their recipe trained with (``domain-v2``). Another read-out of the same
networks (``domain-v3``: mean and std of every stage) needs its own per-unit mean and std
over the training split; this script computes them from every training image of the
dataset (in eval mode, deterministic), writes ``<readout>-<dataset>-seed<s>.safetensors``
beside the weights and records them, with their sha256, in ``manifest.json``
("standardisations"). About a minute per seed on one CPU thread for Fashion-MNIST.

    .venv/bin/python scripts/ship_readout.py --readout domain-v3 --dataset fashion-mnist [--seeds 3 4 5]
"""

from __future__ import annotations

import argparse
import hashlib
import json

import torch

from spherevae.data import load_dataset
from spherevae.evaluation import featnet


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--readout", default=featnet.DEFAULT_READOUT, choices=sorted(featnet.READOUTS))
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="only these shipped seeds (default: all)")
    args = p.parse_args()
    torch.set_num_threads(1)
    train = load_dataset(args.dataset, "train", download=False)
    manifest_path = featnet.WEIGHTS_DIR / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    entries = manifest.setdefault("standardisations", {})
    for (dataset, seed), weights in sorted(featnet.SHIPPED_WEIGHTS.items()):
        if dataset != args.dataset or (args.seeds is not None and seed not in args.seeds):
            continue
        base, _ = featnet.load_featnet(featnet.WEIGHTS_DIR / weights, sha256=manifest["files"][weights]["sha256"])
        model = featnet.with_readout(base, args.readout, train.images)
        name = f"{args.readout}-{dataset}-seed{seed}.safetensors"
        featnet.save_standardisation(model, featnet.WEIGHTS_DIR / name, args.readout,
                                     extra={"weights": weights, "dataset": dataset, "seed": str(seed)})
        entries[name] = {"weights": weights, "readout": args.readout, "images": int(train.images.shape[0]),
                         "feature_dim": model.feature_dim,
                         "sha256": hashlib.sha256((featnet.WEIGHTS_DIR / name).read_bytes()).hexdigest()}
        print(f"{name}: {model.feature_dim} features, from {train.images.shape[0]} training images", flush=True)
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
