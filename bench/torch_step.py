"""PyTorch reference of rbl's benchmark step (the PyTorch half of bench/run.sh).

The same model and step as `rbl-bench`: ResNet-32 (CIFAR variant, 16/32/64, option-A
shortcuts), Linear(64 -> 256), the RBL head (fixed simplex ETF behind R = B0 @ matrix_exp(A - A^T)),
softmax cross-entropy, SGD with Nesterov momentum 0.9 and weight decay 5e-4. Eval is
forward-only in eval mode, the head's directions computed once per pass, logits copied out.
Prints one JSON line per (batch, input), like rbl-bench.

PyTorch's ordinary settings, each its own column in bench/run.sh: eager NCHW (the default),
eager channels_last (`--channels-last`), and torch.compile (`--compile`, with channels_last in
bench/run.sh; the compile time is excluded from the step times and reported as `compile_s`).
`--device cuda` runs the same step on a GPU (bench/gpu.sh), synchronising before each clock
read. `--backbone resnet50|resnext50_32x4d` uses torchvision's networks (224 px) with a
2048 -> 256 projection, as rbl-bench --backbone does.
"""

import argparse
import json
import math
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.pad = cout - cin
        self.stride = stride

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        short = x
        if self.stride != 1 or self.pad:
            # Option A: subsample and zero-pad the channels.
            short = x[:, :, ::2, ::2]
            short = F.pad(short, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return F.relu(out + short)


class ResNet32(nn.Module):
    def __init__(self, in_ch, widths=(16, 32, 64), blocks=5, feature_dim=256):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, widths[0], 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(widths[0])
        layers, cin = [], widths[0]
        for i, w in enumerate(widths):
            for b in range(blocks):
                layers.append(Block(cin, w, 2 if (i > 0 and b == 0) else 1))
                cin = w
        self.layers = nn.Sequential(*layers)
        self.proj = nn.Linear(widths[-1], feature_dim)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        x = self.layers(x)
        return self.proj(F.adaptive_avg_pool2d(x, 1).flatten(1))


class RblHead(nn.Module):
    def __init__(self, dim, classes, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        u, _ = torch.linalg.qr(torch.randn(dim, classes, generator=g))
        etf = math.sqrt(classes / (classes - 1)) * u @ (torch.eye(classes) - torch.ones(classes, classes) / classes)
        b0, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g))
        self.register_buffer("frame", etf)
        self.register_buffer("b0", b0)
        self.a = nn.Parameter(torch.zeros(dim, dim))

    def directions(self):
        r = self.b0 @ torch.linalg.matrix_exp(self.a - self.a.T)
        return r.T @ self.frame

    def forward(self, f, directions=None):
        return f @ (self.directions() if directions is None else directions)


