#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 600) with libFuzzer (cargo-fuzz, nightly), two at
# a time, each starting from its seeds in fuzz/seeds/<target>. Prints runs, coverage and crashes
# per target and writes the logs to fuzz/logs/. Crash inputs land in fuzz/artifacts/<target>/.
# Needs: rustup toolchain nightly, cargo install cargo-fuzz.
# Usage: fuzz/run_all.sh [SECONDS=600] [TARGET...]
set -uo pipefail
cd "$(dirname "$0")"
secs=${1:-600}; shift || true
targets=("$@"); [ ${#targets[@]} -gt 0 ] || targets=(idx cifar pickle config checkpoint split image weights)
cargo +nightly fuzz build -O >/dev/null 2>&1 || { cargo +nightly fuzz build -O; exit 2; }
mkdir -p logs
run() {
  local t=$1
  mkdir -p "corpus/$t"
  cargo +nightly fuzz run -O "$t" "corpus/$t" "seeds/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 \
    -malloc_limit_mb=2048 -max_len=65536 -print_final_stats=1 >"logs/$t.log" 2>&1
  echo "$t: exit $?, $(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$') runs, \
$(grep -o 'cov: [0-9]*' "logs/$t.log" | tail -1), crashes $(ls "artifacts/$t" 2>/dev/null | wc -l)"
}
for ((i = 0; i < ${#targets[@]}; i += 2)); do
  run "${targets[i]}" &
  [ -n "${targets[i+1]:-}" ] && run "${targets[i+1]}" &
  wait
done
