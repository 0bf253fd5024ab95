"""Medians and rbl/PyTorch ratios of bench/run.sh's raw JSON lines, as a Markdown table."""

import json
import statistics
import sys
from collections import defaultdict

raw = sys.argv[1]
runs = defaultdict(list)
for line in open(raw):
    r = json.loads(line)
    runs[(r["input"], r["batch"], r["impl"])].append(r)
header = open(raw + ".txt").read().strip() if len(sys.argv) < 3 else ""
print(f"Source: `{raw}` ({header})\n")
print("| input | batch | rbl train img/s | PyTorch train img/s | train ratio | rbl eval img/s | PyTorch eval img/s | eval ratio | rbl peak MiB | PyTorch peak MiB | rounds |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for (inp, batch) in sorted({(k[0], k[1]) for k in runs}, key=lambda k: (k[0], k[1])):
    a, b = runs.get((inp, batch, "rbl"), []), runs.get((inp, batch, "pytorch"), [])
    if not a or not b:
        continue
    med = lambda rs, key: statistics.median(r[key] for r in rs)
    ta, tb, ea, eb = med(a, "train_img_s"), med(b, "train_img_s"), med(a, "eval_img_s"), med(b, "eval_img_s")
    print(f"| {inp} | {batch} | {ta:.1f} | {tb:.1f} | {ta / tb:.2f} | {ea:.1f} | {eb:.1f} | {ea / eb:.2f} | "
          f"{max(r['peak_rss_mb'] for r in a):.0f} | {max(r['peak_rss_mb'] for r in b):.0f} | {min(len(a), len(b))} |")