class TorchvisionBody(nn.Module):
    """torchvision's ResNet-50 / ResNeXt-50 32x4d without its classifier, then Linear(2048 -> 256)."""

    def __init__(self, name, feature_dim=256):
        super().__init__()
        import torchvision

        net = getattr(torchvision.models, name)(weights=None)
        net.fc = nn.Identity()
        self.net = net
        self.proj = nn.Linear(2048, feature_dim)

    def forward(self, x):
        return self.proj(self.net(x))


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def measure(args, batch, shape):
    torch.manual_seed(0)
    c, h, w = shape
    dev = args.device
    body = ResNet32(c) if args.backbone == "resnet32" else TorchvisionBody(args.backbone)
    head = RblHead(256, args.classes)
    body, head = body.to(dev), head.to(dev)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    body = body.to(memory_format=fmt)
    params = list(body.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    g = torch.Generator().manual_seed(1)
    images = (torch.rand(batch, c, h, w, generator=g) * 2 - 1).to(dev).contiguous(memory_format=fmt)
    labels = torch.randint(0, args.classes, (batch,), generator=g).to(dev)
    run_body = torch.compile(body) if args.compile else body

    def train_step():
        logits = head(run_body(images.clone(memory_format=fmt)))
        loss = F.cross_entropy(logits, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        # The same single host read per step as rbl on the CPU: loss and number correct.
        return loss.item(), (logits.argmax(1) == labels).sum().item()

    body.train()
    if args.count_ops:
        return count_ops(train_step)
    compile_s = 0.0
    if args.compile:
        t0 = time.perf_counter()
        train_step()
        sync(dev)
        compile_s += time.perf_counter() - t0
    for _ in range(args.warmup):
        train_step()
    sync(dev)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        train_step()
    sync(dev)
    train = args.steps * batch / (time.perf_counter() - t0)

    body.eval()
    with torch.no_grad():
        directions = head.directions()

        def eval_step():
            return head(run_body(images.clone(memory_format=fmt)), directions).cpu().numpy().copy()

        if args.compile:
            t0 = time.perf_counter()
            eval_step()
            compile_s += time.perf_counter() - t0
        for _ in range(args.warmup):
            eval_step()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            eval_step()
        evaluate = args.steps * batch / (time.perf_counter() - t0)
    return train, evaluate, compile_s


# aten operators that allocate or re-describe memory and run no kernel.
NO_KERNEL = {"aten::empty", "aten::empty_strided", "aten::empty_like", "aten::as_strided", "aten::as_strided_",
             "aten::resize_", "aten::detach", "aten::detach_", "aten::view", "aten::_unsafe_view", "aten::reshape",
             "aten::_reshape_alias", "aten::resolve_conj", "aten::resolve_neg", "aten::t", "aten::transpose",
             "aten::permute", "aten::expand", "aten::alias", "aten::unsqueeze", "aten::squeeze", "aten::select",
             "aten::slice", "aten::narrow", "aten::lift_fresh", "aten::contiguous", "aten::to", "aten::_to_copy",
             "aten::result_type", "aten::broadcast_tensors", "aten::numpy_T", "aten::flatten", "aten::unflatten",
             "aten::is_nonzero", "aten::item", "aten::_local_scalar_dense", "aten::zeros", "aten::ones",
             "aten::diagonal", "aten::unsqueeze_", "aten::squeeze_", "aten::new_empty"}


def count_ops(train_step):
    """The aten operators of one training step (after two warm-up steps), from torch.profiler on
    the CPU. `top`: the ones Python's calls dispatch (conv2d, batch_norm, add_, ...). `kernels`:
    the innermost ones that compute (no computing aten operator inside them, and not one that only
    allocates or re-describes memory), which are what eager PyTorch runs as kernels: the count to
    set beside rbl's GPU kernels per step. By name on stderr, most frequent first."""
    from collections import Counter
    from torch.profiler import ProfilerActivity, profile

    for _ in range(2):
        train_step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train_step()
    aten = [e for e in prof.events() if e.name.startswith("aten::")]
    is_aten = lambda e: e is not None and e.name.startswith("aten::")

    def computes(e):
        return e.name not in NO_KERNEL or any(computes(c) for c in e.cpu_children if is_aten(c))

    def kernel(e):
        return e.name not in NO_KERNEL and not any(computes(c) for c in e.cpu_children if is_aten(c))

    top = [e for e in aten if not is_aten(e.cpu_parent)]
    kernels = [e for e in aten if kernel(e)]
    for name, n in Counter(e.name for e in kernels).most_common():
        print(f"{n:>6} kernel  {name}", file=sys.stderr)
    return {"aten_ops_top": len(top), "aten_kernels": len(kernels), "aten_ops_all": len(aten)}


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--batch", default="128")
    p.add_argument("--input", default="3x32x32")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--backbone", default="resnet32", choices=["resnet32", "resnet50", "resnext50_32x4d"])
    p.add_argument("--count-ops", action="store_true",
                   help="count the aten operators of one eager training step (torch.profiler) instead of timing")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    for inp in args.input.split(","):
        shape = tuple(int(d) for d in inp.split("x"))
        for batch in (int(b) for b in args.batch.split(",")):
            if args.count_ops:
                counts = measure(args, batch, shape)
                print(json.dumps({"impl": "pytorch", "setting": "eager" + ("_channels_last" if args.channels_last else ""),
                                  "device": args.device, "backbone": args.backbone, "head": "rbl", "batch": batch,
                                  "input": inp, **counts, "torch": torch.__version__}), flush=True)
                continue
            train, evaluate, compile_s = measure(args, batch, shape)
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
            setting = ("compile" if args.compile else "eager") + ("_channels_last" if args.channels_last else "")
            print(json.dumps({"impl": "pytorch", "setting": setting, "device": args.device, "backbone": args.backbone,
                              "head": "rbl", "batch": batch, "input": inp, "threads": args.threads,
                              "train_img_s": round(train, 2), "eval_img_s": round(evaluate, 2),
                              "compile_s": round(compile_s, 1), "peak_rss_mb": round(peak, 1),
                              "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
