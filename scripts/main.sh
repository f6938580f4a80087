#!/usr/bin/env bash
# Set up (idempotent) and run the main job: train a standard and a compressed VAE
# on Fashion-MNIST, evaluate both and write an HTML report (CPU, about 6 minutes on 2 idle cores).
# Extra arguments go to `spherevae quickstart`, e.g. `--out runs/mine`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/spherevae quickstart "$@"
