"""Experiment trackers for training runs: registry :data:`LOGGERS` (name -> spec).

A run's config picks them: ``train.loggers: [tensorboard, mlflow]``, with per-logger
keyword options in ``train.logger_options: {mlflow: {experiment: fmnist}}``. Every
logger has the same small interface (as in Lightning):

- ``log_hyperparams(params)``: the resolved config, flattened to ``section.key``;
- ``log_metrics(metrics, step)``: the per-epoch record (numbers only), ``step`` = epoch;
- ``log_artifact(path)``: a file of the run; at the end of a run the trainer passes
  ``config.yaml``, ``metrics.jsonl`` and ``model.safetensors``. MLflow and W&B store them
  (W&B as artifacts of type ``run-file``); TensorBoard stores no files;
- ``finalize(status)``: ``"success"`` or ``"failed"``; closes the logger.

``metrics.jsonl`` in the run directory is always written, with or without loggers. A
logger the trainer did not finalize (a crash, Ctrl-C) is finalized as ``"failed"`` when
the process exits.
A logger that is asked for but not installed is an error before any work starts
(:func:`check_loggers`), naming the extra to install.

========== ======================== ==================================================
name       extra                    where it writes (default)
========== ======================== ==================================================
tensorboard ``spherevae[tensorboard]`` ``RUN_DIR/tensorboard`` event files
mlflow     ``spherevae[mlflow]``    ``tracking_uri`` option, else ``MLFLOW_TRACKING_URI``,
                                    else MLflow's default (``sqlite:///mlflow.db``)
wandb      ``spherevae[wandb]``     W&B, online or offline by ``mode`` / ``WANDB_MODE``;
                                    local files under ``RUN_DIR/wandb``
========== ======================== ==================================================
"""

from __future__ import annotations

import atexit
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from spherevae._utils.optional import require
from spherevae._utils.validation import check_choice

__all__ = [
    "LOGGERS",
    "LoggerSpec",
    "MLflowLogger",
    "RunLogger",
    "TensorBoardLogger",
    "WandbLogger",
    "check_logger",
    "check_loggers",
    "flatten",
    "make_loggers",
]


class RunLogger(Protocol):
    """What every logger is (named in :data:`LOGGERS` or handed to the trainer as an
    instance): see the module docstring for what each call receives."""

    def log_hyperparams(self, params: Mapping[str, Any]) -> None: ...
    def log_metrics(self, metrics: Mapping[str, Any], step: int) -> None: ...
    def log_artifact(self, path: Path) -> None: ...
    def finalize(self, status: str) -> None: ...


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists and tuples become strings."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = str(list(v)) if isinstance(v, (list, tuple)) else v
    return out


