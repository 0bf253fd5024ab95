#!/usr/bin/env bash
# Kill-and-resume soak test of crash safety. A short real run (a Fashion-MNIST-LT slice, 3
# epochs, a checkpoint every 7 steps) is stopped at random moments -- while loading data,
# mid-epoch, while writing a checkpoint or the results -- and resumed, CYCLES times. The signal
# is drawn from SIGKILL (twice as likely), SIGTERM, SIGHUP and SIGINT; every fourth cycle a
# second writer starts on the same run folder at once, and exactly one of the two may write
# (the other is refused: "in use by process ..."). Each run that finishes is compared with an
# uninterrupted run of the same config: the final weight digest and metrics.json (less its
# wall-clock time) must be identical. Then a fresh run starts.
# Then the data-walk cases (issue #36): an image-folder tree with links to `.` and `..` inside
# class folders and a FIFO named like an image must train to the right counts without hanging,
# and SIGTERM while a large tree loads must stop the process promptly (exit 130) with nothing
# written.
# Usage: scripts/soak.sh [CYCLES=20] [RBL=target/release/rbl]
# Prints cycles done, signals that landed, concurrent writers refused, finished runs and
# mismatches, then the walk cases; exits 1 on any mismatch or failed case.
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
  "$bin" train "${args[@]}" -q >/dev/null 2>"$work/first.out" &
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
    # Either of the two may be the one refused.
    if grep -q "in use by\|already holds a run" "$work/second.out" "$work/first.out"; then refused=$((refused + 1)); fi
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

# --- The data walk: links to folders, FIFOs, a signal during the load. ---
# Tiny PNGs written by Python's zlib (no imaging library needed): $1 = folder, $2 = count,
# $3 = grey level.
pngs() {
  python3 - "$@" <<'PY'
import os, struct, sys, zlib
folder, count, level = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
side = int(sys.argv[4]) if len(sys.argv) > 4 else 12
os.makedirs(folder, exist_ok=True)
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
for i in range(count):
    rows = (b"\0" + bytes([(level + i + x) % 256 for x in range(side)])) * side
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    open(os.path.join(folder, f"{i:05d}.png"), "wb").write(png)
PY
}
failures=0
case_result() { if [ "$1" = ok ]; then echo "walk case: $2: ok"; else echo "walk case: $2: FAILED ($3)"; failures=$((failures + 1)); fi; }
tree="$work/tree"
pngs "$tree/train/a" 12 10; pngs "$tree/train/b" 6 200; pngs "$tree/test/a" 4 10; pngs "$tree/test/b" 4 200
ln -s . "$tree/train/a/loop"; ln -s .. "$tree/train/a/up"; ln -s . "$tree/train/b/loop"
mkfifo "$tree/test/a/f.png"
cat > "$work/tree.toml" <<TOML
name = "tree"
[data]
dataset = "image-folder"
root = "$tree"
imbalance_ratio = 1.0
image_size = 12
workers = 2
[model]
widths = [4, 8, 8]
feature_dim = 8
[train]
epochs = 1
batch_size = 6
TOML
if timeout 120 "$bin" train --config "$work/tree.toml" --out "$work/tree_run" -q 2>"$work/tree.err" >/dev/null; then
  if grep -q '"train_counts": \[' "$work/tree_run/metrics.json" && tr -d ' \n' <"$work/tree_run/metrics.json" | grep -q '"train_counts":\[12,6\]'; then
    case_result ok "links to . and .. counted once, FIFO skipped"
  else
    case_result bad "links and FIFO" "train_counts $(tr -d ' \n' <"$work/tree_run/metrics.json" | grep -o '"train_counts":\[[0-9,]*\]')"
  fi
  grep -q "symbolic links to folders not followed" "$work/tree.err" && grep -q "not regular files" "$work/tree.err" \
    && case_result ok "the walk names what it skipped" || case_result bad "notes" "$(cat "$work/tree.err")"
else
  case_result bad "links and FIFO" "exit $? (124 = hung): $(tail -2 "$work/tree.err")"
fi
# A large test set (20,000 images, checked before training starts): SIGTERM a moment into it.
big="$work/big"
pngs "$big/train/a" 20 10 12; pngs "$big/train/b" 20 200 12; pngs "$big/test/a" 10000 10 48; pngs "$big/test/b" 10000 200 48
sed "s|root = \"$tree\"|root = \"$big\"|" "$work/tree.toml" > "$work/big.toml"
"$bin" train --config "$work/big.toml" --out "$work/big_run" -q >/dev/null 2>"$work/big.err" &
pid=$!
sleep 0.15
kill -TERM "$pid"
t0=$(date +%s.%N)
wait "$pid"; code=$?
waited=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
if [ "$code" -eq 130 ] && [ ! -e "$work/big_run/config.toml" ]; then
  case_result ok "SIGTERM during the load: exit 130 after ${waited}s, nothing written"
elif [ "$code" -eq 130 ] || [ "$code" -eq 143 ]; then
  case_result bad "SIGTERM during the load" "exit $code but $(ls "$work/big_run" 2>/dev/null | tr '\n' ' ') written"
else
  case_result bad "SIGTERM during the load" "exit $code after ${waited}s: $(tail -1 "$work/big.err")"
fi
echo "walk cases failed: $failures"
[ "$mismatches" -eq 0 ] && [ "$failures" -eq 0 ]
