#!/usr/bin/env bash
# The GPU measurements of docs/benchmarks.md, for a machine with one CUDA GPU and a
# python3 that has torch, numpy, scipy, scikit-learn, matplotlib, pyyaml, pillow, tqdm,
# pytest and hypothesis. Writes its logs to ${OUT:-gpu-results}/.
#   bash benchmarks/gpu_session.sh tests      # GPU tests, coordinates and loss-overhead benchmarks
#   bash benchmarks/gpu_session.sh epochs     # CIFAR-10-shaped epoch times, standard vs compressed
#   bash benchmarks/gpu_session.sh all        # both
#   bash benchmarks/gpu_session.sh quick      # GPU tests + the loss-overhead benchmark only (~3 min)
#   bash benchmarks/gpu_session.sh graph      # GPU + Triton tests, bench_gpu_step step/throughput/profile (~5 min)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-results}
mkdir -p "$OUT"
export PYTHONPATH=src PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
MODE=${1:-tests}
if [ "$MODE" = all ]; then bash "$0" tests; bash "$0" epochs; exit; fi
case "$MODE" in
  tests)
    { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; $PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"; } > "$OUT/env.txt" 2>&1
    $PY -m pytest -q -p no:cacheprovider tests/training/test_gpu.py 2>&1 | tee "$OUT/gpu_tests.log"
    $PY benchmarks/bench_coordinates.py --device cuda --rounds 15 --skip-masked-above 2000 2>&1 | tee "$OUT/bench_coordinates_cuda.md"
    $PY benchmarks/bench_loss_overhead.py --device cuda --pairs 30 --warmup 5 2>&1 | tee "$OUT/bench_loss_cuda.md"
    $PY benchmarks/bench_loss_overhead.py --device cuda --pairs 30 --warmup 5 --compile-loss 2>&1 | tee "$OUT/bench_loss_cuda_compiled.md"
    ;;
  quick)
    { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; $PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"; } > "$OUT/env.txt" 2>&1
    $PY -m pytest -q -p no:cacheprovider tests/training/test_gpu.py 2>&1 | tee "$OUT/gpu_tests.log"
    $PY benchmarks/bench_loss_overhead.py --device cuda --pairs 20 --warmup 5 2>&1 | tee "$OUT/bench_loss_cuda.md"
    ;;
  graph)
    { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; $PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())"; } > "$OUT/env.txt" 2>&1
    $PY -m pytest -q -p no:cacheprovider tests/training/test_gpu.py tests/losses/test_kernels.py 2>&1 | tee "$OUT/tests.log"
    $PY benchmarks/bench_gpu_step.py step --blocks 8 2>&1 | tee "$OUT/step.md"
    $PY benchmarks/bench_gpu_step.py throughput --latent-dims 200 --steps 150 --repeats 2 2>&1 | tee "$OUT/throughput.md"
    $PY benchmarks/bench_gpu_step.py profile --latent-dims 200 2>&1 | tee "$OUT/profile.md"
    ;;
  epochs)
    for n in 200 1000; do
      $PY benchmarks/bench_trainer.py --threads 8 epoch --repeats 3 \
        --config configs/cifar10-standard.yaml --config configs/cifar10-compressed.yaml \
        "data.name=synthetic" "data.options={image_shape: [3, 32, 32], train_size: 50000, test_size: 10000}" \
        data.keep_on_device=true train.device=cuda train.amp=bf16 model.latent_dim=$n 2>&1 | tee "$OUT/bench_epoch_cuda_n$n.md"
    done
    ;;
esac
