"""Where a user model's class comes from: its import path is recorded when a run is trained,
so that the run can be rebuilt by name later (:func:`import_model_class`).
"""

from __future__ import annotations

import json
from typing import Any

from torch import nn

__all__ = [
    "class_path",
    "import_model_class",
    "is_importable",
    "source_of",
]


def class_path(cls: type) -> str:
    """``"module:Qualname"``, the import path recorded for a user model class."""
    return f"{cls.__module__}:{cls.__qualname__}"


def import_model_class(path: str) -> type:
    """The class at ``path`` (``"module:Qualname"``), imported: only ever for a path the
    caller allowed (:func:`spherevae.models.spec.model_from_spec`)."""
    import importlib

    module, _, qualname = path.partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ValueError(
            f"cannot import the model class {path!r} recorded with the run ({exc}); make it "
            "importable or pass model=<an instance> to spherevae.load"
        ) from None
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        raise ValueError(f"{path!r} recorded with the run is not an nn.Module class")
    return obj


def is_importable(cls: type) -> bool:
    """Whether another process can import ``cls`` by its module and qualified name."""

    if "<locals>" in cls.__qualname__ or cls.__module__ == "__main__":
        return False
    try:
        return import_model_class(class_path(cls)) is cls
    except ValueError:
        return False


def source_of(model: nn.Module, kwargs: dict[str, Any] | None) -> dict[str, Any] | None:
    """The import path (+ JSON kwargs) that rebuilds a user model, when it is importable."""
    cls = type(model)
    if not is_importable(cls):
        return None  # a script, a notebook or a function: load needs model=
    if kwargs is not None:
        json.dumps(kwargs)  # raises TypeError early if not JSON
    return {"class": class_path(cls), "kwargs": kwargs or {}}


