"""What the trainer measures and reports per epoch (used by :mod:`spherevae.training.trainer`).

- :class:`EpochSums`: the reported terms summed on the device during an epoch, and the
  step at which each first became NaN/inf, with no host read per step;
- :func:`test_reconstruction`: the test pass at the end of every epoch;
- :func:`mean_over_ranks`: the epoch means averaged over data-parallel ranks;
- :func:`divergence_message`, :func:`epoch_line`, :func:`progress_bar`: what the user reads;
- :func:`truncate_metrics`: ``metrics.jsonl`` cut back to the epochs a resume keeps.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spherevae.io.files import atomic_write_text, read_jsonl
from spherevae.io.safe_read import check_run_file
from spherevae.training.objectives import TERMS

__all__ = [
    "EpochSums",
    "divergence_message",
    "epoch_line",
    "mean_over_ranks",
    "progress_bar",
    "test_reconstruction",
    "truncate_metrics",
]


class EpochSums:
    """The epoch's reported :data:`~spherevae.training.objectives.TERMS`, summed on the device:
    ``total`` (float32 ``(len(TERMS),)``) and ``finite_steps`` (int64, per term the steps
    after which its total was still finite). NaN and inf stay non-finite under addition,
    so a term's total turns non-finite at the step the term first does, and
    ``finite_steps`` is that step. Updated in place with 5 small kernels per step, and
    nothing read back to the host until :meth:`first_bad` or :meth:`means`."""

    def __init__(self, device: torch.device) -> None:
        self.total = torch.zeros(len(TERMS), device=device)
        self.finite_steps = torch.zeros(len(TERMS), dtype=torch.long, device=device)

    def reset(self) -> None:
        self.total.zero_()
        self.finite_steps.zero_()

    def add(self, terms: dict[str, torch.Tensor]) -> None:
        """Add one step's terms (0-dim tensors keyed by ``TERMS``)."""
        self.total += torch.stack([terms[k].detach().float() for k in TERMS])
        # x * 0 == 0 exactly when x is finite (inf * 0 and NaN * 0 are NaN); isfinite
        # would launch 4 kernels for the same answer.
        self.finite_steps += self.total.mul(0).eq(0)

    def first_bad(self) -> list[int]:
        """Per term, the step (from 0) at which it first became NaN/inf, ``-1`` if it has
        not. A host read."""
        return torch.where(torch.isfinite(self.total), -1, self.finite_steps).tolist()

    def means(self, steps: int) -> list[float]:
        """The mean of each term over ``steps`` steps. A host read."""
        return (self.total / steps).tolist()


@torch.no_grad()
def test_reconstruction(
    model: nn.Module, loader: Any, autocast: Callable[[], Any]
) -> dict[str, float]:
    """Summed squared error per image and RMSE in % of range, decoding the mean ``mu``;
    also the replica angle of the test means (A.8-A.9), logged per epoch so the effect
    of a schedule (e.g. the quench's drop) can be followed."""
    from spherevae.geometry.sphere import replica_angles

    model.eval()
    total = None
    count = 0
    mus = []
    for x, _ in loader:
        with autocast():
            # Decode the mean (projected onto the sphere when the model samples there).
            out = model(x, sample=False)
            err = (out.x_hat.float() - x.float()).square().flatten(1).sum(1).sum()
        mus.append(out.mu.detach().float())
        total = err if total is None else total + err
        count += x.shape[0]
    model.train()
    assert total is not None, "the test loader yielded no batch"  # splits hold >= 1 item
    mse_sum = float(total) / max(count, 1)  # one sync per evaluation
    pixels = math.prod(x.shape[1:])
    angles = replica_angles(torch.cat(mus))
    return {
        "test_mse_sum": mse_sum,
        "test_rmse_percent": 100.0 * math.sqrt(mse_sum / pixels),
        "test_replica_angle_mean": float(angles.mean()),
        "test_replica_angle_std": float(angles.std()) if angles.numel() > 1 else 0.0,
    }


def mean_over_ranks(means: dict[str, float], device: torch.device) -> dict[str, float]:
    """``means`` averaged over the ranks of the process group (one all-reduce)."""
    import torch.distributed as dist

    v = torch.tensor(list(means.values()), device=device)
    dist.all_reduce(v)
    v /= dist.get_world_size()
    return dict(zip(means, v.tolist(), strict=True))


def divergence_message(
    first_bad: list[int], epoch: int, steps: int, checkpoint: Path, last_good: int | None
) -> str:
    """Which term became NaN/inf first (``first_bad`` per term, ``-1``: none), where, the
    last good ``checkpoint`` and what to try."""
    bad = {name: s for name, s in zip(TERMS, first_bad, strict=True) if s >= 0}
    step = min(bad.values())
    names = [n for n, s in bad.items() if s == step and n != "loss"] or ["loss"]
    where = (
        f"the last good checkpoint is {checkpoint} (after epoch {last_good})"
        if last_good is not None
        else "no checkpoint was written (it diverged in the first epoch)"
    )
    return (
        f"training diverged at epoch {epoch}, step {step} of {steps}: the "
        f"{' and '.join(names)} term became NaN or inf; {where}. "
        "Try a lower optim.lr, optim.grad_clip, or a lower objective.beta."
    )


def epoch_line(record: dict[str, Any], epochs: int) -> str:
    """One log line for an epoch record (``train.progress`` without a terminal)."""
    return (f"epoch {record['epoch'] + 1}/{epochs}: loss {record['train_loss']:.4g}, "
            f"test RMSE {record['test_rmse_percent']:.3g}%, latent {record['train_latent']:.4g}, "
            f"beta {record['beta']:.3g} ({record['epoch_time_s']:.1f} s)")


def truncate_metrics(path: Path, epochs_done: int) -> None:
    """Keep only the lines of epochs before ``epochs_done`` (a resumed run rewrites the rest);
    a cut-off last line (a crash mid-append) is dropped with a warning. Atomic."""
    if not path.exists() and not path.is_symlink():
        return
    check_run_file(path.parent, path)  # a run's file: no link out of it, no FIFO
    kept = [r for r in read_jsonl(path) if r.get("epoch", epochs_done) < epochs_done]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))


class _NoBar:
    """The part of tqdm's interface the trainer uses, doing nothing."""

    disable = True

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, desc: str, *, enabled: bool) -> Any:
    """A tqdm bar of ``total`` steps, or (not ``enabled``) an object that does nothing.

    Not a disabled tqdm: tqdm makes a process-shared lock (a POSIX semaphore) even then,
    which a sweep worker stopped by SIGTERM leaks, with a warning at exit.
    """
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, dynamic_ncols=True)
