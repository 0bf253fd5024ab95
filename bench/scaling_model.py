"""Predicted speedup of the CPU training step at 1–64 threads, from a 1-thread profile.

    python3 bench/scaling_model.py bench/results/passes-1thread-3x32x32-b128-20261207.txt [batch]

The input is bench/perf_passes.py's output: each parallel pass's share of a 1-thread step and
the serial share. Each pass has a number of equal tasks at a given pool size (read from
crates/rbl-ops, as bench/README's table lists them); n threads finish T tasks in ceil(T / n)
rounds of 1 / T of the pass. So

    step(n) / step(1) = serial + Σ_pass share · ceil(T(n) / n) / T(n)

"before" is the task split of commit cb28600, "after" this commit's. The model has no memory
bandwidth, caches or synchronisation in it: an upper bound on what the passes allow.
"""
import math
import re
import sys

path = sys.argv[1]
batch = int(sys.argv[2]) if len(sys.argv) > 2 else 128
WEIGHT_TASK_IMAGES, NORM_TASK_IMAGES = 32, 8


def per_image_tasks(n):
    """images_per_task(batch, 8): about 8 tasks per thread, at most one per image."""
    per = max(1, math.ceil(batch / (8 * n)))
    return math.ceil(batch / per)


def weight_tasks(n, after):
    """The weight gradient: 32-image tasks, split by kernel row (before) or into taps blocks
    (after) once the pool outnumbers them: p blocks per kernel row, p dividing 6 (the
    16-channel stage's runs; taps_blocks in halo_conv_cpu.rs), the p of least time."""
    image_tasks = math.ceil(batch / WEIGHT_TASK_IMAGES)
    if n <= image_tasks:
        return image_tasks
    if not after:
        return image_tasks * 3
    return min((image_tasks * 3 * p for p in (1, 2, 3, 6)), key=lambda t: (math.ceil(t / n) / t, t))


def norm_sum_tasks(n, after):
    """BatchNorm's separate sums: 8-image tasks; after, each image's rows on their own task
    once the pool outnumbers them."""
    tasks = math.ceil(batch / NORM_TASK_IMAGES)
    return batch if after and n > tasks else tasks


def backward_tasks(n, after):
    """The fused convolution + BatchNorm backward: by weight-gradient image task while the pool
    has no more threads than those; beyond, the separate passes: input gradient (55 % of the
    time, per image) and weight gradient (45 %, conv_layers' dx : dw at batch 128)."""
    image_tasks = math.ceil(batch / WEIGHT_TASK_IMAGES)
    if n <= image_tasks:
        return [(1.0, image_tasks)]
    return [(0.55, per_image_tasks(n)), (0.45, weight_tasks(n, after))]


def split(name, n, after):
    """[(fraction of the pass, tasks)] for the pass named `name` on n threads."""
    if "matmul_rows_op" in name:
        # The rotation's 256×256 products and the batch's rows (128): blocks of at least 32
        # rows before, 4 after, at most one per thread; taken at 128 rows (the smaller).
        return [(1.0, min(n, 128 // (4 if after else 32)))]
    if "halo_conv_bn_train_backward" in name:
        return backward_tasks(n, after)
    if "halo_grad_sums" in name or "moments_from_rows" in name:
        return [(1.0, norm_sum_tasks(n, after))]
    if "halo_conv_backward" in name:
        # Stride 2 and the stem: weight gradient in 32-image tasks, not split (either side).
        return [(0.55, per_image_tasks(n)), (0.45, math.ceil(batch / WEIGHT_TASK_IMAGES))]
    return [(1.0, per_image_tasks(n))]


serial, passes = None, []
for line in open(path):
    if m := re.match(r"samples \d+: serial \d+ \(([\d.]+) %\)", line):
        serial = float(m[1]) / 100
    elif line.startswith("serial, by leaf"):
        break
    elif m := re.match(r"\s+([\d.]+) %\s+(\S+)", line):
        passes.append((m[2], float(m[1]) / 100))
rest = 1 - serial - sum(s for _, s in passes)


def relative_time(n, after):
    t = serial + rest * (lambda T: math.ceil(T / n) / T)(per_image_tasks(n))
    for name, share in passes:
        for fraction, tasks in split(name, n, after):
            t += share * fraction * math.ceil(tasks / n) / tasks
    return t


print(f"{path}, batch {batch}: serial {100 * serial:.1f} %")
print("| threads | " + " | ".join(str(n) for n in (2, 4, 8, 16, 32, 64)) + " |")
print("|---|" + "---|" * 6)
for after in (False, True):
    cells = " | ".join(f"×{1 / relative_time(n, after):.2f}" for n in (2, 4, 8, 16, 32, 64))
    print(f"| {'after' if after else 'before'} | {cells} |")
print(f"| Amdahl's bound (serial share only) | " + " | ".join(f"×{1 / (serial + (1 - serial) / n):.2f}" for n in (2, 4, 8, 16, 32, 64)) + " |")
