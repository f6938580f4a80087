"""Every docstring example in the package runs and gives what it shows (doctest), and the
core objects have one: the coordinates, the prior loss, the vMF, the objectives and fit/load/Run."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import spherevae

MODULES = sorted(
    m.name for m in pkgutil.walk_packages(spherevae.__path__, "spherevae.")
    if not m.name.endswith("__main__")  # importing it runs the command line
)
# (module, object) pairs whose docstring must hold a runnable example.
MUST_HAVE_EXAMPLES = [
    ("spherevae.geometry.coordinates", "to_hyperspherical"),
    ("spherevae.geometry.coordinates", "hyperspherical_cosines"),
    ("spherevae.geometry.coordinates", "project_to_sphere"),
    ("spherevae.losses.prior", "HypersphericalPriorLoss"),
    ("spherevae.distributions.vmf", "VonMisesFisher"),
    ("spherevae.training.objectives", "CompressedObjective"),
    ("spherevae.api", "Run"),
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
                             report=True, verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} fail (run python -m doctest -v)"


@pytest.mark.parametrize(("module", "name"), MUST_HAVE_EXAMPLES)
def test_core_objects_have_an_example(module: str, name: str) -> None:
    obj = getattr(importlib.import_module(module), name)
    examples = doctest.DocTestParser().get_examples(obj.__doc__ or "")
    assert len(examples) >= 2, f"{module}.{name} needs a docstring example"
