"""PyTorch DDP reference of rbl's data-parallel training step (the PyTorch half of bench/mpi.sh).

The same step as bench/torch_step.py (ResNet-32 16/32/64 + Linear(64 -> 256) + the RBL head,
cross-entropy, SGD-Nesterov, weight decay 5e-4), wrapped in DistributedDataParallel with the
gloo backend, one process per rank started by torchrun (`torchrun --nproc-per-node N`), each
with `--threads` threads and `--batch / N` images of the global batch: what rbl's
`mpirun -np N rbl-bench` runs. Rank 0 prints one JSON line per (batch, input) with the global
training images/s. `--channels-last` and `--compile` as in bench/torch_step.py.
"""

import argparse
import json
import os
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F

from torch_step import ResNet32, RblHead


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--batch", default="256")
    p.add_argument("--input", default="3x32x32")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    dist.init_process_group("gloo")
    rank, size = dist.get_rank(), dist.get_world_size()
    for inp in args.input.split(","):
        c, h, w = (int(d) for d in inp.split("x"))
        for batch in (int(b) for b in args.batch.split(",")):
            assert batch % size == 0, f"global batch {batch} over {size} ranks"
            local = batch // size
            torch.manual_seed(0)

            class Net(torch.nn.Module):
                def __init__(self):
                    super().__init__()
                    self.body, self.head = ResNet32(c), RblHead(256, args.classes)

                def forward(self, x):
                    return self.head(self.body(x))

            fmt = torch.channels_last if args.channels_last else torch.contiguous_format
            net = Net().to(memory_format=fmt)
            model = torch.nn.parallel.DistributedDataParallel(net)
            run = torch.compile(model) if args.compile else model
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
            g = torch.Generator().manual_seed(1)
            images = (torch.rand(batch, c, h, w, generator=g) * 2 - 1)[rank * local:(rank + 1) * local].contiguous(memory_format=fmt)
            labels = torch.randint(0, args.classes, (batch,), generator=g)[rank * local:(rank + 1) * local]

            def step():
                logits = run(images.clone(memory_format=fmt))
                loss = F.cross_entropy(logits, labels)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                return loss.item()

            model.train()
            compile_s = 0.0
            if args.compile:
                t0 = time.perf_counter()
                step()
                compile_s = time.perf_counter() - t0
            for _ in range(args.warmup):
                step()
            dist.barrier()
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step()
            dist.barrier()
            train = args.steps * batch / (time.perf_counter() - t0)
            if rank == 0:
                setting = ("compile" if args.compile else "eager") + ("_channels_last" if args.channels_last else "")
                print(json.dumps({"impl": "pytorch-ddp", "setting": setting, "ranks": size, "batch": batch, "input": inp,
                                  "threads": args.threads, "train_img_s": round(train, 2), "compile_s": round(compile_s, 1),
                                  "torch": torch.__version__}), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
