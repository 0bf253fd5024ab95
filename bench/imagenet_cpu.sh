#!/usr/bin/env bash
# ResNet-50 and ResNeXt-50 (32×4d) on the CPU (issue #15 part 5): rbl (rbl-bench) against
# PyTorch eager NCHW and eager channels_last, the same 224-px batch-32 training step + RBL head
# and evaluation forward, THREADS threads each, rounds rotating the order. torch.compile is
# left out: it compiles each 50-layer net for minutes per process on this machine, longer than
# the measurement. Writes bench/results/imagenet-cpu-<time>.jsonl and prints the summary
# (bench/summarise.py). PyTorch installs from PyPI into bench/.venv on first use.
# Usage: bench/imagenet_cpu.sh [ROUNDS=2] [STEPS=2]
#   (environment: THREADS=2; BASELINE=path/to/another/rbl-bench to time an older build in the
#   same rounds, its lines marked "impl": "rbl-baseline")
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-2}"; steps="${2:-2}"
if [ ! -x bench/.venv/bin/python ] || ! bench/.venv/bin/python -c 'import torch' 2>/dev/null; then
  python3 -m venv bench/.venv
  bench/.venv/bin/pip install --quiet --progress-bar off torch numpy
fi
cargo build --release --quiet --bin rbl-bench
threads=${THREADS:-2}
export OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads RAYON_NUM_THREADS=$threads
raw="bench/results/imagenet-cpu-$(date +%Y%m%d-%H%M%S).jsonl"
mkdir -p bench/results
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); torch $(bench/.venv/bin/python -c 'import torch; print(torch.__version__)'); ResNet-50 / ResNeXt-50, 3x224x224, batch 32, $steps steps" | tee "$raw.txt"
shape=(--batch 32 --input 3x224x224 --steps "$steps")
for round in $(seq 1 "$rounds"); do
  for backbone in resnet50 resnext50_32x4d; do
    torch=(bench/.venv/bin/python bench/torch_step.py --backbone "$backbone" "${shape[@]}" --warmup 1 --threads "$threads")
    cmds=("target/release/rbl-bench --backbone $backbone ${shape[*]} --warmup 1" "${torch[*]}" "${torch[*]} --channels-last")
    [ -n "${BASELINE:-}" ] && cmds+=("$BASELINE --backbone $backbone ${shape[*]} --warmup 1")
    n=${#cmds[@]}
    for k in $(seq 0 $((n - 1))); do
      cmd=${cmds[$(( (k + round) % n ))]}
      # shellcheck disable=SC2086
      if [ -n "${BASELINE:-}" ] && [[ $cmd == "$BASELINE"* ]]; then
        $cmd | sed 's/"impl":"rbl"/"impl":"rbl-baseline"/' >>"$raw" || echo "failed: $cmd" >&2
      else
        $cmd >>"$raw" || echo "failed: $cmd" >&2
      fi
    done
    echo "round $round/$rounds: $backbone done" >&2
  done
done
bench/.venv/bin/python bench/summarise.py "$raw"
