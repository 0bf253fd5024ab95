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
# shellcheck source=bench/setup.sh
source bench/setup.sh
raw="bench/results/imagenet-cpu-$(date +%Y%m%d-%H%M%S).jsonl"
echo "$machine; ResNet-50 / ResNeXt-50, 3x224x224, batch 32, $steps steps" | tee "$raw.txt"
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
