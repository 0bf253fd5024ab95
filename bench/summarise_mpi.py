"""Medians of bench/mpi.sh's JSON lines: training images/s per (implementation, setting, ranks,
batch), the scaling from 1 to 2 ranks, and rbl against PyTorch DDP at the same ranks and batch."""

import json
import statistics
import sys
from collections import defaultdict


def main(path):
    runs = defaultdict(list)
    for line in open(path):
        r = json.loads(line)
        key = (r["impl"] if r["impl"] == "rbl" else f"pytorch-ddp {r['setting']}", r.get("ranks", 1), r["batch"])
        runs[key].append(r["train_img_s"])
    med = {k: statistics.median(v) for k, v in runs.items()}
    batches = sorted({k[2] for k in med})
    impls = sorted({k[0] for k in med}, key=lambda s: (s != "rbl", s))
    print(f"Training images/s (median of {max(len(v) for v in runs.values())} rounds), one thread per rank\n")
    print("| implementation | ranks | " + " | ".join(f"batch {b}" for b in batches) + " |")
    print("|---|---|" + "---|" * len(batches))
    for impl in impls:
        for ranks in (1, 2):
            cells = [f"{med[(impl, ranks, b)]:.0f}" if (impl, ranks, b) in med else "—" for b in batches]
            if any(c != "—" for c in cells):
                print(f"| {impl} | {ranks} | " + " | ".join(cells) + " |")
    print("\n| ratio | " + " | ".join(f"batch {b}" for b in batches) + " |")
    print("|---|" + "---|" * len(batches))
    for impl in impls:
        cells = [f"{med[(impl, 2, b)] / med[(impl, 1, b)]:.2f}" if (impl, 2, b) in med and (impl, 1, b) in med else "—" for b in batches]
        if any(c != "—" for c in cells):
            print(f"| {impl}: 2 ranks ÷ 1 rank | " + " | ".join(cells) + " |")
    for impl in impls[1:]:
        cells = [f"{med[('rbl', 2, b)] / med[(impl, 2, b)]:.2f}" if ("rbl", 2, b) in med and (impl, 2, b) in med else "—" for b in batches]
        print(f"| rbl ÷ {impl}, 2 ranks | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
