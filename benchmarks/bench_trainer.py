"""Trainer overhead vs a bare PyTorch loop, and seconds per epoch of the CPU configs.

    PYTHONPATH=src python benchmarks/bench_trainer.py overhead [--config C] [--epochs E] [--repeats R]
    PYTHONPATH=src python benchmarks/bench_trainer.py epoch --config configs/fmnist-standard-cpu.yaml

``overhead`` runs the same model, data, objective and number of steps two ways,
interleaved (bare, trainer, bare, trainer, ...) so that machine load affects both
alike, and prints the median ratio trainer/bare. The bare loop is the least a
training loop does: encode, reparameterise, decode, loss, backward, Adam step. The
trainer adds the schedule, on-device metric sums, NaN checks at log points, one test
batch per epoch, metrics.jsonl and a checkpoint per run.
``epoch`` trains one epoch of each config given and prints its seconds per epoch.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time

import torch

from spherevae.config import RunConfig, load_config
from spherevae.training import OBJECTIVES, _load_split, build_model, train


def bare_loop(cfg: RunConfig) -> float:
    """Seconds for ``cfg.train.epochs`` epochs of the plainest loop on the same setup."""
    from spherevae.data import BatchLoader

    ds = _load_split(cfg, "train")
    model = build_model(cfg, tuple(ds.images.shape[1:]))
    objective = OBJECTIVES[cfg.objective.name](cfg, model, cfg.data.name)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr, betas=cfg.optim.betas)
    loader = BatchLoader(
        ds, cfg.train.batch_size, shuffle=True, seed=cfg.train.seed, drop_last=True
    )
    gen = torch.Generator().manual_seed(cfg.train.seed + 1)
    t0 = time.perf_counter()
    for epoch in range(cfg.train.epochs):
        loader.set_epoch(epoch)
        for x, _ in loader:
            loss = objective.compute(model, x, 1.0, gen).losses["model"]
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def trainer_run(cfg: RunConfig) -> float:
    """Seconds in the trainer's epochs (its own epoch_time_s: loop + one test batch),
    leaving out what a bare loop also has to do once (load data, build the model)."""
    import json

    run = train(cfg)
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return sum(r["epoch_time_s"] for r in rows)


def overhead(args: argparse.Namespace) -> None:
    out = tempfile.mkdtemp(prefix="bench-trainer-")
    over = [
        f"train.out_dir={out}",
        f"train.epochs={args.epochs}",
        "train.progress=false",
        "train.tensorboard=false",
        f"train.checkpoint_every={args.epochs}",
        "data.max_test=256",
        "train.eval_batch_size=256",
        *args.overrides,
    ]
    cfg = load_config(args.config, over)
    # The bare loop has one optimiser; compare like with like.
    if cfg.objective.name == "authors":
        raise SystemExit("overhead: use a standard or compressed config")
    bare_loop(cfg)  # warm-up: first-touch allocations, lazy imports
    bare, ours = [], []
    for r in range(args.repeats):
        bare.append(bare_loop(cfg))
        run_cfg = load_config(args.config, [*over, f"train.run_name=r{r}"])
        ours.append(trainer_run(run_cfg))
    shutil.rmtree(out, ignore_errors=True)
    ratios = [o / b for o, b in zip(ours, bare, strict=True)]
    print(
        f"config {args.config} ({cfg.objective.name}), {cfg.train.epochs} epochs x {args.repeats} repeats, "
        f"torch threads {torch.get_num_threads()}"
    )
    print(
        f"bare loop   median {statistics.median(bare):.3f} s   runs {[round(b, 3) for b in bare]}"
    )
    print(
        f"trainer     median {statistics.median(ours):.3f} s   runs {[round(o, 3) for o in ours]}"
    )
    print(
        f"ratio trainer/bare: median {statistics.median(ratios):.3f}  (overhead {100 * (statistics.median(ratios) - 1):+.1f}%)"
    )


def epoch_time(args: argparse.Namespace) -> None:
    """One-epoch runs of each config, interleaved (A B, B A, ...) ``--repeats`` times, so
    the ratio between configs is measured side by side under the same machine load."""
    import json

    times: dict[str, list[float]] = {path: [] for path in args.configs}
    rmse: dict[str, float] = {}
    for rep in range(args.repeats):
        order = args.configs if rep % 2 == 0 else list(reversed(args.configs))
        for path in order:
            out = tempfile.mkdtemp(prefix="bench-epoch-")
            cfg = load_config(
                path,
                [f"train.out_dir={out}", "train.epochs=1", "train.progress=false", *args.overrides],
            )
            run = train(cfg)
            row = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
            times[path].append(row["epoch_time_s"])
            rmse[path] = row["test_rmse_percent"]
            shutil.rmtree(out, ignore_errors=True)
            print(f"  {path}: {row['epoch_time_s']:.1f} s", flush=True)
    first = statistics.median(times[args.configs[0]])
    print(f"| config | train images | s/epoch (median of {args.repeats}) | ratio to first | test RMSE% after 1 epoch |")
    print("|---|---|---|---|---|")
    for path in args.configs:
        cfg = load_config(path, list(args.overrides))
        med = statistics.median(times[path])
        print(f"| {path} | {cfg.data.max_train or 'all'} | {med:.1f} | {med / first:.3f} | {rmse[path]:.2f} |")
    print(f"(batch {cfg.train.batch_size}, torch threads {torch.get_num_threads()}, epoch time includes the test pass)")


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="what", required=True)
    o = sub.add_parser("overhead")
    o.add_argument("--config", default="configs/digits-tiny.yaml")
    o.add_argument("--epochs", type=int, default=5)
    o.add_argument("--repeats", type=int, default=5)
    o.add_argument("overrides", nargs="*")
    e = sub.add_parser("epoch")
    e.add_argument("--config", dest="configs", action="append", required=True)
    e.add_argument("--repeats", type=int, default=3)
    e.add_argument("overrides", nargs="*")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: stable timings on a shared machine)",
    )
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    {"overhead": overhead, "epoch": epoch_time}[args.what](args)


if __name__ == "__main__":
    main()
