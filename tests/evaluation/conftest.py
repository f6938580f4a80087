"""Fixtures of the evaluation tests: the real Fashion-MNIST splits (Debian's
dataset-fashion-mnist), loaded once per session; tests that need them skip without them."""

import pytest


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
