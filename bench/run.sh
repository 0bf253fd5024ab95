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
if [ ! -x bench/.venv/bin/python ] || ! bench/.venv/bin/python -c 'import torch' 2>/dev/null; then
  python3 -m venv bench/.venv
  bench/.venv/bin/pip install --quiet --progress-bar off torch numpy
fi
cargo build --release --quiet --bin rbl-bench
threads=${THREADS:-2}
export OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads RAYON_NUM_THREADS=$threads
raw="bench/results/raw-$(date +%Y%m%d-%H%M%S).jsonl"
mkdir -p bench/results
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); torch $(bench/.venv/bin/python -c 'import torch; print(torch.__version__)')" | tee "$raw.txt"
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
