"""Shared test settings.

Torch runs single-threaded in each test worker: pytest-xdist already uses both
cores, and oversubscription makes the suite slower and timings noisier.
"""

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

torch.set_num_threads(1)
os.environ.setdefault("MPLBACKEND", "Agg")
# Without a GPU the Triton kernels (spherevae.losses.kernels) run under Triton's interpreter,
# which must be switched on before triton is first imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


# The real Fashion-MNIST splits (Debian's dataset-fashion-mnist), loaded once per session;
# tests that need them skip without them.
def _split(name: str):
    from spherevae.data import load_dataset

    try:
        return load_dataset("fashion-mnist", name, download=False)
    except (FileNotFoundError, OSError, ValueError) as exc:
        pytest.skip(f"Fashion-MNIST not available: {exc}")


@pytest.fixture(scope="session")
def fmnist_test():
    return _split("test")


@pytest.fixture(scope="session")
def fmnist_train():
    return _split("train")
