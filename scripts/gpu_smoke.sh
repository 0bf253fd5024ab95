#!/usr/bin/env bash
# GPU smoke run on a machine with an NVIDIA GPU: trains RBL on Fashion-MNIST-LT IR100 with
# burn's wgpu backend (Vulkan) for a few epochs and prints the per-epoch log.
# Usage: scripts/gpu_smoke.sh RBL_BINARY FASHION_MNIST_DIR OUT_DIR [EPOCHS]
# Build the binary with: cargo build --release --features gpu
set -uo pipefail
BIN=$1; DATA=$2; OUT=$3; EPOCHS=${4:-3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] && [ -z "${VK_DRIVER_FILES:-}" ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
for head in rbl etf; do
  timeout 240 "$BIN" train --config configs/fmnist_lt100_${head}.toml --force --out "$OUT/gpu_${head}" \
    --set device=gpu --set "data.root=\"$DATA\"" --set train.epochs=$EPOCHS 2>&1 | grep -v "^  step"
  echo "exit $head: $?"
  cp "$OUT/gpu_${head}/epochs.jsonl" "$OUT/gpu_${head}_epochs.jsonl" 2>/dev/null || true
  cp "$OUT/gpu_${head}/metrics.json" "$OUT/gpu_${head}_metrics.json" 2>/dev/null || true
  rm -rf "$OUT/gpu_${head}"
done
