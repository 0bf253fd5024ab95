#!/usr/bin/env bash
# Mixed precision on a GPU (issue #6): step throughput of rbl-bench at f32 / f16 / bf16 and the
# accuracy effect on a short real run: the baseline budget's RBL config (Fashion-MNIST-LT IR100,
# configs/baselines/baseline_fmnist_lt100_rbl.toml), seed 0, trained on the GPU in f32 and in f16.
# Usage: bench/gpu_precision.sh BIN_DIR FASHION_MNIST_DIR OUT_DIR
#   BIN_DIR holds rbl and rbl-bench from: cargo build --release --features gpu --bins
set -uo pipefail
BIN=$1; DATA=$2; OUT=$3
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] && [ -z "${VK_DRIVER_FILES:-}" ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
for p in f32 f16 bf16; do
  timeout 120 "$BIN/rbl-bench" --device gpu --precision "$p" --batch 128,256 --input 3x32x32 --warmup 3 --steps 10 \
    2>&1 | tail -3 | tee -a "$OUT/gpu_precision_bench.jsonl"
done
for p in f32 f16; do
  timeout 200 "$BIN/rbl" train --config configs/baselines/baseline_fmnist_lt100_rbl.toml --force --out "$OUT/train_$p" \
    --device gpu --set "data.root=\"$DATA\"" --set "train.precision=\"$p\"" --set "name=\"gpu_$p\"" 2>&1 | grep -v "^  step" | tail -12
  cp "$OUT/train_$p/metrics.json" "$OUT/train_${p}_metrics.json" 2>/dev/null || true
  cp "$OUT/train_$p/epochs.jsonl" "$OUT/train_${p}_epochs.jsonl" 2>/dev/null || true
  rm -rf "$OUT/train_$p"
done
