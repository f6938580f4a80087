"""The ``spherevae`` command line.

Subcommands are registered in :data:`COMMANDS` (name -> :class:`Command`); each one
adds its own arguments and runs a library function, so the CLI holds no logic of
its own. Names a flag accepts come from the library's registries (samplers, FID
backbones, sweep backends) as argparse ``choices``, so a typo fails before any work.
Progress goes through :mod:`logging` (``-v`` for more, ``-q`` for warnings only) on
stderr; results (summary tables, paths) go to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

__all__ = [
    "COMMANDS",
    "Command",
    "build_parser",
    "main",
]

# What the `full` extra brings: module -> the name pip knows it by.
FULL = {"yaml": "pyyaml", "PIL": "pillow", "matplotlib": "matplotlib",
        "sklearn": "scikit-learn", "tqdm": "tqdm"}


@dataclass(frozen=True)
class Command:
    """A subcommand: its help line, how it adds arguments, what it runs, and the optional
    modules it needs (checked before it runs; a missing one names the extra)."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    needs: tuple[str, ...] = tuple(FULL)


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's error contract: a bad flag or choice is one line
    ``spherevae CMD: error: ...`` and a hint where to look, exit 2 (not the usage block)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\nsee: {self.prog} --help\n")


def _positive_int(text: str) -> int:
    """An argparse ``type``: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def check_run_dir(run_dir: str) -> Path:
    """``run_dir`` as a ``Path`` if it holds a run (its ``config.yaml``), else a ``UserError``
    saying what it is instead, in the words of :func:`spherevae.load`."""
    from spherevae.io.errors import UserError
    from spherevae.io.layout import RunLayout

    path = Path(run_dir)
    if RunLayout(path).config.is_file():
        return path
    if path.is_file():
        raise UserError(f"{run_dir!r} is a file, not a run directory; give the directory "
                        f"that holds the run ({str(path.parent)!r})")
    raise UserError(f"{run_dir!r} is not a run directory (no config.yaml in it)")


def _demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--latent-dim", type=int, default=128, help="n (default 128)")
    p.add_argument("--batch", type=int, default=256, help="batch size (default 256)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def _demo_run(args: argparse.Namespace) -> int:
    from spherevae.demo import run_demo
    from spherevae.io.errors import UserError

    for flag, value in (("--latent-dim", args.latent_dim), ("--batch", args.batch)):
        if value < 2:
            raise UserError(f"{flag} must be an integer >= 2, got {value}")

    run_demo(latent_dim=args.latent_dim, batch=args.batch, seed=args.seed)
    return 0


def _evaluate_arguments(p: argparse.ArgumentParser) -> None:
    from spherevae.distributions.samplers import SAMPLERS
    from spherevae.evaluation.features import FEATURE_BACKBONES

    p.add_argument("run_dir", help="a run directory written by `spherevae train`")
    p.add_argument("--num-samples", type=int, default=10_000,
                   help="samples per sampler for FID (default 10000)")
    p.add_argument("--samplers", nargs="+", default=None, choices=sorted(SAMPLERS), metavar="NAME",
                   help=f"samplers to evaluate, from {sorted(SAMPLERS)} (default: every one that "
                        "applies to the run's objective)")
    p.add_argument("--backbone", default="domain", choices=sorted(FEATURE_BACKBONES),
                   help="FID features: domain (domain-v3: the domain ResNet's stage means and stds, "
                        "shipped for Fashion-MNIST, else trained once on the dataset; default), "
                        "domain-x2 / domain-x3 (the same features of two / three networks at once: FIDs "
                        "that depend less on which networks were trained, two / three times the "
                        "extraction cost), "
                        "domain-v2 or domain-v1 (older features, for comparison) or inception "
                        "(comparable to published FIDs; needs weights)")
    p.add_argument("--allow-weak-features", action="store_true",
                   help="evaluate with a feature network below the quality floor (test accuracy "
                        "< 0.85 or effective dim < 4) instead of refusing it")
    p.add_argument("--fit-split", default="test", choices=("test", "train"),
                   help="fit the samplers on the test latents (default, the paper's) or on "
                        "held-out training images (those beyond data.max_train)")
    p.add_argument("--feature-seeds", type=int, nargs="+", default=None, metavar="SEED",
                   help="every FID's _std over the feature networks of these seeds, e.g. 0 1 2 "
                        "(shipped for Fashion-MNIST; each seed re-extracts every feature set); "
                        "default: a bootstrap over the samples")
    p.add_argument("--fid-bootstrap", type=int, default=10, metavar="B",
                   help="resamples of each sampler's features for every FID's _std (default 10; 0: off)")
    p.add_argument("--inception-weights", default=None, metavar="FILE",
                   help="local Inception-v3 FID weights file (or env SPHEREVAE_INCEPTION_WEIGHTS)")
    p.add_argument("--max-test", type=int, default=None, metavar="N",
                   help="evaluate on the first N test images (default: all)")
    p.add_argument("--tsne-points", type=int, default=10_000, metavar="N",
                   help="latents shown in the t-SNE figure (default 10000)")
    p.add_argument("--no-figures", action="store_true", help="metrics only, no PNG figures")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0 (default cpu)")
    p.add_argument("--seed", type=int, default=0, help="seed of sampling and t-SNE (default 0)")
    p.add_argument("--all", action="store_true",
                   help="print the full metrics table instead of the short summary")
    p.add_argument("--json", action="store_true",
                   help="print every scalar metric as JSON instead of the summary")


def _evaluate_run(args: argparse.Namespace) -> int:
    import json

    from spherevae.evaluation.metric_info import format_table
    from spherevae.evaluation.pipeline import evaluate_run
    from spherevae.evaluation.verdict import summary_lines
    from spherevae.io.layout import RunLayout

    _check_evaluable(check_run_dir(args.run_dir))
    metrics = evaluate_run(
        args.run_dir, num_samples=args.num_samples,
        samplers=tuple(args.samplers) if args.samplers else None, backbone=args.backbone,
        inception_weights=args.inception_weights, max_test=args.max_test,
        tsne_points=args.tsne_points, figures=not args.no_figures, device=args.device,
        seed=args.seed, progress=not args.quiet, allow_weak_features=args.allow_weak_features,
        fid_bootstrap=args.fid_bootstrap, fit_split=args.fit_split,
        feature_seeds=tuple(args.feature_seeds or ()),
    )
    if args.json:
        shown = {k: v for k, v in metrics.items() if not isinstance(v, dict)}
        print(json.dumps(shown, indent=2, sort_keys=True))
    elif not args.quiet:
        if args.all:
            print(format_table({Path(args.run_dir).name: metrics}))
        else:  # the answer at a glance; every metric stays in eval/metrics.json
            print("\n".join(summary_lines(metrics)))
            print(f"full table: --all (or --json); every metric: {RunLayout(args.run_dir).eval_metrics}")
        for warning in metrics.get("warnings", []):
            print(f"warning: {warning}")
    return 0


def _check_evaluable(run_dir: Path) -> None:
    """``evaluate`` reloads a run's test images by its ``data.name``: a run trained on data
    that is no registered dataset (``spherevae.fit`` on tensors) is evaluated in Python."""
    from spherevae.data import DATASETS
    from spherevae.io.errors import UserError
    from spherevae.io.layout import RunLayout
    from spherevae.training.config import load_config

    layout = RunLayout(run_dir)
    name = load_config(layout.config, run_root=run_dir).data.name
    _check_packaged_model(layout)
    if name not in DATASETS:
        raise UserError(
            f"{str(run_dir)!r} was trained on data that is not a registered dataset (data.name "
            f"{name!r}, e.g. spherevae.fit on tensors), so spherevae evaluate cannot reload its "
            "test images; evaluate it in Python: spherevae.evaluation.context.EvalContext(run.model, "
            "test_images, ...) and the stages of spherevae.evaluation.pipeline.PIPELINE (docs/design.md), "
            "or register the data set (spherevae.data.register_dataset) under that name"
        )


def _check_packaged_model(layout: Any) -> None:
    """The CLI never imports user code: a run of a user model (its class recorded in
    ``model.safetensors``) is evaluated in Python, where the caller allows its class."""
    from spherevae.io.errors import UserError
    from spherevae.io.safe_read import check_run_file
    from spherevae.io.weights import load_weights

    if not (layout.weights.exists() or layout.weights.is_symlink()):
        return  # load_run says what is missing
    check_run_file(layout.root, layout.weights)
    spec = load_weights(layout.weights)[1]
    if spec.get("kind") == "vae":
        return
    cls = (spec.get("source") or {}).get("class", "<your model class>")
    raise UserError(
        f"{str(layout.root)!r} was trained on the user model {cls!r}; the CLI never imports "
        "code a run names, so evaluate it in Python: spherevae.evaluation.evaluate_run("
        f"{str(layout.root)!r}, allow_classes=[{cls!r}]) (if you trust that class)"
    )


def _report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="evaluated run directories")
    p.add_argument("--out", default="report.html", help="output HTML file (default report.html)")
    p.add_argument("--title", default="spherevae report", help="the page's title")


def _report_run(args: argparse.Namespace) -> int:
    from spherevae.report.html import load_run_summary, write_report

    path = write_report([load_run_summary(d) for d in args.run_dirs], args.out, title=args.title)
    print(f"report: {path}")
    return 0


def _sweep_arguments(p: argparse.ArgumentParser) -> None:
    from spherevae.configs import available
    from spherevae.experiments.sweep import BACKENDS

    p.add_argument("--config", required=True,
                   help=f"a sweep YAML file, or a packaged sweep's name ({', '.join(available('sweep'))})")
    p.add_argument("--backend", default=None, choices=sorted(BACKENDS),
                   help="where runs execute (default: the sweep's `backend`, else local)")
    p.add_argument("--workers", type=_positive_int, default=None,
                   help="runs at a time, >= 1 (default: the sweep's)")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value",
                   help="config overrides applied to every run")


def _sweep_run(args: argparse.Namespace) -> int:
    from spherevae.experiments.spec import load_sweep
    from spherevae.experiments.sweep import run_sweep

    rows = run_sweep(load_sweep(args.config, args.overrides), backend=args.backend,
                     workers=args.workers)
    return 1 if any(r["status"] == "failed" for r in rows) else 0


def _quickstart_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/quickstart", help="output directory (default runs/quickstart)")
    p.add_argument("--configs-dir", default=None, metavar="DIR",
                   help="where fmnist-standard-cpu.yaml and fmnist-compressed-cpu.yaml are "
                        "(default: the packaged ones)")
    p.add_argument("--workers", type=_positive_int, default=1,
                   help="runs at a time, >= 1 (default 1: one after the other; 2: side by side "
                        "in worker processes, cores / 2 threads each)")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="applied to both runs")


def _quickstart_run(args: argparse.Namespace) -> int:
    from spherevae.experiments.quickstart import QuickstartFailed, run_quickstart

    try:
        run_quickstart(args.out, configs_dir=args.configs_dir, overrides=args.overrides,
                       workers=args.workers)
    except QuickstartFailed as exc:  # each run's own traceback is in its error.txt
        print(f"spherevae quickstart: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    return 0


def _train_arguments(p: argparse.ArgumentParser) -> None:
    from spherevae.configs import available

    p.add_argument("--config", help=f"a YAML run config, or a packaged config's name "
                                    f"({', '.join(available('run'))})")
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


_SUMMARY = (("epoch", "epochs done", "{:.0f}"), ("train_loss", "train loss", "{:.5g}"),
            ("train_rmse_percent", "train RMSE (% of range)", "{:.4g}"),
            ("test_rmse_percent", "test RMSE (% of range)", "{:.4g}"),
            ("train_latent", "latent loss", "{:.5g}"), ("beta", "beta", "{:.4g}"),
            ("test_replica_angle_mean", "test replica angle (rad)", "{:.4g}"))


def train_summary(record: dict) -> str:
    """The final epoch's record of ``metrics.jsonl`` as a two-column text table."""
    lines = []
    for key, label, fmt in _SUMMARY:
        if isinstance(record.get(key), (int, float)):
            value = record[key] + 1 if key == "epoch" else record[key]
            lines.append(f"{label:<28}{fmt.format(value):>12}")
    return "\n".join(lines)


