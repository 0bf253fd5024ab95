#!/usr/bin/env bash
# GPU figures: the step benchmark (rbl-bench on burn's wgpu backend, Vulkan) at batch 128/256 on
# 3x32x32 and 1x28x28, for the RBL and Fixed heads, then a short Fashion-MNIST-LT training run
# on the GPU. Run on a machine with an NVIDIA GPU and its Vulkan driver.
# Usage: bench/gpu.sh BIN_DIR FASHION_MNIST_DIR OUT_DIR [EPOCHS=2]
#   BIN_DIR holds rbl and rbl-bench from: cargo build --release --features gpu --bins
set -uo pipefail
BIN=$1; DATA=$2; OUT=$3; EPOCHS=${4:-2}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] && [ -z "${VK_DRIVER_FILES:-}" ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
for head in rbl etf; do
  timeout 150 "$BIN/rbl-bench" --device gpu --head "$head" --batch 128,256 --input 3x32x32,1x28x28 --warmup 3 --steps 10 \
    | tee -a "$OUT/gpu_bench.jsonl"
done
timeout 300 "$BIN/rbl" train --config configs/fmnist_lt100_rbl.toml --force --out "$OUT/gpu_train" --device gpu \
  --set "data.root=\"$DATA\"" --set train.epochs=$EPOCHS 2>&1 | grep -v "^  step"
cp "$OUT/gpu_train/epochs.jsonl" "$OUT/gpu_train_epochs.jsonl" 2>/dev/null || true
cp "$OUT/gpu_train/metrics.json" "$OUT/gpu_train_metrics.json" 2>/dev/null || true
rm -rf "$OUT/gpu_train"
