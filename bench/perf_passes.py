"""A 1-thread step's time by parallel pass, and its serial share, from a perf profile.

    RAYON_NUM_THREADS=1 perf record -F 499 --call-graph dwarf,32768 -o p.data \
        target/release/rbl-bench --batch 128 --input 3x32x32 --steps 6 --warmup 1
    perf script -i p.data -F ip,sym --no-inline | python3 bench/perf_passes.py train_step

Only samples with a frame matching the first argument count (train_step: the training step;
"ResNetCifar|logits_with" with a second argument train_step to exclude: evaluation). A sample
is inside a parallel pass when a rayon iterator frame is on its stack; the pass is named by the
first rbl / rbl_ops / flex function above the outermost such frame. The rest is serial: it runs
on one thread whatever the pool (flex's element-wise ops, the head's small products, autodiff
bookkeeping, the allocator). The row-block products (rbl_ops::matmul_rows_op) count as a
pass of their own: on 1 thread they are one block and call no rayon iterator, on more they
split. Use it on 1 thread: on more, a stolen task's stack starts at the rayon worker and has
no train_step frame.
"""
import collections
import re
import sys

scope = re.compile(sys.argv[1]) if len(sys.argv) > 1 else None
exclude = re.compile(sys.argv[2]) if len(sys.argv) > 2 else None
parallel = re.compile(r"rayon::iter::|rayon4iter|join_context")
owner = re.compile(r"rbl_ops::|rbl::|burn_flex::|gemm")


def short(symbol):
    symbol = re.sub(r"\+0x[0-9a-f]+.*", "", symbol)
    return re.sub(r"<.*>", "<>", symbol)[:100]


samples, serial, passes = 0, collections.Counter(), collections.Counter()


def count(frames):
    """One sample's frames, leaf first."""
    global samples
    if not frames or (scope and not any(scope.search(f) for f in frames)):
        return
    if exclude and any(exclude.search(f) for f in frames):
        return
    samples += 1
    inside = [i for i, f in enumerate(frames) if parallel.search(f)]
    if any("matmul_rows_op" in f for f in frames):
        passes["rbl_ops::matmul_rows_op (row blocks)"] += 1
    elif inside:
        passes[short(next((f for f in frames[inside[-1] + 1:] if owner.search(f)), "?"))] += 1
    else:
        serial[short(frames[0])] += 1


frames = []
for line in sys.stdin:
    if not line.strip():
        count(frames)
        frames = []
    elif line[0] in " \t":
        parts = line.split(None, 1)
        if len(parts) == 2:
            frames.append(parts[1].strip())
    else:
        frames = []
count(frames)
if not samples:
    sys.exit("no sample matched")
print(f"samples {samples}: serial {sum(serial.values())} ({100 * sum(serial.values()) / samples:.1f} %)")
print("parallel passes, by the function that starts them:")
for name, n in passes.most_common(20):
    print(f"  {100 * n / samples:5.1f} %  {name}")
print("serial, by leaf:")
for name, n in serial.most_common(12):
    print(f"  {100 * n / samples:5.1f} %  {name}")
