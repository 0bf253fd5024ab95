#!/usr/bin/env bash
# The main job on a fresh machine: install Fashion-MNIST (Debian package) if missing, build rbl,
# and train RBL on Fashion-MNIST-LT (imbalance ratio 100). Extra arguments go to `rbl train`,
# e.g. scripts/main.sh --set train.epochs=2
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq dataset-fashion-mnist
fi
cargo build --release
./target/release/rbl train --config configs/fmnist_lt100_rbl.toml --force "$@"
