"""Medians and rbl/PyTorch ratios of bench/run.sh's raw JSON lines, as Markdown tables.

PyTorch appears at each setting it was run at (eager NCHW, eager channels_last, torch.compile
with channels_last); rbl's ratio is given against each and, in bold, against the best of them
(> 1: rbl faster). SUMMARY_STAT=best takes each setting's best round instead of the median:
for a machine whose neighbours only ever slow a process down (a shared VM), the best of the
rounds is the estimate of the undisturbed speed; say which one a table used.
"""

import json
import os
import statistics
import sys
from collections import defaultdict

raw = sys.argv[1]
runs = defaultdict(list)
for line in open(raw):
    r = json.loads(line)
    # "rbl-baseline": an older rbl build timed in the same rounds (bench/imagenet_cpu.sh BASELINE=).
    setting = r["impl"] if r["impl"] in ("rbl", "rbl-baseline") else r.get("setting", "eager")
    # The CIFAR ResNet-32 rows are named by their input alone; the 224-px nets by backbone too.
    backbone = r.get("backbone", "resnet32")
    shape = r["input"] if backbone == "resnet32" else f"{backbone} {r['input']}"
    runs[(shape, r["batch"], setting)].append(r)
header = open(raw + ".txt").read().strip() if len(sys.argv) < 3 else ""
print(f"Source: `{raw}` ({header})\n")
# rbl-bench says which instruction-set path its kernels took (runs before 2026-12-07 did not).
paths = sorted({r["cpu_kernels"] for rs in runs.values() for r in rs if "cpu_kernels" in r})
if paths:
    print(f"rbl's CPU kernels: {', '.join(paths)} path\n")
settings = [s for s in ["eager", "eager_channels_last", "compile_channels_last", "compile"] if any(k[2] == s for k in runs)]
best_of = os.environ.get("SUMMARY_STAT", "median") == "best"
stat_name = "best round" if best_of else "median over rounds"
med = lambda rs, key: (max if best_of else statistics.median)(r[key] for r in rs)
for what, key in [("train", "train_img_s"), ("eval", "eval_img_s")]:
    print(f"\n**{what} images/s** ({stat_name}; ratio = rbl ÷ PyTorch)\n")
    print("| input | batch | rbl | " + " | ".join(f"PyTorch {s} | ratio" for s in settings) + " | **ratio to best** | rounds |")
    print("|---|---|---|" + "---|---|" * len(settings) + "---|---|")
    for (inp, batch) in sorted({(k[0], k[1]) for k in runs}):
        a = runs.get((inp, batch, "rbl"), [])
        if not a:
            continue
        ra = med(a, key)
        cells, best = [], 0.0
        for s in settings:
            b = runs.get((inp, batch, s), [])
            if b:
                rb = med(b, key)
                best = max(best, rb)
                cells.append(f"{rb:.1f} | {ra / rb:.2f}")
            else:
                cells.append("— | —")
        rounds = min([len(a)] + [len(runs[(inp, batch, s)]) for s in settings if runs.get((inp, batch, s))])
        ratio = f"**{ra / best:.2f}**" if best else "—"
        print(f"| {inp} | {batch} | {ra:.1f} | " + " | ".join(cells) + f" | {ratio} | {rounds} |")
# torch.compile caches its compiled code on disk (/tmp/torchinductor_*): a machine's first
# process for a shape compiles from nothing, later ones mostly load; both are shown.
print("\n**peak resident MiB** (max over rounds) and torch.compile's compile time (s: slowest process, "
      "a cold cache / fastest, its on-disk cache warm)\n")
print("| input | batch | rbl | " + " | ".join(f"PyTorch {s}" for s in settings) + " | compile s |")
print("|---|---|---|" + "---|" * len(settings) + "---|")
for (inp, batch) in sorted({(k[0], k[1]) for k in runs}):
    cells = [f"{max(r['peak_rss_mb'] for r in runs[(inp, batch, s)]):.0f}" if runs.get((inp, batch, s)) else "—" for s in ["rbl"] + settings]
    comp = runs.get((inp, batch, "compile_channels_last"), [])
    times = [r["compile_s"] for r in comp]
    compile_cell = f"{max(times):.0f} / {min(times):.0f}" if times else "—"
    print(f"| {inp} | {batch} | " + " | ".join(cells) + f" | {compile_cell} |")
baseline = {k[:2] for k in runs if k[2] == "rbl-baseline"}
if baseline:
    print("\n**rbl against the older rbl build timed in the same rounds** (median img/s; ratio = this ÷ older)\n")
    print("| input | batch | train: this / older | ratio | eval: this / older | ratio |")
    print("|---|---|---|---|---|---|")
    for (inp, batch) in sorted(baseline):
        a, b = runs.get((inp, batch, "rbl"), []), runs[(inp, batch, "rbl-baseline")]
        if a:
            t = (med(a, "train_img_s"), med(b, "train_img_s"))
            e = (med(a, "eval_img_s"), med(b, "eval_img_s"))
            print(f"| {inp} | {batch} | {t[0]:.2f} / {t[1]:.2f} | {t[0] / t[1]:.2f} | {e[0]:.2f} / {e[1]:.2f} | {e[0] / e[1]:.2f} |")
