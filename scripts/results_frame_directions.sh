#!/usr/bin/env bash
# Issue #14 part 4: the frame-direction A/B experiment at 30 epochs, 3 seeds, on the terminal
# experiment's small Fashion-MNIST-LT set (configs/terminal/frame_directions_fmnist_30.toml).
# Question: is the train/test gap's difference between frame A and frame B larger than the
# seed-to-seed spread?
#
# Resumable: each seed is one `rbl experiment frame-directions` folder whose arms resume (kill it
# any time, run the script again). Results go to results/frame_directions/s<seed>, committed
# without checkpoints (.gitignore).
#
# Usage: scripts/results_frame_directions.sh [train|report|all]   (default all)
#   SEEDS="0 1 2"  OUT=results/frame_directions  (environment overrides)
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
SEEDS=${SEEDS:-"0 1 2"}
OUT=${OUT:-results/frame_directions}
CONFIG=configs/terminal/frame_directions_fmnist_30.toml
cargo build --release -q
RBL=target/release/rbl

if [ "$what" = train ] || [ "$what" = all ]; then
  for seed in $SEEDS; do
    $RBL experiment frame-directions --config "$CONFIG" --set "seed=$seed" --out "$OUT/s$seed" -q >/dev/null
  done
fi

if [ "$what" = report ] || [ "$what" = all ]; then
  python3 - "$OUT" $SEEDS <<'PY'
import json, os, statistics, sys
out, seeds = sys.argv[1], sys.argv[2:]
runs = {}
for s in seeds:
    p = os.path.join(out, f"s{s}", "summary.json")
    if os.path.exists(p):
        runs[s] = {r["arm"]: r for r in json.load(open(p))}
def ms(xs):
    if not xs:
        return "—"
    return f"{statistics.mean(xs):.2f}" + (f" ± {statistics.stdev(xs):.2f}" if len(xs) > 1 else "")
done = sorted(runs)
print(f"Seeds finished: {', '.join(done) or 'none'} (of {', '.join(seeds)}); mean ± std over them.\n")
print("| arm | train top-1 (eval mode) | test top-1 | test adjusted | gap (last) | gap (mean, last third) |")
print("|---|---|---|---|---|---|")
for arm in ["A", "B", "rbl"]:
    rs = [runs[s][arm] for s in done if arm in runs[s]]
    print(f"| {arm} | {ms([r['train_acc'] for r in rs])} | {ms([r['test_acc'] for r in rs])} | "
          f"{ms([r['test_acc_adjusted'] for r in rs])} | {ms([r['gap'] for r in rs])} | {ms([r['gap_late_mean'] for r in rs])} |")
both = [s for s in done if "A" in runs[s] and "B" in runs[s]]
if both:
    print("\n| seed | gap A − gap B (last) | (mean, last third) | test A − test B |")
    print("|---|---|---|---|")
    d_last, d_late, d_test = [], [], []
    for s in both:
        a, b = runs[s]["A"], runs[s]["B"]
        d_last.append(a["gap"] - b["gap"]); d_late.append(a["gap_late_mean"] - b["gap_late_mean"]); d_test.append(a["test_acc"] - b["test_acc"])
        print(f"| {s} | {d_last[-1]:+.2f} | {d_late[-1]:+.2f} | {d_test[-1]:+.2f} |")
    print(f"| mean ± std | {ms(d_last)} | {ms(d_late)} | {ms(d_test)} |")
    if len(both) >= 3:
        m, sd = statistics.mean(d_late), statistics.stdev(d_late)
        se = sd / len(both) ** 0.5
        signs = {x > 0 for x in d_late}
        sd_a = statistics.stdev([runs[s]["A"]["gap_late_mean"] for s in both])
        sd_b = statistics.stdev([runs[s]["B"]["gap_late_mean"] for s in both])
        verdict = ("larger than its seed-to-seed spread (more than 2 standard errors from 0, one sign)"
                   if abs(m) > 2 * se and len(signs) == 1 else
                   "not larger than its seed-to-seed spread" + (" (its sign changes between seeds)" if len(signs) > 1 else ""))
        print(f"\nThe A − B gap difference (mean over the last third of the epochs) is {m:+.2f} ± {sd:.2f} "
              f"points (mean ± std over {len(both)} seeds; standard error {se:.2f}); the gaps themselves vary "
              f"by {sd_a:.2f} (A) and {sd_b:.2f} (B) from seed to seed. The difference is {verdict}.")
    else:
        print("\nFewer than 3 seeds: nothing is claimed.")
PY
fi
