"""How much memory this machine has, for checks that stop before an allocation that
cannot fit (``evaluate --num-samples``, ``Run.sample``)."""

from __future__ import annotations

import os

__all__ = [
    "check_fits_in_memory",
    "physical_memory",
]


def physical_memory() -> int | None:
    """Bytes of RAM of this machine, or ``None`` where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits_in_memory(need: int, what: str, per_item: int, name: str,
                         memory: int | None = None) -> None:
    """A ``ValueError`` (one line) when ``need`` bytes for ``what`` exceed half of ``memory``
    (default: this machine's RAM), saying how many items of ``per_item`` bytes would fit
    (``name``: the argument that sets the count)."""
    memory = physical_memory() if memory is None else memory
    if memory is None or need <= memory // 2:
        return
    raise ValueError(
        f"{what} need about {need / 2**30:.1f} GiB, more than half of this machine's "
        f"{memory / 2**30:.1f} GiB: use at most {memory // 2 // max(per_item, 1)} for {name}"
    )
