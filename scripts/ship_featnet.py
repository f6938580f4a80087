"""Ship one more trained domain feature network (recipe ``featnet.RECIPE``) for a dataset.

Trains the network of ``--seed`` by the recipe on the dataset's training split (one CPU
thread, about 23-35 min for Fashion-MNIST), or takes a file that ``train_featnet`` +
``save_featnet`` already wrote (``--weights FILE --train-seconds S``, e.g. from a parallel
training), measures its own head's accuracy on the test split, writes it as
``<version>-<dataset>-seed<S>.safetensors`` under ``src/spherevae/evaluation/weights/`` and
records it in ``manifest.json`` (dataset, image shape, classes, seed, recipe version, test
accuracy, training seconds, sha256). It refuses a seed that is shipped already and a network
below 0.92 test accuracy unless ``--force``. Then ship its read-outs' standardisations:

    .venv/bin/python scripts/ship_featnet.py --seed 3 --dataset fashion-mnist
    .venv/bin/python scripts/ship_readout.py --readout domain-v3 --dataset fashion-mnist
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time

import torch

from spherevae.data import load_dataset
from spherevae.evaluation import featnet

# The shipped networks' test accuracy floor (tests/evaluation/test_featnet.py checks it).
ACCURACY_FLOOR = 0.92


def _test_accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        pred = torch.cat([model(images[i:i + 1000].float() / 255).argmax(1) for i in range(0, len(images), 1000)])
    return float((pred == labels).double().mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--weights", default=None, help="a trained file to ship instead of training")
    p.add_argument("--train-seconds", type=int, default=None,
                   help="its training time (required with --weights; say how it was measured in the docs)")
    p.add_argument("--force", action="store_true",
                   help="replace a shipped seed (its read-out standardisations are removed: rerun "
                        "ship_readout.py) or ship a network below the accuracy floor")
    args = p.parse_args()
    if args.weights is not None and args.train_seconds is None:
        raise SystemExit("--weights needs --train-seconds (the manifest records every network's training time)")
    torch.set_num_threads(1)
    train = load_dataset(args.dataset, "train", download=False)
    test = load_dataset(args.dataset, "test", download=False)
    if train.labels is None or test.labels is None:
        raise SystemExit(f"{args.dataset}: the domain network needs class labels")
    if args.weights is None:
        t0 = time.perf_counter()
        model, _ = featnet.train_featnet(train.images, train.labels, seed=args.seed, log=print)
        seconds = round(time.perf_counter() - t0)
    else:
        model, meta = featnet.load_featnet(args.weights)
        if json.loads(meta["recipe"]) != featnet.RECIPE or meta.get("seed") != str(args.seed):
            raise SystemExit(f"{args.weights}: not seed {args.seed} of the current recipe")
        seconds = args.train_seconds
    name = f"{featnet.RECIPE['version']}-{args.dataset}-seed{args.seed}.safetensors"
    path = featnet.WEIGHTS_DIR / name
    manifest_path = featnet.WEIGHTS_DIR / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    if name in manifest["files"] and not args.force:
        raise SystemExit(f"{name} is shipped already: --force replaces it")
    accuracy = round(_test_accuracy(model, test.images, test.labels), 4)
    if accuracy < ACCURACY_FLOOR and not args.force:
        raise SystemExit(f"test accuracy {accuracy} is below the shipped networks' floor {ACCURACY_FLOOR}")
    # A replaced network's read-out standardisations belong to the old weights: drop them, so
    # that shipped_featnet never pairs new weights with another network's statistics.
    for stats in [k for k, v in manifest.get("standardisations", {}).items() if v["weights"] == name]:
        del manifest["standardisations"][stats]
        (featnet.WEIGHTS_DIR / stats).unlink(missing_ok=True)
    featnet.save_featnet(model, path, featnet.RECIPE, extra={"dataset": args.dataset, "seed": str(args.seed)})
    manifest["files"][name] = {
        "dataset": args.dataset, "image_shape": list(train.images.shape[1:]),
        "num_classes": int(train.labels.max()) + 1, "seed": args.seed, "version": featnet.RECIPE["version"],
        "test_accuracy": accuracy, "train_seconds_1thread": seconds,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    print(f"{name}: {manifest['files'][name]}", flush=True)


if __name__ == "__main__":
    main()
