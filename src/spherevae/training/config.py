"""Run configuration: typed dataclasses, loaded from YAML, overridable from the CLI.

A :class:`RunConfig` has six sections (``data``, ``model``, ``objective``,
``schedule``, ``optim``, ``train``). :func:`load_config` reads a YAML file and
applies ``key.sub=value`` overrides (values parsed as YAML scalars, so ``0.5``,
``true``, ``null`` and ``[32, 64]`` mean what they look like). Every key and value
is checked: an unknown key names the known ones, a bad value names the field and
what is allowed. :func:`config_to_dict` gives the resolved config, which the
trainer saves as ``config.yaml`` beside every run and which loads back unchanged.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spherevae._utils.validation import check_choice, check_positive
from spherevae.io.errors import UserError
from spherevae.io.files import atomic_write_text
from spherevae.io.layout import check_name

__all__ = [
    "AMP_MODES",
    "DataConfig",
    "ModelSection",
    "ObjectiveConfig",
    "OptimConfig",
    "RunConfig",
    "ScheduleConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "override_key",
    "read_yaml",
    "save_config",
    "validate",
]

# Mixed-precision modes -> autocast dtype name (None: full precision).
AMP_MODES: dict[str, str | None] = {"none": None, "bf16": "bfloat16", "fp16": "float16"}


@dataclass
class DataConfig:
    """Which dataset and how it is held. ``max_train``/``max_test`` keep the first N images."""

    name: str = "digits"
    root: str | None = None
    download: bool = True
    keep_on_device: bool = False
    max_train: int | None = None
    max_test: int | None = None
    options: dict[str, Any] = field(default_factory=dict)  # reader options (e.g. folder: image_size)


@dataclass
class ModelSection:
    """A ``MODEL_PRESETS`` entry plus overrides of its ``ModelConfig`` fields.

    ``None`` keeps the preset's value. ``project_to_sphere = None`` lets the objective
    decide: on (radius sqrt(n), paper eq 8) for ``compressed`` and ``authors``, off for
    ``standard``. ``extra`` overrides any other ``ModelConfig`` field by name.
    """

    preset: str = "tiny"
    latent_dim: int | None = None
    channels: tuple[int, ...] | None = None
    blocks_per_stage: int | None = None
    project_to_sphere: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ObjectiveConfig:
    """The loss. ``standard``: MSE + beta KLD (eq 2). ``compressed``: MSE + beta
    HypersphericalPriorLoss (eq 6) with ``loss_preset`` and ``loss_overrides``.
    ``authors``: the released code's two-step objective (docs/objectives.md), with
    ``dataset_weight`` its sigma-angle gain (``None``: chosen from the dataset name).
    ``auto_balance``: after epoch 0, ``beta <- beta * mean(MSE) / mean(latent)`` of that
    epoch, then fixed; ``None`` lets the objective decide (on for ``authors`` only)."""

    name: str = "standard"
    beta: float = 1.0
    loss_preset: str = "full"
    loss_overrides: dict[str, Any] = field(default_factory=dict)
    dataset_weight: float | None = None
    auto_balance: bool | None = None


@dataclass
class ScheduleConfig:
    """A :data:`spherevae.training.schedules.SCHEDULES` entry and its keyword parameters."""

    name: str = "constant"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimConfig:
    """Adam. ``decoder_lr`` (authors' two-step only; ``None``: ``lr``) is the decoder's
    optimiser's rate; ``lr_decay`` is a per-epoch exponential LR factor; ``grad_clip``
    is a max global gradient norm (``None``: no clipping)."""

    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    grad_clip: float | None = None
    decoder_lr: float | None = None
    lr_decay: float = 1.0


@dataclass
class TrainConfig:
    """The loop. ``device``: ``auto`` | ``cpu`` | ``cuda[:i]``; ``amp``: see :data:`AMP_MODES`
    (GPU only); ``log_every`` steps between host reads of the metrics (NaN checks);
    ``checkpoint_every`` epochs; the run goes to ``out_dir/run_name``."""

    epochs: int = 10
    batch_size: int = 128
    seed: int = 0
    device: str = "auto"
    amp: str = "none"
    compile: bool = False
    log_every: int = 50
    checkpoint_every: int = 1
    out_dir: str = "runs"
    run_name: str = "run"
    eval_batch_size: int = 512
    progress: bool = True
    tensorboard: bool = False  # older switch: the same as listing tensorboard in loggers
    loggers: tuple[str, ...] = ()  # spherevae.training.loggers.LOGGERS names, e.g. [tensorboard, mlflow]
    logger_options: dict[str, Any] = field(default_factory=dict)  # logger name -> keywords


@dataclass
class RunConfig:
    """A complete, validated run description; see the section classes."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelSection = field(default_factory=ModelSection)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        validate(self)

    @property
    def run_dir(self) -> Path:
        return Path(self.train.out_dir) / self.train.run_name


def validate(cfg: RunConfig) -> None:
    """Check values that types alone do not (ranges, names); raise naming the field."""
    from spherevae.losses.targets import PRESETS
    from spherevae.training.objectives import (
        OBJECTIVES,  # the one registry (lazy: it imports torch)
    )

    check_choice(cfg.objective.name, "objective.name", OBJECTIVES)
    check_choice(cfg.objective.loss_preset, "objective.loss_preset", PRESETS)
    check_choice(cfg.train.amp, "train.amp", AMP_MODES)
    check_positive(cfg.objective.beta, "objective.beta", allow_zero=True)
    check_positive(cfg.optim.lr, "optim.lr")
    if cfg.optim.decoder_lr is not None:
        check_positive(cfg.optim.decoder_lr, "optim.decoder_lr")
    check_positive(cfg.optim.lr_decay, "optim.lr_decay")
    check_positive(cfg.optim.weight_decay, "optim.weight_decay", allow_zero=True)
    if cfg.optim.grad_clip is not None:
        check_positive(cfg.optim.grad_clip, "optim.grad_clip")
    for i, b in enumerate(cfg.optim.betas):
        if not 0.0 <= b < 1.0:
            raise ValueError(f"optim.betas[{i}] must be in [0, 1), got {b!r}")
    for name in ("epochs", "batch_size", "log_every", "checkpoint_every", "eval_batch_size"):
        value = getattr(cfg.train, name)
        if value < 1:
            raise ValueError(f"train.{name} must be an integer >= 1, got {value!r}")
    for name in ("max_train", "max_test"):
        value = getattr(cfg.data, name)
        if value is not None and value < 1:
            raise ValueError(f"data.{name} must be an integer >= 1 or null, got {value!r}")
    if cfg.model.latent_dim is not None and cfg.model.latent_dim < 2:
        raise ValueError(f"model.latent_dim must be an integer >= 2, got {cfg.model.latent_dim!r}")
    dev = cfg.train.device
    if not (dev in ("auto", "cpu", "cuda", "mps") or dev.startswith("cuda:")):
        raise ValueError(
            f"train.device must be 'auto', 'cpu', 'cuda', 'cuda:<i>' or 'mps', got {dev!r}"
        )
    from spherevae.training.loggers import LOGGERS

    for name in cfg.train.loggers:
        check_choice(name, "train.loggers", LOGGERS)
    # A run name is one directory under out_dir: a separator or '..' would write elsewhere.
    check_name(cfg.train.run_name, "train.run_name")


# --- dict <-> dataclass -------------------------------------------------------------


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """``value`` checked (and converted: int -> float, list -> tuple) against type ``tp``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for opt in options:
            if opt is type(None):
                continue
            try:
                return _coerce(value, opt, where)
            except (TypeError, ValueError) as exc:
                errors.append(str(exc))
        raise TypeError(errors[0] if len(errors) == 1 else f"{where}: got {value!r}, expected {tp}")
    if tp is Any:
        return value
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise TypeError(f"{where} must be a mapping, got {value!r}")
        return dict(value)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise TypeError(f"{where} must be a list, got {value!r}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ValueError(f"{where} must have {len(args)} entries, got {list(value)!r}")
        return tuple(
            _coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))
        )
    if tp is bool:
        if not isinstance(value, bool):
            raise TypeError(f"{where} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{where} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):
            # PyYAML (YAML 1.1) reads "3e-4" (no dot) as a string; accept it as a number.
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"{where} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise TypeError(f"{where} must be a string, got {value!r}")
        return value
    raise TypeError(f"{where}: unsupported config type {tp}")  # pragma: no cover


def _section_from_dict(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise TypeError(f"{where or 'config'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in known:
            raise ValueError(f"unknown config key {path!r}; known keys here: {known}")
        tp = hints[key]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            kwargs[key] = _section_from_dict(tp, value, path)
        else:
            kwargs[key] = _coerce(value, tp, path)
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any]) -> RunConfig:
    """Build and validate a :class:`RunConfig` from nested dicts (missing keys: defaults)."""
    return _section_from_dict(RunConfig, data or {}, "")


def config_to_dict(cfg: RunConfig) -> dict[str, Any]:
    """The resolved config as plain YAML-able dicts (tuples become lists)."""

    def plain(v: Any) -> Any:
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(cfg))


def override_key(item: str) -> str:
    """The dotted key an override ``key.sub=value`` sets (``"train.epochs"``)."""
    return item.split("=", 1)[0].strip()


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set ``key.sub=value`` entries in nested ``data`` (values parsed as YAML scalars)."""
    import yaml

    out = _deepcopy_dict(data)
    for item in overrides:
        if "=" not in item:
            raise ValueError(
                f"override {item!r} must look like key.sub=value (e.g. train.epochs=5)"
            )
        key, raw = item.split("=", 1)
        parts = override_key(item).split(".")
        if len(parts) < 2 or not all(parts):
            raise ValueError(f"override key {key!r} must be section.field (e.g. optim.lr=1e-4)")
        if not raw.strip():
            # An empty value used to mean null and silently fall back to a default.
            raise UserError(
                f"override {item!r} has no value; write {key.strip()}=null to unset it"
            )
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ValueError(f"override {item!r}: value is not valid YAML ({exc})") from None
        node = out
        for p in parts[:-1]:
            child = node.setdefault(p, {})
            if not isinstance(child, dict):
                raise ValueError(f"override {item!r}: {p!r} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return out


def _deepcopy_dict(d: dict[str, Any]) -> dict[str, Any]:
    return {k: _deepcopy_dict(v) if isinstance(v, dict) else v for k, v in d.items()}


def load_config(path: str | Path | None, overrides: list[str] | None = None, *,
                run_root: Path | None = None) -> RunConfig:
    """Read YAML ``path`` (``None``: all defaults; a packaged config's name, e.g.
    ``"digits-tiny"``, also works), apply ``overrides``, validate. ``run_root``: the run
    directory ``path`` is the ``config.yaml`` of (read as untrusted input)."""

    data: dict[str, Any] = {}
    if path is not None:
        from spherevae.configs import resolve

        path = resolve(path, "run")  # a file, or a packaged config's name
        data = read_yaml(path, "config file", root=run_root) or {}
        if not isinstance(data, dict):
            raise ValueError(f"config file {str(path)!r} must hold a mapping of sections")
    return config_from_dict(apply_overrides(data, list(overrides or [])))


def read_yaml(path: Path, what: str, root: Path | None = None) -> Any:
    """YAML of ``path``, parsed with limits (:func:`spherevae.io.safe_read.safe_yaml_load`:
    no anchors/aliases, bounded depth and size); malformed YAML raises one line naming file
    and line. ``root``: the run directory ``path`` belongs to (read as untrusted input,
    :func:`spherevae.io.safe_read.read_run_text`)."""
    import yaml

    from spherevae.io.safe_read import MAX_YAML_BYTES, read_run_text, safe_yaml_load

    try:
        if root is not None:
            text = read_run_text(root, path, limit=MAX_YAML_BYTES)
        elif Path(path).is_dir():
            raise UserError(f"{what} {path} is a directory, not a YAML file; give the file")
        else:
            text = Path(path).read_text(encoding="utf-8")
        return safe_yaml_load(text, path)
    except UnicodeDecodeError:
        raise UserError(f"{what} {path} is not a text file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{what} {path} is not valid YAML{where}: {problem}") from None


def save_config(cfg: RunConfig, path: str | Path) -> None:
    """Write the resolved config as YAML, atomically (``load_config(path)`` gives it back)."""
    import yaml

    atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
