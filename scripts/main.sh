#!/usr/bin/env bash
# The main job on a fresh machine: install Fashion-MNIST (Debian package) if missing, build rbl,
# and train RBL on Fashion-MNIST-LT (imbalance ratio 100). Extra arguments go to `rbl train`,
# e.g. scripts/main.sh --set train.epochs=2 --out runs/short. Run again, it resumes runs/fmnist_lt100_rbl.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq dataset-fashion-mnist
fi
cargo build --release
RUN=runs/fmnist_lt100_rbl
if [ -f "$RUN/config.toml" ] && [ $# -eq 0 ]; then
  # An earlier run exists: continue it (a finished run just prints its result). Nothing is deleted.
  ./target/release/rbl train --resume "$RUN"
else
  ./target/release/rbl train --config configs/fmnist_lt100_rbl.toml "$@"
fi
