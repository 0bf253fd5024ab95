#!/usr/bin/env bash
# Reproduces docs/results.md's baseline comparison (issue #5): every method of configs/baselines/ at
# imbalance ratios 100 and 50, seeds 0 1 2, then the two-stage methods (cRT, LWS, MARC,
# tau-normalisation, post-hoc logit adjustment) on each CE and CB-CE run, cRT on each KCL and TSC
# run (their classifier), then the tables.
#
#   scripts/results_baselines.sh            # JOBS=2 runs side by side, one thread each
#   JOBS=1 SEEDS="0" scripts/results_baselines.sh
#
# Runs go to runs/baselines/<config name>-s<seed>. A finished run is kept (delete it to redo it);
# an interrupted one resumes from its last checkpoint. Results print as Markdown tables and are
# also written to runs/baselines/tables.md.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-2}
SEEDS=${SEEDS:-"0 1 2"}
OUT=runs/baselines
cargo build --release
BIN=$(mktemp -d)/rbl
cp target/release/rbl "$BIN"   # later rebuilds do not touch a long batch
mkdir -p "$OUT"

train_one() { # config seed
  local cfg=$1 seed=$2 name dir
  name="$(basename "$cfg" .toml)-s$seed"
  dir="$OUT/$name"
  if [[ -f $dir/metrics.json ]]; then return 0; fi
  if [[ -f $dir/config.toml ]]; then
    RAYON_NUM_THREADS=1 "$BIN" train --resume "$dir" -q
  else
    RAYON_NUM_THREADS=1 "$BIN" train --config "$cfg" --set seed="$seed" --set name="$name" --out "$dir" -q
  fi
}
export -f train_one
export BIN OUT

jobs_list() {
  for seed in $SEEDS; do
    for cfg in configs/baselines/*.toml; do echo "$cfg $seed"; done
  done
}
jobs_list | xargs -P "$JOBS" -L 1 bash -c 'train_one "$0" "$1"'

two_stage_one() { # run folder
  local dir=$1
  for m in crt lws marc; do
    [[ -f $dir/stage2-$m.json ]] || RAYON_NUM_THREADS=1 "$BIN" stage2 --checkpoint "$dir" --method "$m" > /dev/null
  done
  for m in tau-norm logit-adjust; do
    [[ -f $dir/posthoc-$m.json ]] || RAYON_NUM_THREADS=1 "$BIN" posthoc --checkpoint "$dir" --method "$m" > /dev/null
  done
}
export -f two_stage_one
ls -d "$OUT"/baseline_fmnist_lt*_{ce,cb_ce}-s* | xargs -P "$JOBS" -n 1 bash -c 'two_stage_one "$0"'

# KCL and TSC learn the feature alone: their classifier is cRT's (class-balanced, frozen feature).
crt_one() { # run folder
  [[ -f $1/stage2-crt.json ]] || RAYON_NUM_THREADS=1 "$BIN" stage2 --checkpoint "$1" --method crt > /dev/null
}
export -f crt_one
ls -d "$OUT"/baseline_fmnist_lt*_{kcl,tsc}-s* | xargs -P "$JOBS" -n 1 bash -c 'crt_one "$0"'

seeds_csv=$(echo $SEEDS | tr ' ' ',')
{
  "$BIN" table --runs "$OUT" --seeds "$seeds_csv" --two-stage --shots --raw configs/baselines/*.toml
  echo
  "$BIN" table --runs "$OUT" --seeds "$seeds_csv" --two-stage --shots configs/baselines/*.toml
} | tee "$OUT/tables.md"
