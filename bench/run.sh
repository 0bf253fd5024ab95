#!/usr/bin/env bash
# Side-by-side step benchmark: rbl (rbl-bench, burn flex) against PyTorch (bench/torch_step.py),
# the same ResNet-32 + RBL-head step, on this machine, in the same run, 2 threads each.
# Rounds alternate the two (and which goes first) so drift in machine load hits both alike.
# Prints and writes bench/results.md: median train and eval images/s, rbl/PyTorch ratios and
# peak resident memory. PyTorch installs from PyPI into bench/.venv on first use.
# Usage: bench/run.sh [ROUNDS=5] [STEPS=5]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-5}"; steps="${2:-5}"
batches=(128 256); inputs=(3x32x32 1x28x28)
if [ ! -x bench/.venv/bin/python ] || ! bench/.venv/bin/python -c 'import torch' 2>/dev/null; then
  python3 -m venv bench/.venv
  bench/.venv/bin/pip install --quiet --progress-bar off torch numpy
fi
cargo build --release --quiet --bin rbl-bench
export OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 RAYON_NUM_THREADS=2
raw="bench/results/raw-$(date +%Y%m%d-%H%M%S).jsonl"
mkdir -p bench/results
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); torch $(bench/.venv/bin/python -c 'import torch; print(torch.__version__)')" | tee "$raw.txt"
for round in $(seq 1 "$rounds"); do
  for input in "${inputs[@]}"; do
    for batch in "${batches[@]}"; do
      rbl_cmd=(target/release/rbl-bench --batch "$batch" --input "$input" --steps "$steps")
      torch_cmd=(bench/.venv/bin/python bench/torch_step.py --batch "$batch" --input "$input" --steps "$steps" --threads 2)
      if (( round % 2 )); then "${rbl_cmd[@]}" >>"$raw"; "${torch_cmd[@]}" >>"$raw"
      else "${torch_cmd[@]}" >>"$raw"; "${rbl_cmd[@]}" >>"$raw"; fi
      echo "round $round/$rounds: batch $batch, input $input done" >&2
    done
  done
done
bench/.venv/bin/python bench/summarise.py "$raw" | tee bench/results.md
