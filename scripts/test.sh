#!/usr/bin/env bash
# Set up (idempotent) and run the whole check: lint (ruff, mypy, import layers), then the test suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k coordinates`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
.venv/bin/ruff check src tests benchmarks scripts
.venv/bin/mypy  # src/spherevae, configured in pyproject.toml [tool.mypy]
.venv/bin/lint-imports  # the layers of the package, [tool.importlinter] in pyproject.toml
.venv/bin/python -m pytest -n 2 "$@"
