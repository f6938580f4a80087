"""GPU training-step speed: the compressed loss's extra cost and images/s, before and after.

Every configuration is measured side by side in one run, standard vs compressed
interleaved in blocks (A B, B A, ...), so drift in the machine hits both alike:

- ``eager``         today's step: eager model, foreach Adam, the torch prior loss (fp32).
- ``eager+bf16``    today's trainer on the paper config: the same with bfloat16 autocast.
- ``eager+triton``  the same with the Triton prior loss (spherevae.losses.kernels).
- ``graph``         the whole step captured as a CUDA graph (spherevae.training.cudagraph), fused
                    capturable Adam, Triton prior loss, fp32.
- ``graph+bf16+cl`` the graph with bfloat16 autocast and channels_last activations.

``step`` mode: median ms per step and the median compressed/standard ratio over blocks of
``--block`` steps at batch 200, n = 200 and 1000 (the issue's goal: <= 3% / <= 5%).
``throughput`` mode: images/s of the CIFAR-10 paper configs (batch 128) on synthetic
CIFAR-shaped uint8 data kept on the GPU, each step including the batch gather and
scaling the trainer's loader does. ``profile`` mode: kernels per step and the GPU busy
fraction (what bounds the step: launches, or the GPU's own work), and model FLOPs.

    PYTHONPATH=src python benchmarks/bench_gpu_step.py step [--latent-dims 200 1000]
    PYTHONPATH=src python benchmarks/bench_gpu_step.py throughput
    PYTHONPATH=src python benchmarks/bench_gpu_step.py profile
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from spherevae.training.config import load_config
from spherevae.training.cudagraph import GraphedStep, capturable_adam
from spherevae.training.objectives import TERMS, build_objective
from spherevae.training.runs import build_model

MODES = ("eager", "eager+bf16", "eager+triton", "graph", "graph+bf16+cl")


@dataclass
class Setup:
    step: Callable[[torch.Tensor], torch.Tensor]
    model: torch.nn.Module


DEV = "cuda"  # "cpu" only for --smoke (eager modes, to check this script without a GPU)


def _config(objective: str, n: int, batch: int, backend: str | None) -> Any:
    extra = [f"objective.loss_overrides={{backend: {backend}}}"] if backend else []
    return load_config(f"cifar10-{objective}", overrides=[
        f"model.latent_dim={n}", f"train.batch_size={batch}", f"train.device={DEV}",
        "data.name=synthetic", "data.options={image_shape: [3, 32, 32], train_size: 256, test_size: 256}",
        *extra,
    ])


def make_setup(objective: str, n: int, batch: int, mode: str, seed: int = 0) -> Setup:
    """One training step of the paper's CIFAR-10 config for ``objective`` in ``mode``."""
    torch_loss = mode in ("eager", "eager+bf16") and objective == "compressed"
    cfg = _config(objective, n, batch, "torch" if torch_loss else None)
    torch.manual_seed(seed)
    model = build_model(cfg, (3, 32, 32)).to(DEV)
    obj = build_objective(cfg, model.latent_dim).to(DEV)
    groups = obj.parameter_groups(model)
    noise = torch.Generator(DEV).manual_seed(seed + 1)
    bf16 = "bf16" in mode
    if mode.endswith("+cl"):
        model = model.to(memory_format=torch.channels_last)

    def autocast() -> Any:
        return torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    clip = cfg.optim.grad_clip
    if mode.startswith("graph"):
        opts = {k: capturable_adam(p, cfg.optim.lr) for k, p in groups.items()}
        graphed = GraphedStep(model, obj, opts, groups, TERMS, noise, grad_clip=clip,
                              autocast=autocast, warmup=3)

        def step(x: torch.Tensor) -> torch.Tensor:
            if mode.endswith("+cl"):
                x = x.contiguous(memory_format=torch.channels_last)
            return graphed(x, 1.0)

        return Setup(step, model)
    opts = {k: torch.optim.Adam(p, lr=cfg.optim.lr) for k, p in groups.items()}

    def eager_step(x: torch.Tensor) -> torch.Tensor:
        with autocast():
            out = obj.compute(model, x, 1.0, noise)
        for name, loss in out.losses.items():
            loss.backward(inputs=groups[name])
        for name, opt in opts.items():
            torch.nn.utils.clip_grad_norm_(groups[name], clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
        return torch.stack([out.terms[k].detach().float() for k in TERMS])

    return Setup(eager_step, model)


def timed_block(step: Callable[[torch.Tensor], torch.Tensor], batches: list[torch.Tensor]) -> float:
    """Seconds per step over the block (one sync at the end)."""
    _sync()
    t0 = time.perf_counter()
    sums = torch.zeros(len(TERMS), device=DEV)
    for x in batches:
        sums += step(x)
    _sync()
    seconds = time.perf_counter() - t0
    if not bool(torch.isfinite(sums).all()):
        raise RuntimeError("non-finite loss during the benchmark")
    return seconds / len(batches)


def _sync() -> None:
    if DEV == "cuda":
        torch.cuda.synchronize()


def _device_name() -> str:
    return torch.cuda.get_device_name() if DEV == "cuda" else "cpu (smoke test)"


def _batches(batch: int, count: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator(DEV).manual_seed(seed)
    return [torch.rand(batch, 3, 32, 32, device=DEV, generator=g) for _ in range(count)]


def step_mode(args: argparse.Namespace) -> None:
    print(f"step: batch={args.batch_size} block={args.block} blocks={args.blocks} "
          f"torch={torch.__version__} device={_device_name()}")
    print(f"{'n':>5} {'mode':>14} {'standard ms':>12} {'compressed ms':>14} {'median C/S':>11} {'IQR':>17}")
    for n in args.latent_dims:
        batches = _batches(args.batch_size, args.block, seed=n)
        for mode in args.modes:
            a = make_setup("standard", n, args.batch_size, mode)
            b = make_setup("compressed", n, args.batch_size, mode)
            for s in (a, b):
                timed_block(s.step, batches[:max(5, args.block // 4)])  # warm-up + capture
            ta, tb = [], []
            for i in range(args.blocks):
                order = (a, b) if i % 2 == 0 else (b, a)
                t = {id(s): timed_block(s.step, batches) for s in order}
                ta.append(t[id(a)])
                tb.append(t[id(b)])
            ratios = [y / x for x, y in zip(ta, tb, strict=True)]
            q = statistics.quantiles(ratios, n=4, method="inclusive")
            print(f"{n:>5} {mode:>14} {1000 * statistics.median(ta):>12.3f} "
                  f"{1000 * statistics.median(tb):>14.3f} {statistics.median(ratios):>11.4f} "
                  f"{q[0]:>8.4f}..{q[2]:<7.4f}", flush=True)


def throughput_mode(args: argparse.Namespace) -> None:
    """Images/s including the loader's on-GPU gather of a uint8 dataset and its scaling."""
    size = args.dataset_size
    data = torch.randint(0, 256, (size, 3, 32, 32), dtype=torch.uint8, device=DEV,
                         generator=torch.Generator(DEV).manual_seed(0))
    batch = args.paper_batch
    print(f"throughput: batch={batch} steps={args.steps} dataset={size} (uint8 on the GPU) "
          f"torch={torch.__version__} device={_device_name()}")
    print(f"{'n':>5} {'mode':>14} {'standard img/s':>15} {'compressed img/s':>17} {'C/S time':>9}")
    for n in args.latent_dims:
        for mode in args.modes:
            rates = {}
            setups = {o: make_setup(o, n, batch, mode) for o in ("standard", "compressed")}
            for rep in range(args.repeats):
                for o in (("standard", "compressed") if rep % 2 == 0 else ("compressed", "standard")):
                    perm = torch.randperm(size, device=DEV, generator=torch.Generator(DEV).manual_seed(rep))
                    steps = min(args.steps, size // batch)

                    def loader_step(i: int, s: Setup = setups[o], perm: torch.Tensor = perm) -> torch.Tensor:
                        x = data.index_select(0, perm[i * batch:(i + 1) * batch]).float().div_(255.0)
                        return s.step(x)

                    for i in range(5):  # warm-up (and the capture) outside the timing
                        loader_step(i)
                    _sync()
                    t0 = time.perf_counter()
                    sums = torch.zeros(len(TERMS), device=DEV)
                    for i in range(steps):
                        sums += loader_step(i)
                    _sync()
                    rates.setdefault(o, []).append(steps * batch / (time.perf_counter() - t0))
            s_rate = statistics.median(rates["standard"])
            c_rate = statistics.median(rates["compressed"])
            print(f"{n:>5} {mode:>14} {s_rate:>15.0f} {c_rate:>17.0f} {s_rate / c_rate:>9.4f}", flush=True)


def profile_mode(args: argparse.Namespace) -> None:
    """Kernels per step and GPU busy time per step (sum of kernel times / wall time)."""
    from torch.profiler import ProfilerActivity, profile
    from torch.utils.flop_counter import FlopCounterMode

    batch = args.paper_batch
    print(f"profile: batch={batch} torch={torch.__version__} device={_device_name()}")
    print(f"{'n':>5} {'objective':>10} {'mode':>14} {'kernels/step':>13} {'GPU busy ms':>12} "
          f"{'wall ms':>9} {'busy %':>7} {'GFLOP/step':>11} {'TFLOP/s':>8}")
    for n in args.latent_dims:
        batches = _batches(batch, 20, seed=n)
        for objective in ("standard", "compressed"):
            flops = None
            for mode in args.modes:
                s = make_setup(objective, n, batch, mode)
                timed_block(s.step, batches[:6])
                if flops is None:
                    with FlopCounterMode(display=False) as counter:
                        make_setup(objective, n, batch, "eager").step(batches[0])
                    flops = counter.get_total_flops()
                wall = timed_block(s.step, batches)
                activity = ProfilerActivity.CUDA if DEV == "cuda" else ProfilerActivity.CPU
                with profile(activities=[activity]) as prof:
                    for x in batches[:10]:
                        s.step(x)
                    torch.cuda.synchronize()
                kernels = [e for e in prof.events() if e.device_type.name == DEV.upper()]
                busy = sum(e.time_range.elapsed_us() for e in kernels) / 1000 / 10  # ms per step
                print(f"{n:>5} {objective:>10} {mode:>14} {len(kernels) / 10:>13.0f} {busy:>12.3f} "
                      f"{1000 * wall:>9.3f} {100 * busy / (1000 * wall):>7.1f} {flops / 1e9:>11.2f} "
                      f"{flops / wall / 1e12:>8.1f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("step", "throughput", "profile"))
    parser.add_argument("--latent-dims", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--batch-size", type=int, default=200, help="step mode (the issue's batch)")
    parser.add_argument("--paper-batch", type=int, default=128, help="throughput/profile (the config's)")
    parser.add_argument("--block", type=int, default=20)
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dataset-size", type=int, default=50_000)
    parser.add_argument("--smoke", action="store_true",
                        help="CPU, eager modes, tiny sizes: checks the script without a GPU")
    args = parser.parse_args()
    global DEV
    if args.smoke:
        DEV = "cpu"
        args.modes = [m for m in args.modes if m.startswith("eager")]
        args.latent_dims, args.block, args.blocks, args.steps = [16], 2, 2, 2
        args.batch_size = args.paper_batch = 8
        args.repeats, args.dataset_size = 2, 64
    elif not torch.cuda.is_available():
        raise SystemExit("bench_gpu_step.py needs a CUDA GPU (or --smoke on CPU)")
    torch.backends.cudnn.benchmark = True
    {"step": step_mode, "throughput": throughput_mode, "profile": profile_mode}[args.what](args)


if __name__ == "__main__":
    main()