def _numbers(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers of a (possibly nested) record: ``lr.model`` etc."""
    flat = flatten(metrics)
    return {k: float(v) for k, v in flat.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


class TensorBoardLogger:
    """Scalars per epoch and the config as text, in ``RUN_DIR/tensorboard``."""

    def __init__(self, run_dir: Path, run_name: str) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def log_hyperparams(self, params: Mapping[str, Any]) -> None:
        text = "\n".join(f"    {k}: {v}" for k, v in flatten(params).items())
        self.writer.add_text("config", text, 0)

    def log_metrics(self, metrics: Mapping[str, Any], step: int) -> None:
        for k, v in _numbers(metrics).items():
            self.writer.add_scalar(k, v, step)

    def log_artifact(self, path: Path) -> None:
        """TensorBoard stores no files; the artifact stays in the run directory."""

    def finalize(self, status: str) -> None:
        self.writer.close()


def _artifacts_beside(tracking_uri: str, run_dir: Path) -> str:
    """A file URI for a new experiment's artifacts: ``mlartifacts`` beside a
    ``sqlite:///PATH`` store (relative paths from the working directory, as MLflow reads
    them), else in the run directory."""
    prefix = "sqlite:///"
    if tracking_uri.startswith(prefix) and tracking_uri != prefix + ":memory:":
        return (Path(tracking_uri[len(prefix):]).resolve().parent / "mlartifacts").as_uri()
    return (Path(run_dir).resolve() / "mlartifacts").as_uri()


class MLflowLogger:
    """One MLflow run per training run, through ``MlflowClient`` (no global active run).

    Options: ``tracking_uri``, ``experiment`` (default ``"spherevae"``),
    ``artifact_location`` (for a new experiment), ``tags``. Without ``artifact_location``
    a new experiment keeps its artifacts beside a SQLite store (``<db folder>/mlartifacts``)
    and, for any other store, in the run directory (``<run>/mlartifacts``): never in an
    ``mlruns/`` folder of whatever directory the command ran from (MLflow's default).
    """

    def __init__(self, run_dir: Path, run_name: str, *, tracking_uri: str | None = None,
                 experiment: str = "spherevae", artifact_location: str | None = None,
                 tags: Mapping[str, str] | None = None) -> None:
        from mlflow import MlflowClient, get_tracking_uri

        self.client = MlflowClient(tracking_uri=tracking_uri)
        found = self.client.get_experiment_by_name(experiment)
        if found is None and artifact_location is None:
            artifact_location = _artifacts_beside(tracking_uri or get_tracking_uri(), run_dir)
        exp_id = (found.experiment_id if found is not None
                  else self.client.create_experiment(experiment, artifact_location=artifact_location))
        tags = {"spherevae.run_dir": str(run_dir.resolve()), **(tags or {})}
        self.run_id = self.client.create_run(exp_id, run_name=run_name, tags=tags).info.run_id

    def log_hyperparams(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        # MLflow caps a param value at 6000 characters; ours are short.
        items = [Param(k, str(v)[:6000]) for k, v in flatten(params).items()]
        for i in range(0, len(items), 100):  # log_batch takes at most 100 params a call
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: Mapping[str, Any], step: int) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, v, now, step) for k, v in _numbers(metrics).items()]
        self.client.log_batch(self.run_id, metrics=items)

    def log_artifact(self, path: Path) -> None:
        self.client.log_artifact(self.run_id, str(path))

    def finalize(self, status: str) -> None:
        self.client.set_terminated(self.run_id, "FINISHED" if status == "success" else "FAILED")


class WandbLogger:
    """A W&B run; ``mode="offline"`` (or ``WANDB_MODE=offline``) writes only local files.

    Options: ``project`` (default ``"spherevae"``), ``entity``, ``mode``, ``dir``
    (default: the run directory), ``tags``.
    """

    def __init__(self, run_dir: Path, run_name: str, *, project: str = "spherevae",
                 entity: str | None = None,
                 mode: Literal["online", "offline", "disabled", "shared"] | None = None, dir: str | None = None,
                 tags: Sequence[str] | None = None) -> None:
        import wandb

        self.run = wandb.init(project=project, entity=entity, name=run_name, mode=mode,
                              dir=dir or str(run_dir), tags=list(tags or []),
                              reinit="create_new")

    def log_hyperparams(self, params: Mapping[str, Any]) -> None:
        self.run.config.update(dict(params), allow_val_change=True)

    def log_metrics(self, metrics: Mapping[str, Any], step: int) -> None:
        self.run.log(_numbers(metrics), step=step)

    def log_artifact(self, path: Path) -> None:
        import wandb

        art = wandb.Artifact(f"{self.run.id}-{path.stem}".replace(".", "-"), type="run-file")
        art.add_file(str(path))
        self.run.log_artifact(art)

    def finalize(self, status: str) -> None:
        self.run.finish(exit_code=0 if status == "success" else 1)


class _FinalizeOnce:
    """A logger that is finalized exactly once: by the trainer, or else as ``"failed"``
    when the process exits (a crash or Ctrl-C leaves no tracker run marked as running)."""

    def __init__(self, inner: RunLogger) -> None:
        self.inner = inner
        self._done = False
        atexit.register(self._at_exit)

    def log_hyperparams(self, params: Mapping[str, Any]) -> None:
        self.inner.log_hyperparams(params)

    def log_metrics(self, metrics: Mapping[str, Any], step: int) -> None:
        self.inner.log_metrics(metrics, step)

    def log_artifact(self, path: Path) -> None:
        self.inner.log_artifact(path)

    def finalize(self, status: str) -> None:
        if not self._done:
            self._done = True
            atexit.unregister(self._at_exit)
            self.inner.finalize(status)

    def _at_exit(self) -> None:
        self.finalize("failed")


@dataclass(frozen=True)
class LoggerSpec:
    """How to make a logger, and which module and extra it needs."""

    factory: Callable[..., RunLogger]
    module: str
    extra: str


LOGGERS: dict[str, LoggerSpec] = {
    "tensorboard": LoggerSpec(TensorBoardLogger, "tensorboard", "tensorboard"),
    "mlflow": LoggerSpec(MLflowLogger, "mlflow", "mlflow"),
    "wandb": LoggerSpec(WandbLogger, "wandb", "wandb"),
}


def check_logger(logger: Any) -> Any:
    """``logger`` (an instance) if it has the whole :class:`RunLogger` interface, else a
    ``TypeError`` naming the missing methods (before any work: not at the end of a run)."""
    missing = [m for m in ("log_hyperparams", "log_metrics", "log_artifact", "finalize")
               if not callable(getattr(logger, m, None))]
    if missing:
        raise TypeError(f"a logger needs the methods log_hyperparams, log_metrics, log_artifact "
                        f"and finalize; {type(logger).__name__} lacks {missing}")
    return logger


def check_loggers(names: Sequence[str]) -> None:
    """Raise (``ValueError``) for an unknown name or a logger whose package is missing."""
    for name in names:
        check_choice(name, "train.loggers", LOGGERS)
        spec = LOGGERS[name]
        require(spec.module, spec.extra, f"train.loggers: {name}")


def make_loggers(names: Sequence[str], run_dir: Path, run_name: str,
                 options: Mapping[str, Mapping[str, Any]] | None = None) -> list[RunLogger]:
    """The loggers ``names`` for a run, each with its ``options[name]`` keywords."""
    check_loggers(names)
    options = options or {}
    unknown = sorted(set(options) - set(names))
    if unknown:
        raise ValueError(f"train.logger_options has {unknown} but train.loggers is {list(names)}")
    out: list[RunLogger] = []
    for name in names:
        kwargs = dict(options.get(name) or {})
        try:  # check the option names before anything is created
            inspect.signature(LOGGERS[name].factory).bind(run_dir, run_name, **kwargs)
        except TypeError as exc:
            raise ValueError(f"train.logger_options.{name}: {exc}") from None
        out.append(_FinalizeOnce(LOGGERS[name].factory(run_dir, run_name, **kwargs)))
    return out