def _epochs_logged(run_dir: Path) -> int:
    """Epochs in the run's ``metrics.jsonl`` (one record per finished epoch)."""
    from spherevae.io.files import read_jsonl
    from spherevae.io.layout import RunLayout

    return len(read_jsonl(RunLayout(run_dir).metrics))


def _train_run(args: argparse.Namespace) -> int:

    from spherevae.io.layout import RunLayout
    from spherevae.training.config import load_config, override_key
    from spherevae.training.runs import check_buildable, train
    from spherevae.training.trainer import TrainingDiverged

    if args.resume:
        if args.config:
            raise ValueError("give either --config or --resume RUN_DIR, not both")
        run_dir = check_run_dir(args.resume)
        for item in args.overrides:  # the run stays where it is
            if override_key(item) in ("train.out_dir", "train.run_name"):
                raise ValueError(f"--resume {args.resume} gives the run directory; drop {item!r} "
                                 "(a run elsewhere is a new run: --config)")
        cfg = load_config(RunLayout(run_dir).config, args.overrides)
        cfg.train.out_dir, cfg.train.run_name = str(run_dir.parent), run_dir.name
    else:
        if not args.config:
            raise ValueError("--config is required (or --resume RUN_DIR)")
        cfg = load_config(args.config, args.overrides)
    check_buildable(cfg)  # data set, model, objective: a bad value stops before any work
    if args.quiet:
        cfg.train.progress = False
    before = _epochs_logged(run_dir) if args.resume else 0
    try:
        run_dir = train(cfg, resume=bool(args.resume))
    except TrainingDiverged as exc:
        print(f"spherevae train: error: {exc}", file=sys.stderr)
        return 1
    from spherevae.io.files import read_jsonl

    rows = read_jsonl(RunLayout(run_dir).metrics)
    if args.resume and before >= cfg.train.epochs and len(rows) == before:
        # The resume found every epoch done: say so, rather than a table that looks like new work.
        print(f"{run_dir}: already trained to {before} epoch{'s' * (before != 1)}; nothing to do "
              f"(train.epochs={before + 1} or more extends it)")
    elif rows and not args.quiet:
        print(train_summary(rows[-1]))
    print(run_dir)  # the last line: scripts read the run directory from it
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
                      _report_arguments, _report_run, needs=("yaml", "matplotlib")),
    "sweep": Command("train and evaluate a grid of runs (local or ray backend)",
                     _sweep_arguments, _sweep_run),
    "demo": Command(
        "show the coordinate transform and the compressed loss on random latents",
        _demo_arguments,
        _demo_run,
        needs=(),
    ),
}


