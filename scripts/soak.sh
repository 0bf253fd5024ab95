#!/usr/bin/env bash
# Kill-and-resume soak test of crash safety. A short real run (a Fashion-MNIST-LT slice, 3
# epochs, a checkpoint every 7 steps) is stopped at random moments -- while loading data,
# mid-epoch, while writing a checkpoint or the results -- and resumed, CYCLES times. The signal
# is drawn from SIGKILL (twice as likely), SIGTERM, SIGHUP and SIGINT; every fourth cycle a
# second writer starts on the same run folder at once, and exactly one of the two may write
# (the other is refused: "in use by process ..."). Each run that finishes is compared with an
# uninterrupted run of the same config: the final weight digest and metrics.json (less its
# wall-clock time) must be identical. Then a fresh run starts.
# Usage: scripts/soak.sh [CYCLES=20] [RBL=target/release/rbl]
# Prints cycles done, signals that landed, concurrent writers refused, finished runs and
# mismatches; exits 1 on any mismatch.
set -uo pipefail
cycles=${1:-20}
bin=${2:-target/release/rbl}
data=/usr/share/datasets/fashion-mnist
[ -x "$bin" ] || { echo "no rbl binary at $bin (cargo build --release)" >&2; exit 2; }
[ -f "$data/train-images-idx3-ubyte.gz" ] || { echo "Fashion-MNIST missing: apt-get install dataset-fashion-mnist" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/soak.toml" <<TOML
name = "soak"
seed = 11
[data]
root = "$data"
imbalance_ratio = 10.0
n_max = 40
test_per_class = 10
[model]
head = "rbl"
widths = [8, 16, 32]
feature_dim = 32
[train]
epochs = 3
batch_size = 4
checkpoint_every_steps = 7
[eval]
batch_size = 64
TOML

digest() { grep -o '"weights_crc32": [0-9]*' "$1/$(cat "$1/latest")/state.json"; }
result() { grep -v wall_seconds "$1/metrics.json"; }

start=$(date +%s.%N)
"$bin" train --config "$work/soak.toml" --out "$work/straight" -q >/dev/null || { echo "uninterrupted run failed" >&2; exit 2; }
span=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
echo "uninterrupted run: ${span}s, $(digest "$work/straight")"

kills=0; finished=0; mismatches=0; n=0; refused=0
signals=(KILL KILL TERM HUP INT)
run="$work/run$finished"
compare() {
  if [ "$(digest "$run")" == "$(digest "$work/straight")" ] && [ "$(result "$run")" == "$(result "$work/straight")" ]; then
    echo "run $finished: identical to the uninterrupted run"
  else
    echo "run $finished: MISMATCH ($(digest "$run") vs $(digest "$work/straight"))"
    mismatches=$((mismatches + 1))
  fi
  finished=$((finished + 1))
  run="$work/run$finished"
}
for cycle in $(seq 1 "$cycles"); do
  if [ -f "$run/config.toml" ]; then args=(--resume "$run"); else args=(--config "$work/soak.toml" --out "$run"); fi
  "$bin" train "${args[@]}" -q >/dev/null 2>&1 &
  pid=$!
  pid2=""
  if [ $((cycle % 4)) -eq 0 ]; then
    "$bin" train "${args[@]}" -q >"$work/second.out" 2>&1 &
    pid2=$!
  fi
  sig=${signals[$((RANDOM % ${#signals[@]}))]}
  sleep "$(awk -v seed="$RANDOM" -v span="$span" 'BEGIN { srand(seed); printf "%.3f", 0.05 + rand() * span * 0.6 }')"
  if kill -"$sig" "$pid" 2>/dev/null; then kills=$((kills + 1)); echo "cycle $cycle: SIG$sig"; fi
  wait "$pid" 2>/dev/null
  if [ -n "$pid2" ]; then
    wait "$pid2" 2>/dev/null
    # Refused outright, or (a new run) found the other's config.toml; otherwise the first was
    # stopped before it took the lock. Two writers at once would show as a mismatch below.
    if grep -q "in use by\|already holds a run" "$work/second.out"; then refused=$((refused + 1)); fi
  fi
  n=$cycle
  echo "cycle $cycle: latest $(cat "$run/latest" 2>/dev/null || echo none)"
  if [ -f "$run/metrics.json" ] && [ "$(cat "$run/latest" 2>/dev/null)" == "checkpoint-000003" ]; then compare; fi
done
# Finish the run in progress, then compare it too.
if [ -f "$run/config.toml" ]; then
  "$bin" train --resume "$run" -q >/dev/null 2>&1 || { echo "final resume failed" >&2; mismatches=$((mismatches + 1)); }
  compare
fi
echo "cycles $n, signals landed $kills, second writers refused $refused, finished runs $finished, mismatches $mismatches"
[ "$mismatches" -eq 0 ]
