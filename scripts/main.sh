#!/usr/bin/env bash
# Set up (idempotent) and run the main job: train a standard and a compressed VAE
# on Fashion-MNIST, evaluate both and write an HTML report (CPU, 6-9 minutes on
# 2 idle cores, depending on the host: docs/benchmarks.md#main-job).
# Extra arguments go to `spherevae quickstart`, e.g. `--out runs/mine`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/spherevae quickstart "$@"
