#!/usr/bin/env bash
# Issue #13's GPU measurements, as one prepared script for a session lent a GPU machine (run
# once through `device`, results under $OUT). Everything it runs is built here by
# bench/gpu_prepare.sh (stripped binaries in one tar.xz, and the Fashion-MNIST files), which
# travel as the one carried folder `dist/`.
#
#   1. rbl-bench on the GPU: ResNet-32 + RBL head at batch 128/256, 3x32x32 and 1x28x28, f32 and
#      f16; with fusion off (a build without burn's fusion) and autotune at its lowest level, to
#      keep what is fastest; ResNet-50 and ResNeXt-50 at 224 px batch 64, f32 and f16.
#   2. The loader: images/s with the full CIFAR augmentation on 1/4/8/16 threads.
#   3. The CPU side of issues #15 and #38: rbl-bench (and PyTorch, if the machine has it) at
#      1/2/4/8/16 threads, against the scaling model in bench/README.md.
#   4. PyTorch on the same GPU, if `import torch` works there: eager and channels_last,
#      ResNet-32 and ResNeXt-50, the same step.
#   5. A real training run, RBL on Fashion-MNIST-LT IR100 (14,886 images), EPOCHS epochs on
#      the GPU: its epoch log (img/s, loader wait, ‖RᵀR − I‖ per epoch) and metrics.
#
# Usage (on the GPU machine, from the repository root): bench/gpu.sh [OUT=$OUT] [EPOCHS=20]
# Budget: each part has a timeout; the whole stays under ~9 minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-bench/results/gpu-out}}; EPOCHS=${2:-20}
mkdir -p "$OUT"
BIN=dist/bin; DATA=dist/fashion-mnist
log() { echo "== $(date +%T) $*" | tee -a "$OUT/gpu.log"; }
mkdir -p "$BIN" && xz -dc dist/bin.tar.xz | tar -C "$BIN" -xf - && chmod +x "$BIN"/*
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee -a "$OUT/gpu.log"
echo "cpu: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" | tee -a "$OUT/gpu.log"
if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] && [ -z "${VK_DRIVER_FILES:-}" ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
# cubecl's autotune cache: target/environment/ under the outermost Cargo.toml above the working
# directory (here the repository root); kept with the results so a reader can see what was tuned.
bench() { timeout "$1" "${@:2}" 2>>"$OUT/gpu.log" | tee -a "$OUT/bench.jsonl"; }

log "1. rbl-bench, GPU, ResNet-32 (fusion + autotune: the gpu feature)"
bench 150 "$BIN/rbl-bench" --device gpu --batch 128,256 --input 3x32x32,1x28x28 --warmup 10 --steps 40
bench 60 "$BIN/rbl-bench" --device gpu --precision f16 --batch 128,256 --input 3x32x32 --warmup 10 --steps 40
log "1b. without fusion, and with autotune at its lowest level"
[ -x "$BIN/rbl-bench-nofusion" ] && bench 60 "$BIN/rbl-bench-nofusion" --device gpu --batch 256 --input 3x32x32 --warmup 10 --steps 40
CUBECL_AUTOTUNE_LEVEL=minimal bench 60 "$BIN/rbl-bench" --device gpu --batch 256 --input 3x32x32 --warmup 10 --steps 40
log "1c. ResNet-50 / ResNeXt-50, 224 px, batch 64"
for bb in resnet50 resnext50_32x4d; do
  for p in f32 f16; do
    bench 60 "$BIN/rbl-bench" --device gpu --backbone "$bb" --precision "$p" --batch 64 --input 3x224x224 --warmup 3 --steps 10
  done
done

log "2. loader, full CIFAR augmentation"
bench 40 "$BIN/rbl-bench" --mode loader --full-augment --batch 256 --input 3x32x32 --workers 1,4,8,16

log "3. CPU thread scaling (issues #15, #38: compare with bench/scaling_model.py)"
have_torch=0; python3 -c 'import torch' 2>/dev/null && have_torch=1
for t in 1 2 4 8 16; do
  RAYON_NUM_THREADS=$t bench 40 "$BIN/rbl-bench" --batch 128 --input 3x32x32 --warmup 2 --steps 5
  [ $have_torch = 1 ] && OMP_NUM_THREADS=$t bench 60 python3 bench/torch_step.py --batch 128 --input 3x32x32 --warmup 2 --steps 5 --threads "$t" --channels-last
done

log "4. PyTorch on the GPU (same step): torch importable = $have_torch"
if [ $have_torch = 1 ] && python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
  for cl in "" "--channels-last"; do
    bench 90 python3 bench/torch_step.py --device cuda --batch 128,256 --input 3x32x32,1x28x28 --warmup 10 --steps 40 $cl
    bench 60 python3 bench/torch_step.py --device cuda --backbone resnext50_32x4d --batch 64 --input 3x224x224 --warmup 3 --steps 10 $cl
  done
else
  echo "PyTorch with CUDA is not on this machine: compare with published figures (bench/README.md)" | tee -a "$OUT/gpu.log"
fi

log "5. training: RBL, Fashion-MNIST-LT IR100, $EPOCHS epochs on the GPU"
timeout 240 "$BIN/rbl" train --config configs/fmnist_lt100_rbl.toml --force --out "$OUT/gpu_train" --device gpu \
  --set "data.root=\"$DATA\"" --set train.epochs="$EPOCHS" --set data.workers=8 2>&1 | grep -v "^  step" | tee -a "$OUT/gpu.log"
for f in epochs.jsonl metrics.json config.toml; do cp "$OUT/gpu_train/$f" "$OUT/gpu_train_$f" 2>/dev/null; done
rm -rf "$OUT/gpu_train"
cp -r target/environment "$OUT/autotune-cache" 2>/dev/null
log "done"
