#!/usr/bin/env bash
# Reproduces the README's results table: linear, etf and rbl on Fashion-MNIST-LT IR100 with the
# same budget and seed, one after the other, each into runs/<name>. Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release
for head in linear etf rbl; do
  ./target/release/rbl train --config configs/fmnist_lt100_${head}.toml --force "$@"
done
python3 - <<'PY'
import json
print("| head | top-1 raw | top-1 adjusted (τ=1) | many | medium | few | wall time |")
print("|---|---|---|---|---|---|---|")
for h in ["linear", "etf", "rbl"]:
    m = json.load(open(f"runs/fmnist_lt100_{h}/metrics.json"))
    a = m["test"]["adjusted"]
    f = lambda x: "-" if x is None else f"{x:.2f}"
    print(f"| {h} | {m['test']['raw']['top1']:.2f} | {a['top1']:.2f} | {f(a['many'])} | {f(a['medium'])} | {f(a['few'])} | {m['wall_seconds']/60:.1f} min |")
PY
