#!/usr/bin/env bash
# Side-by-side step benchmark: rbl (rbl-bench, burn flex) against PyTorch (bench/torch_step.py),
# the same ResNet-32 + RBL-head step, on this machine, in the same run, THREADS threads each.
# PyTorch runs at each of its ordinary settings: eager NCHW, eager channels_last, and
# torch.compile with channels_last (compile time excluded, reported apart). Rounds rotate the
# order of the four so drift in machine load hits all alike. Prints and writes
# bench/results.md: median train and eval images/s, rbl's ratio to each setting and to the best
# of them, and peak resident memory. PyTorch installs from PyPI into bench/.venv on first use.
# Usage: bench/run.sh [ROUNDS=5] [STEPS=5]   (environment: THREADS=2 to change threads,
#   COMPILE=0 to leave torch.compile out: each of its processes spends a minute compiling)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-5}"; steps="${2:-5}"
batches=(128 256); inputs=(3x32x32 1x28x28)
# shellcheck source=bench/setup.sh
source bench/setup.sh
raw="bench/results/raw-$(date +%Y%m%d-%H%M%S).jsonl"
echo "$machine" | tee "$raw.txt"
for round in $(seq 1 "$rounds"); do
  for input in "${inputs[@]}"; do
    for batch in "${batches[@]}"; do
      torch=(bench/.venv/bin/python bench/torch_step.py --batch "$batch" --input "$input" --steps "$steps" --threads "$threads")
      cmds=("target/release/rbl-bench --batch $batch --input $input --steps $steps"
            "${torch[*]}" "${torch[*]} --channels-last" "${torch[*]} --channels-last --compile")
      n=4; [ "${COMPILE:-1}" = 0 ] && n=3
      for k in $(seq 0 $((n - 1))); do
        # shellcheck disable=SC2086
        ${cmds[$(( (k + round) % n ))]} >>"$raw" || echo "failed: ${cmds[$(( (k + round) % n ))]}" >&2
      done
      echo "round $round/$rounds: batch $batch, input $input done" >&2
    done
  done
done
bench/.venv/bin/python bench/summarise.py "$raw" | tee bench/results.md
