"""The ``spherevae`` command line.

Subcommands are registered in :data:`COMMANDS` (name -> :class:`Command`); each one
adds its own arguments and runs a library function, so the CLI holds no logic of
its own. Heavy imports happen inside the run functions to keep ``--help`` fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["COMMANDS", "Command", "build_parser", "main"]


@dataclass(frozen=True)
class Command:
    """A subcommand: its help line, how it adds arguments, and what it runs."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--latent-dim", type=int, default=128, help="n (default 128)")
    p.add_argument("--batch", type=int, default=256, help="batch size (default 256)")
    p.add_argument("--seed", type=int, default=0)


def _demo_run(args: argparse.Namespace) -> int:
    from spherevae.demo import run_demo
    from spherevae.rundir import UserError

    for flag, value in (("--latent-dim", args.latent_dim), ("--batch", args.batch)):
        if value < 2:
            raise UserError(f"{flag} must be an integer >= 2, got {value}")

    run_demo(latent_dim=args.latent_dim, batch=args.batch, seed=args.seed)
    return 0


def _evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a run directory written by `spherevae train`")
    p.add_argument("--num-samples", type=int, default=10_000, help="samples per sampler for FID")
    p.add_argument("--samplers", nargs="+", default=None,
                   help="samplers to evaluate (default: prior/vmf/gaussian or vmf/prior_sphere/gaussian_sphere)")
    p.add_argument("--backbone", default="domain", help="FID features: domain (default) or inception")
    p.add_argument("--inception-weights", default=None,
                   help="local Inception-v3 FID weights file (or env SPHEREVAE_INCEPTION_WEIGHTS)")
    p.add_argument("--max-test", type=int, default=None, help="evaluate on the first N test images")
    p.add_argument("--tsne-points", type=int, default=10_000)
    p.add_argument("--no-figures", action="store_true")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)


def _evaluate_run(args: argparse.Namespace) -> int:
    import json

    from spherevae.evaluation import evaluate_run

    metrics = evaluate_run(
        args.run_dir, num_samples=args.num_samples,
        samplers=tuple(args.samplers) if args.samplers else None, backbone=args.backbone,
        inception_weights=args.inception_weights, max_test=args.max_test,
        tsne_points=args.tsne_points, figures=not args.no_figures, device=args.device,
        seed=args.seed,
    )
    shown = {k: v for k, v in metrics.items() if not isinstance(v, dict)}
    print(json.dumps(shown, indent=2, sort_keys=True))
    return 0


def _report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dirs", nargs="+", help="evaluated run directories")
    p.add_argument("--out", default="report.html", help="output HTML file")
    p.add_argument("--title", default="spherevae report")


def _report_run(args: argparse.Namespace) -> int:
    from spherevae.report import load_run_summary, write_report

    path = write_report([load_run_summary(d) for d in args.run_dirs], args.out, title=args.title)
    print(f"report: {path}")
    return 0


def _sweep_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="a sweep YAML file (configs/sweeps/)")
    p.add_argument("--backend", default=None, help="local (default) or ray")
    p.add_argument("--workers", type=int, default=None, help="runs at a time")
    p.add_argument("overrides", nargs="*", help="key.sub=value applied to every run")


def _sweep_run(args: argparse.Namespace) -> int:
    from spherevae.experiments import load_sweep, run_sweep

    rows = run_sweep(load_sweep(args.config, args.overrides), backend=args.backend,
                     workers=args.workers)
    return 1 if any(r["status"] == "failed" for r in rows) else 0


def _quickstart_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/quickstart", help="output directory")
    p.add_argument("--configs-dir", default=None, help="where the fmnist-*-cpu.yaml configs are")
    p.add_argument("overrides", nargs="*", help="key.sub=value applied to both runs")


def _quickstart_run(args: argparse.Namespace) -> int:
    from spherevae.experiments import run_quickstart

    run_quickstart(args.out, configs_dir=args.configs_dir, overrides=args.overrides)
    return 0


def _train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML run config (e.g. configs/digits-tiny.yaml)")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="key.sub=value",
        help="config overrides, values parsed as YAML (e.g. train.epochs=5 optim.lr=3e-4)",
    )
    p.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue the stopped run in RUN_DIR (its config.yaml, then the overrides)",
    )


def _train_run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from spherevae.config import load_config
    from spherevae.training import TrainingDiverged, train

    if args.resume:
        run_dir = Path(args.resume)
        if args.config:
            raise ValueError("give either --config or --resume RUN_DIR, not both")
        cfg = load_config(run_dir / "config.yaml", args.overrides)
        # The run stays where it is, whatever out_dir/run_name the overrides say.
        cfg.train.out_dir, cfg.train.run_name = str(run_dir.parent), run_dir.name
    else:
        if not args.config:
            raise ValueError("--config is required (or --resume RUN_DIR)")
        cfg = load_config(args.config, args.overrides)
    try:
        run_dir = train(cfg, resume=bool(args.resume))
    except TrainingDiverged as exc:
        print(f"spherevae train: error: {exc}", file=sys.stderr)
        return 1
    print(run_dir)
    return 0


COMMANDS: dict[str, Command] = {
    "train": Command(
        "train a VAE from a YAML config (standard, compressed or the authors' objective)",
        _train_arguments,
        _train_run,
    ),
    "quickstart": Command(
        "train a standard and a compressed VAE on Fashion-MNIST, evaluate, report (CPU)",
        _quickstart_arguments,
        _quickstart_run,
    ),
    "evaluate": Command("evaluate a trained run: FID, k-NN, collapse, figures",
                        _evaluate_arguments, _evaluate_run),
    "report": Command("write one self-contained HTML page comparing runs",
                      _report_arguments, _report_run),
    "sweep": Command("train and evaluate a grid of runs (local or ray backend)",
                     _sweep_arguments, _sweep_run),
    "demo": Command(
        "show the coordinate transform and the compressed loss on random latents",
        _demo_arguments,
        _demo_run,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spherevae",
        description="Compressed hyperspherical VAEs: train, evaluate, report, sweep.",
    )
    from spherevae import __version__

    parser.add_argument("--version", action="version", version=f"spherevae {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error (also: SPHEREVAE_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, cmd in COMMANDS.items():
        p = sub.add_parser(name, help=cmd.help, description=cmd.help)
        cmd.add_arguments(p)
        p.set_defaults(_run=cmd.run)
    return parser


# Errors the user can fix (bad input, a busy or damaged run directory, a full disk):
# spherevae.rundir.UserError is a ValueError. Anything else is a bug: its traceback stays.
USER_ERRORS = (ValueError, TypeError, FileNotFoundError, IsADirectoryError, NotADirectoryError,
               PermissionError)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI. A user error exits 2 with one line (``--debug``: the traceback)."""
    import os
    import warnings

    argv = list(sys.argv[1:] if argv is None else argv)
    # --debug is accepted anywhere on the line (`spherevae train --debug ...` too).
    debug = "--debug" in argv or os.environ.get("SPHEREVAE_DEBUG", "") not in ("", "0")
    args = build_parser().parse_args([a for a in argv if a != "--debug"])
    prog = f"spherevae {args.command}"
    with warnings.catch_warnings():
        if not debug:  # one line per warning, not the warning's source line
            warnings.showwarning = lambda msg, *_a, **_k: print(f"{prog}: warning: {msg}", file=sys.stderr)
        try:
            return int(args._run(args) or 0)
        except USER_ERRORS as exc:
            if debug:
                raise
            one_line = " ".join(str(exc).split()) or type(exc).__name__
            print(f"{prog}: error: {one_line}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"{prog}: interrupted", file=sys.stderr)
            return 130
