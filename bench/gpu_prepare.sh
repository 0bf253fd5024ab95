#!/usr/bin/env bash
# Builds what bench/gpu.sh needs on a GPU machine that has no network, into dist/ (git-ignored;
# pass it to `device` as the one carried path, 64 MiB at most):
#   dist/bin.tar.xz     rbl and rbl-bench with --features gpu (Vulkan + fusion + autotune), and
#                       rbl-bench-nofusion with --features vulkan (to measure what fusion brings)
#   dist/fashion-mnist/*.gz   the Debian package's files (31 MB)
# Profile `dist`: release without debug info, stripped (release keeps line tables: 600+ MB).
# The three binaries share most of their code (burn, cubecl, wgpu), so they go into one tar
# compressed with a dictionary larger than a binary: measured on the release builds, rbl +
# rbl-bench stripped are 100 + 93 MB, 13.6 MB each with `xz -9` alone (three: ~41 MB, with the
# data over 64 MiB) and 21.3 MB together with a 192 MiB dictionary.
# Then, in a session lent a GPU:  run(command="bench/gpu.sh \"$OUT\"", carry=["dist"])
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf dist && mkdir -p dist/stage dist/fashion-mnist
target_dir=${CARGO_TARGET_DIR:-target}
CARGO_TARGET_DIR=$target_dir cargo build --profile dist --features gpu --bin rbl --bin rbl-bench
cp "$target_dir/dist/rbl" "$target_dir/dist/rbl-bench" dist/stage/
CARGO_TARGET_DIR="$target_dir/nofusion" cargo build --profile dist --features vulkan --bin rbl-bench
cp "$target_dir/nofusion/dist/rbl-bench" dist/stage/rbl-bench-nofusion
tar -C dist/stage -cf - rbl rbl-bench rbl-bench-nofusion | xz -9e --lzma2=dict=192MiB -T1 >dist/bin.tar.xz
rm -rf dist/stage
cp /usr/share/datasets/fashion-mnist/*.gz dist/fashion-mnist/
du -sh dist dist/bin.tar.xz dist/fashion-mnist
total=$(du -sb dist | cut -f1)
if [ "$total" -gt $((64 * 1024 * 1024)) ]; then
  echo "dist/ is $((total / 1024 / 1024)) MiB: over the 64 MiB a device call carries" >&2
  exit 1
fi
