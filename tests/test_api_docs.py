"""The API reference is generated from the docstrings by scripts/api_docs.sh (pdoc): every
subpackage gets its page, and a core class's docstring, example included, is on it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = ["_utils", "io", "geometry", "data", "losses", "distributions", "models", "plots",
               "training", "evaluation", "report", "experiments"]

pytest.importorskip("pdoc")


def test_the_api_reference_builds_with_a_page_per_module(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "api_docs.sh"), str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    pages = tmp_path / "spherevae"
    for name in SUBPACKAGES:
        assert (pages / f"{name}.html").is_file(), name
    assert (pages / "training" / "objectives.html").is_file()
    vmf = (pages / "distributions" / "vmf.html").read_text()
    assert "VonMisesFisher" in vmf and "concentration=50.0" in vmf  # the docstring example
    assert "fit" in (pages / "api.html").read_text()
