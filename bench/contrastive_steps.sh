#!/usr/bin/env bash
# Step time of the contrastive methods relative to plain CE (linear head), 2 threads, idle CPU.
# 3 alternating rounds; prints one JSON line per measurement.
set -euo pipefail
B=${RBL_BENCH:-target/release/rbl-bench}
for round in 1 2 3; do
  for input in 3x32x32:128 1x28x28:64; do
    shape=${input%%:*}; batch=${input##*:}
    for m in none kcl tsc hcl; do
      RAYON_NUM_THREADS=2 $B --head linear --batch $batch --input $shape --steps 10 --warmup 2 --contrastive $m \
        | python3 -c "import json,sys; d=json.loads(sys.stdin.read()); print(json.dumps({'round':$round,'input':'$shape','batch':$batch,'method':'$m','train_img_s':d['train_img_s']}))"
    done
  done
done
