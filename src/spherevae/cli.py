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

    run_demo(latent_dim=args.latent_dim, batch=args.batch, seed=args.seed)
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
    "demo": Command(
        "show the coordinate transform and the compressed loss on random latents",
        _demo_arguments,
        _demo_run,
    ),
    "train": Command(
        "train a VAE from a YAML config (standard, compressed or the authors' objective)",
        _train_arguments,
        _train_run,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spherevae",
        description="Compressed hyperspherical VAEs: train, evaluate, report, sweep.",
    )
    from spherevae import __version__

    parser.add_argument("--version", action="version", version=f"spherevae {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, cmd in COMMANDS.items():
        p = sub.add_parser(name, help=cmd.help, description=cmd.help)
        cmd.add_arguments(p)
        p.set_defaults(_run=cmd.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (ValueError, FileNotFoundError, TypeError) as exc:
        # Bad input is the user's to fix: one clear line, no traceback.
        print(f"spherevae {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"spherevae {args.command}: interrupted", file=sys.stderr)
        return 130
