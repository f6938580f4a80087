"""Trainer overhead vs a bare PyTorch loop, and seconds per epoch of the CPU configs.

    PYTHONPATH=src python benchmarks/bench_trainer.py overhead [--config C] [--epochs E] [--repeats R]
    PYTHONPATH=src python benchmarks/bench_trainer.py epoch --config configs/fmnist-standard-cpu.yaml

``overhead`` trains the same model (same initial weights), on the same data in the same
order, with the same noise generator, schedule multipliers and objective loss, two ways:
a bare loop (forward + objective loss, backward, Adam step; nothing else) and the
:class:`~spherevae.training.trainer.Trainer`. Runs are interleaved (bare, trainer, then trainer,
bare, ...) so that machine load affects both alike; it prints both medians, the median
of the per-pair ratios trainer/bare, the load average before and after, and whether the
two final weights are bit-identical (they must be: the same work was done). Times are
wall-clock and CPU time of the process: with one torch thread the CPU time is what load
from other processes disturbs least (it leaves out waiting for the disk, e.g. fsync). The
trainer's time is that of its epoch loop: every train step plus what the trainer
adds (on-device metric sums, NaN checks at log points, the per-epoch test pass, the
epoch record, metrics.jsonl, the checkpoint); set-up and the final weights file are left
out, as the bare loop's data loading and model building are. ``train_epoch`` alone is the
per-step part: the train steps, data, schedule, on-device sums and log-point reads.
``epoch`` trains one epoch of each config given and prints its seconds per epoch.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from typing import Any

import torch

from spherevae.io.weights import load_weights
from spherevae.training.config import RunConfig, load_config
from spherevae.training.objectives import build_objective
from spherevae.training.runs import _ConfigTrainer, build_model, load_split, train
from spherevae.training.schedules import Clock, make_schedule
from spherevae.training.trainer import resolve_device

Times = tuple[float, float]  # (wall-clock s, CPU s of this process)


def _now() -> Times:
    return time.perf_counter(), time.process_time()


def _since(t0: Times) -> Times:
    wall, cpu = _now()
    return wall - t0[0], cpu - t0[1]


def _add(a: Times, b: Times) -> Times:
    return a[0] + b[0], a[1] + b[1]


def bare_loop(cfg: RunConfig) -> tuple[Times, dict[str, torch.Tensor]]:
    """Times of ``cfg.train.epochs`` epochs of the plainest loop on the same set-up,
    and the final weights."""
    from spherevae.data.loader import BatchLoader

    ds = load_split(cfg, "train")
    device = resolve_device(cfg.train.device)
    model = build_model(cfg, tuple(ds.images.shape[1:])).to(device)
    objective = build_objective(cfg, model.latent_dim).to(device)
    o = cfg.optim
    opt = torch.optim.Adam(model.parameters(), lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
    decay = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=o.lr_decay)
    loader = BatchLoader(
        ds, cfg.train.batch_size, shuffle=True, seed=cfg.train.seed, drop_last=True,
        device=device, keep_on_device=cfg.data.keep_on_device,
    )
    schedule = make_schedule(cfg.schedule.name, cfg.schedule.params)
    gen = torch.Generator(device).manual_seed(cfg.train.seed + 1)
    steps, epochs = len(loader), cfg.train.epochs
    t0 = _now()
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        # The multipliers as the trainer feeds them (float32 on the device), so that the
        # loss is computed identically and the final weights can be compared bit for bit.
        ms = torch.tensor([schedule(Clock(epoch, s, steps, epochs)) for s in range(steps)], device=device)
        for step, (x, _) in enumerate(loader):
            loss = objective.compute(model, x, ms[step], gen).losses["model"]
            loss.backward()
            if o.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
        decay.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # the trainer's epochs end with a host read too
    return _since(t0), {k: v.cpu() for k, v in model.state_dict().items()}


class _TimedTrainer(_ConfigTrainer):
    """The config-driven Trainer, timing its epoch loop (first epoch start to ``finish``)
    and, within it, the time in :meth:`train_epoch` (the train steps and log points)."""

    t_first: Times | None = None
    seconds: Times = (0.0, 0.0)
    step_seconds: Times = (0.0, 0.0)

    def train_epoch(self, epoch: int, bar: Any) -> None:
        t0 = _now()
        if self.t_first is None:
            self.t_first = t0
        super().train_epoch(epoch, bar)
        self.step_seconds = _add(self.step_seconds, _since(t0))

    def finish(self) -> None:
        self.seconds = _since(self.t_first or _now())
        super().finish()


def trainer_run(cfg: RunConfig) -> tuple[Times, Times, dict[str, torch.Tensor]]:
    """Times of the trainer's epoch loop, of its ``train_epoch``s, and the final weights."""
    trainer = _TimedTrainer(cfg)
    run = trainer.fit()
    return trainer.seconds, trainer.step_seconds, load_weights(run / "model.safetensors")[0]


def _load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


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
    load_before = _load()
    bare_loop(cfg)  # warm-up: first-touch allocations, lazy imports
    trainer_run(load_config(args.config, [*over, "train.run_name=warmup"]))
    bare, ours, steps_only, same = [], [], [], []
    for r in range(args.repeats):
        run_cfg = load_config(args.config, [*over, f"train.run_name=r{r}"])
        first, second = (bare_loop, trainer_run) if r % 2 == 0 else (trainer_run, bare_loop)
        res: dict[Any, Any] = {f: f(run_cfg if f is trainer_run else cfg) for f in (first, second)}
        (tb, wb), (tt, ts, wt) = res[bare_loop], res[trainer_run]
        bare.append(tb)
        ours.append(tt)
        steps_only.append(ts)
        same.append(all(torch.equal(wb[k], wt[k]) for k in wt))
    shutil.rmtree(out, ignore_errors=True)
    print(
        f"config {args.config} ({cfg.objective.name}, schedule {cfg.schedule.name}), "
        f"{cfg.train.epochs} epochs x {args.repeats} interleaved repeats, "
        f"torch threads {torch.get_num_threads()}, load average before {load_before}, after {_load()}"
    )
    for clock, i in (("wall", 0), ("cpu", 1)):
        print(f"[{clock}] bare loop             median {statistics.median(t[i] for t in bare):.3f} s   "
              f"runs {[round(t[i], 3) for t in bare]}")
        for what, times in (("epoch loop", ours), ("train_epoch", steps_only)):
            ratios = [t[i] / b[i] for t, b in zip(times, bare, strict=True)]
            med = statistics.median(ratios)
            q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [med, med, med]
            mins = min(t[i] for t in times) / min(b[i] for b in bare)
            print(f"[{clock}] trainer, {what:12s} median {statistics.median(t[i] for t in times):.3f} s   "
                  f"ratio to bare: median of pairs {med:.3f} (IQR {q[0]:.3f}-{q[2]:.3f}), min/min {mins:.3f}")
    print(f"final weights bit-identical in every pair: {all(same)}")


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
