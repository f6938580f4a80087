"""Callbacks: code of your own that the :class:`~spherevae.training.trainer.Trainer` calls
at fixed points of a run, so that extending the loop needs no subclass.

A callback is any object with some of these methods (subclassing :class:`Callback`
gives no-op defaults for the rest):

- ``on_epoch_end(trainer, record)``: after each epoch's record is logged (``record``: the
  dict written to ``metrics.jsonl``: losses, test RMSE, replica angle, beta, lr, ...);
- ``on_checkpoint(trainer, epoch, path)``: after ``checkpoints/last.pt`` was written for
  ``epoch`` (rank 0 writes it; every rank is called);
- ``on_fit_end(trainer, run_dir)``: after the final weights (``model.safetensors``) are saved.

Callbacks run on every rank under ``torchrun``; ``trainer.dist.is_main`` tells rank 0.
They run on the host between steps, never inside the training step, so they cannot add
a host-device sync to it. A callback that raises stops the run like any other error
(the last checkpoint stays, ``--resume`` continues).

Example::

    >>> from spherevae.training.callbacks import Callback
    >>> class StopWhenSharp(Callback):
    ...     def on_epoch_end(self, trainer, record):
    ...         if record["test_rmse_percent"] < 10.0:
    ...             trainer.should_stop = True
    >>> isinstance(StopWhenSharp(), Callback)
    True
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = [
    "CALLBACK_HOOKS",
    "Callback",
    "check_callback",
]

CALLBACK_HOOKS = ("on_epoch_end", "on_checkpoint", "on_fit_end")


class Callback:
    """No-op versions of every hook (see the module docstring); override what you need."""

    def on_epoch_end(self, trainer: Any, record: dict[str, Any]) -> None:
        """After epoch ``record["epoch"]`` was logged."""

    def on_checkpoint(self, trainer: Any, epoch: int, path: Path) -> None:
        """After the checkpoint of ``epoch`` was written to ``path``."""

    def on_fit_end(self, trainer: Any, run_dir: Path) -> None:
        """After the final weights were saved in ``run_dir``."""


def check_callback(callback: Any) -> Any:
    """``callback`` if it has at least one hook (callable), else a ``TypeError`` naming them."""
    hooks = [h for h in CALLBACK_HOOKS if callable(getattr(callback, h, None))]
    if not hooks:
        raise TypeError(f"a callback needs at least one of the methods {list(CALLBACK_HOOKS)}, "
                        f"got {type(callback).__name__}")
    return callback
