#!/usr/bin/env bash
# Idempotent set-up for a fresh machine: a virtual environment in .venv with
# spherevae and its extras, and (where we are root on Debian) the system
# packages the main job and the tests use. Safe to run again; it skips what is done.
#   bash scripts/setup.sh            # library + CLI + Fashion-MNIST
#   bash scripts/setup.sh --test     # also test tools and headless chromium
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=0
[[ "${1:-}" == "--test" ]] && want_test=1

PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
    "$PY" -m venv .venv
fi
VPY=.venv/bin/python
$VPY -m pip install -q --upgrade pip >/dev/null

# torch first, pinned: on this machine kind torch==2.13.0 is a local CPU wheel,
# whereas an open range would pull a multi-GB CUDA build. On a GPU machine,
# install the torch build you want before running this script; it is kept.
if ! $VPY -c "import torch" 2>/dev/null; then
    $VPY -m pip install -q "torch==${SPHEREVAE_TORCH_VERSION:-2.13.0}"
fi
extras="full"
# The tests also exercise the optional Ray backend and the experiment trackers
# (TensorBoard, MLflow, W&B offline). mlflow + wandb add ~0.5 GB and ~25 s of install
# on top of the rest and pull no torch build (measured with torch==2.13.0 present).
[[ $want_test == 1 ]] && extras="full,dev,ray,tensorboard,mlflow,wandb"
$VPY -m pip install -q -e ".[${extras}]"

apt_install() {
    # Installs Debian packages when we can (root + apt), else says how.
    local missing=()
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    [[ ${#missing[@]} == 0 ]] && return 0
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "setup: please install the Debian packages: ${missing[*]}" >&2
    fi
}
# Real Fashion-MNIST files, offline (installs to /usr/share/datasets/fashion-mnist).
apt_install dataset-fashion-mnist || echo "setup: dataset-fashion-mnist not installed; spherevae will try a download" >&2
if [[ $want_test == 1 ]]; then
    apt_install chromium chromium-driver || echo "setup: chromium not installed; browser tests will be skipped" >&2
fi