def configure_logging(verbosity: int) -> logging.Handler:
    """Progress on stderr through the ``spherevae`` logger: -1 warnings only, 0 info,
    1 debug. Messages are plain lines; warnings say so. Returns the handler (remove it
    and reset the level to undo: :func:`_cli_logging` does)."""

    class _Format(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            text = record.getMessage()
            return text if record.levelno < logging.WARNING else f"{record.levelname.lower()}: {text}"

    class _Stderr(logging.StreamHandler):
        # Whatever sys.stderr is when a line is written (it may be replaced, e.g. by tests).
        _spherevae_cli = True  # marks the handlers this function added, to remove them
        @property
        def stream(self) -> Any:
            return sys.stderr

        @stream.setter
        def stream(self, _value: object) -> None:
            pass

    logger = logging.getLogger("spherevae")
    for handler in [h for h in logger.handlers if getattr(h, "_spherevae_cli", False)]:
        logger.removeHandler(handler)
    handler = _Stderr()
    handler.setFormatter(_Format())
    logger.addHandler(handler)
    logger.setLevel({-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG))
    return handler


@contextlib.contextmanager
def _cli_logging(verbosity: int) -> Iterator[None]:
    """The CLI's logging for one command, then the logger as it was (a library caller's
    or a test's logging set-up is left alone)."""
    logger = logging.getLogger("spherevae")
    level = logger.level
    handler = configure_logging(verbosity)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _run_command(name: str, args: argparse.Namespace) -> int:
    """Set up logging, check the command's optional modules, then run it."""
    from spherevae._utils.optional import require

    args.quiet = bool(getattr(args, "quiet", False))
    for module in COMMANDS[name].needs:
        require(module, "full", f"spherevae {name}", package=FULL.get(module))
    with _cli_logging(-1 if args.quiet else min(int(getattr(args, "verbose", 0) or 0), 1)):
        return COMMANDS[name].run(args)


def _verbosity_flags(p: argparse.ArgumentParser, default: object) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("-v", "--verbose", action="count", default=default,
                   help="more output (debug messages)")
    g.add_argument("-q", "--quiet", action="store_true", default=default,
                   help="warnings and errors only; no progress, no summary table")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="spherevae",
        description="Compressed hyperspherical VAEs: train, evaluate, report, sweep.",
    )
    from spherevae import __version__

    parser.add_argument("--version", action="version", version=f"spherevae {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error (also: SPHEREVAE_DEBUG=1)")
    _verbosity_flags(parser, None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, cmd in COMMANDS.items():
        p = sub.add_parser(name, help=cmd.help, description=cmd.help)
        cmd.add_arguments(p)
        # SUPPRESS: a -v given before the command is not reset by the subcommand's default.
        _verbosity_flags(p, argparse.SUPPRESS)
        p.set_defaults(_run=functools.partial(_run_command, name), _parser=p)
    return parser


# Errors the user can fix (bad input, a busy or damaged run directory, a full disk):
# spherevae.io.errors.UserError is a ValueError. Anything else is a bug: its traceback stays.
# An OSError on a path (read-only file system, no space, a name too long, not a file) is
# the user's path, named in the line; one without a path (a bug) keeps its traceback.
USER_ERRORS = (ValueError, TypeError, FileNotFoundError, IsADirectoryError, NotADirectoryError,
               PermissionError, OSError)


def _one_line(exc: BaseException) -> str:
    """The error as one line; an ``OSError`` as ``<path>: <reason>`` and what to do."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return (f"{exc.filename}: {exc.strerror} (errno {exc.errno}); choose another path, "
                "free space or fix its permissions")
    return " ".join(str(exc).split()) or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI. A user error exits 2 with one line (``--debug``: the traceback)."""
    import os
    import warnings

    argv = list(sys.argv[1:] if argv is None else argv)
    # --debug is accepted anywhere on the line (`spherevae train --debug ...` too).
    debug = "--debug" in argv or os.environ.get("SPHEREVAE_DEBUG", "") not in ("", "0")
    parser = build_parser()
    args, unknown = parser.parse_known_args([a for a in argv if a != "--debug"])
    if unknown:  # reported by the command's parser: its name and its --help
        getattr(args, "_parser", parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    prog = f"spherevae {args.command}"
    with warnings.catch_warnings():
        if not debug:  # one line per warning, not the warning's source line
            warnings.showwarning = lambda msg, *_a, **_k: print(f"{prog}: warning: {msg}", file=sys.stderr)
        try:
            return int(args._run(args) or 0)
        except USER_ERRORS as exc:
            pathless = isinstance(exc, OSError) and exc.filename is None and not isinstance(exc, USER_ERRORS[2:6])
            if debug or pathless:  # an OSError naming no path is no user path's: a bug
                raise
            one_line = _one_line(exc)
            print(f"{prog}: error: {one_line}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"{prog}: interrupted", file=sys.stderr)
            return 130
