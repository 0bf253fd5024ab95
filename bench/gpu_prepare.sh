#!/usr/bin/env bash
# Builds what bench/gpu.sh needs on a GPU machine that has no network, into dist/ (git-ignored;
# pass it to `device` as the one carried path, 64 MiB at most):
#   dist/bin/rbl.xz, rbl-bench.xz           --features gpu (Vulkan + fusion + autotune)
#   dist/bin/rbl-bench-nofusion.xz          --features vulkan (to measure what fusion brings)
#   dist/fashion-mnist/*.gz                 the Debian package's files
# Profile `dist`: release without debug info, stripped (release keeps line tables: 120+ MB).
# Then, in a session lent a GPU:  run(command="bench/gpu.sh \"$OUT\"", carry=["dist"])
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p dist/bin dist/fashion-mnist
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target} cargo build --profile dist --features gpu --bin rbl --bin rbl-bench
target_dir=${CARGO_TARGET_DIR:-target}
xz -T0 -9 -c "$target_dir/dist/rbl" >dist/bin/rbl.xz
xz -T0 -9 -c "$target_dir/dist/rbl-bench" >dist/bin/rbl-bench.xz
CARGO_TARGET_DIR="$target_dir/nofusion" cargo build --profile dist --features vulkan --bin rbl-bench
xz -T0 -9 -c "$target_dir/nofusion/dist/rbl-bench" >dist/bin/rbl-bench-nofusion.xz
cp /usr/share/datasets/fashion-mnist/*.gz dist/fashion-mnist/
du -sh dist dist/bin/* dist/fashion-mnist
total=$(du -sb dist | cut -f1)
if [ "$total" -gt $((64 * 1024 * 1024)) ]; then
  echo "dist/ is $((total / 1024 / 1024)) MiB: over the 64 MiB a device call carries" >&2
  exit 1
fi
