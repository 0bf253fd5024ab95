#!/usr/bin/env bash
# Data-parallel training throughput on this machine: rbl's training step (rbl-bench, an `mpi`
# build) on 1 and 2 ranks of one thread each under `mpirun`, side by side with PyTorch DDP
# (gloo, `torchrun --nproc-per-node N`, bench/torch_ddp.py) of the same ResNet-32 + RBL step at
# the same global batch, eager NCHW, eager channels_last and torch.compile + channels_last
# (COMPILE=0 leaves it out: each process compiles for a minute, excluded from the timing),
# rounds rotating the order. Writes
# bench/results/mpi-<time>.jsonl and prints the medians and the ratios (bench/summarise_mpi.py).
# Usage: bench/mpi.sh [ROUNDS=3] [STEPS=10]   (BATCHES="128 256" INPUT=3x32x32)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"; steps="${2:-10}"
batches=(${BATCHES:-128 256}); input="${INPUT:-3x32x32}"
if [ ! -x bench/.venv/bin/python ] || ! bench/.venv/bin/python -c 'import torch' 2>/dev/null; then
  python3 -m venv bench/.venv && bench/.venv/bin/pip install --quiet --progress-bar off torch numpy
fi
command -v mpirun >/dev/null || { echo "mpirun missing: apt-get install openmpi-bin libopenmpi-dev libclang-dev" >&2; exit 2; }
cargo build --release --quiet --features mpi --bin rbl-bench
bench_bin=target/release/rbl-bench
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 RAYON_NUM_THREADS=1
mkdir -p bench/results
raw="bench/results/mpi-$(date +%Y%m%d-%H%M%S).jsonl"
echo "machine: $(getconf _NPROCESSORS_ONLN) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); torch $(bench/.venv/bin/python -c 'import torch; print(torch.__version__)'); $(mpirun --version | head -1)" | tee "$raw.txt"
mpi=(mpirun --allow-run-as-root --oversubscribe --bind-to core -x RAYON_NUM_THREADS=1)
for round in $(seq 1 "$rounds"); do
  for batch in "${batches[@]}"; do
    cmds=(
      "${mpi[*]} -np 1 $bench_bin --batch $batch --input $input --steps $steps"
      "${mpi[*]} -np 2 $bench_bin --batch $batch --input $input --steps $steps"
      "bench/.venv/bin/torchrun --standalone --nproc-per-node 1 bench/torch_ddp.py --batch $batch --input $input --steps $steps"
      "bench/.venv/bin/torchrun --standalone --nproc-per-node 2 bench/torch_ddp.py --batch $batch --input $input --steps $steps"
      "bench/.venv/bin/torchrun --standalone --nproc-per-node 2 bench/torch_ddp.py --batch $batch --input $input --steps $steps --channels-last"
    )
    if [ "${COMPILE:-1}" = 1 ]; then
      cmds+=("bench/.venv/bin/torchrun --standalone --nproc-per-node 2 bench/torch_ddp.py --batch $batch --input $input --steps $steps --channels-last --compile")
    fi
    n=${#cmds[@]}
    for k in $(seq 0 $((n - 1))); do
      cmd="${cmds[$(( (k + round) % n ))]}"
      # shellcheck disable=SC2086
      $cmd 2>/dev/null | grep '^{' >>"$raw" || echo "failed: $cmd" >&2
    done
    echo "round $round/$rounds: batch $batch done" >&2
  done
done
bench/.venv/bin/python bench/summarise_mpi.py "$raw" | tee bench/results-mpi.md
