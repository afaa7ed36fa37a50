#!/usr/bin/env bash
# The CUDA path's check, in one script (< 10 minutes on one modern GPU):
#   1. the CUDA tests (YellowFin and the training loop without host syncs, fused/eager parity);
#   2. the optimizer step benchmark on CUDA (YellowFin eager/fused, Adam foreach/fused, SGD);
#   3. end-to-end steps/s and peak memory of every task at scale=paper (fp32, bf16,
#      channels_last), every optimizer, interleaved.
# Results go to $OUT/results/perf (default: ./results/perf), with the GPU name, torch and
# CUDA versions and the commands. Usage, on a machine with a CUDA GPU and the data:
#   YFBENCH_DATA_DIR=../shared/data bash scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
PERF=${OUT:-.}/results/perf
mkdir -p "$PERF"
export YFBENCH_DATA_DIR=${YFBENCH_DATA_DIR:-$(cd .. && pwd)/shared/data} WANDB_MODE=offline
gpu=$($PY -c "import torch; print(torch.cuda.get_device_name().replace(' ', '_'))" 2>/dev/null) || {
  echo "gpu_check: no CUDA device (torch.cuda.get_device_name failed)" >&2; exit 2; }
status=0
# Each step runs in this shell (never as part of a pipeline, whose subshell would lose
# the status), so any failing step makes the script exit 1.
step() { echo; echo "== $*"; "$@" || { status=1; echo "gpu_check: FAILED: $*" >&2; }; }
cuda_tests() {
  timeout 150 $PY -m pytest -q -m cuda -p no:cacheprovider 2>&1 | tee "$PERF/cuda_${gpu}_tests.txt"
  return "${PIPESTATUS[0]}"
}

step cuda_tests
step timeout 150 $PY scripts/bench_optimizer.py --device cuda --repeats 50 \
  --out "$PERF/optimizer_cuda_${gpu}.md"
step timeout 300 $PY scripts/bench_training.py --device cuda --scale paper --steps 150 \
  --rounds 2 --threads 4 --out "$PERF/cuda_${gpu}.md"
exit $status
