"""What data-parallel training over MPI should cost at scale, on paper (bench/README.md,
"Several machines"): bytes all-reduced per step, and the predicted efficiency at 8, 32 and 64
ranks over 10, 25 and 100 Gb/s networks.

The model, and its assumptions:
- One rank per machine; a rank trains `per_rank_batch` images per step at `rate` images/s
  (measured with rbl-bench on one machine: the arguments below), so a step's compute takes
  T_c = per_rank_batch / rate. Weak scaling: the global batch grows with the ranks.
- The gradients (every parameter, f32) are averaged by a ring all-reduce, which sends and
  receives 2 (N - 1) / N times the gradient's size per rank, in 2 (N - 1) steps each paying a
  latency `alpha` (TCP over Ethernet: ~30 us; InfiniBand ~2 us): T_a = 2 (N - 1)/N * S / B + 2 (N - 1) * alpha.
- rbl all-reduces after the backward pass (no overlap): efficiency = T_c / (T_c + T_a).
  Overlapping the all-reduce with the backward in buckets, as PyTorch's DDP does, hides up to
  the backward's share of the step (~2/3 of T_c): efficiency = T_c / (T_c + max(0, T_a - 2/3 T_c)).
- The network's full bandwidth is available to the job, and the all-reduce runs at 80 % of it.
"""

import argparse

PARAMS = {
    # ResNet-32 (16/32/64, option-A shortcuts): convolutions, BatchNorms, Linear(64 -> 256),
    # RBL's A (256 x 256); 3 input channels.
    "ResNet-32 + RBL": 432 + 23_040 + 87_552 + 350_208 + 2 * 1_136 + (64 * 256 + 256) + 256 * 256,
    # torchvision's ResNet-50 without fc, Linear(2048 -> 256), A.
    "ResNet-50 + RBL": 25_557_032 - 2_049_000 + (2048 * 256 + 256) + 256 * 256,
    # torchvision's ResNeXt-50 32x4d without fc, Linear(2048 -> 256), A.
    "ResNeXt-50 + RBL": 25_028_904 - 2_049_000 + (2048 * 256 + 256) + 256 * 256,
}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", nargs=3, type=float, default=[430.0, 5.12, 4.27], metavar=("R32", "R50", "RX50"),
                   help="training images/s of one machine (rbl-bench), per model")
    p.add_argument("--per-rank-batch", nargs=3, type=int, default=[128, 32, 32])
    p.add_argument("--alpha-us", type=float, default=30.0)
    args = p.parse_args()
    print("| model | parameters | MB all-reduced per step (f32) | step compute (batch / rate) |")
    print("|---|---|---|---|")
    for (name, n), rate, b in zip(PARAMS.items(), args.rate, args.per_rank_batch):
        print(f"| {name} | {n:,} | {4 * n / 1e6:.2f} | {b} / {rate:g} img/s = {b / rate * 1e3:.0f} ms |")
    print()
    print("| model | Gb/s | ranks | all-reduce ms | efficiency, no overlap | with overlap |")
    print("|---|---|---|---|---|---|")
    for (name, n), rate, b in zip(PARAMS.items(), args.rate, args.per_rank_batch):
        t_c = b / rate
        for gbps in (10, 25, 100):
            bw = gbps * 1e9 / 8 * 0.8
            for ranks in (8, 32, 64):
                t_a = 2 * (ranks - 1) / ranks * 4 * n / bw + 2 * (ranks - 1) * args.alpha_us * 1e-6
                plain = t_c / (t_c + t_a)
                hidden = t_c / (t_c + max(0.0, t_a - 2 / 3 * t_c))
                print(f"| {name} | {gbps} | {ranks} | {t_a * 1e3:.1f} | {100 * plain:.1f} % | {100 * hidden:.1f} % |")


if __name__ == "__main__":
    main()
