"""rbl <-> PyTorch weights, checked with PyTorch itself (run by hand; torch from PyPI).

    pip install torch torchvision pillow numpy safetensors

Three checks:

  fixture OUT_DIR
      A PyTorch ResNet-32 + RBL head (bench/torch_step.py's modules, widths 4/4/8, 16-d
      features, 10 classes) with random weights and BatchNorm statistics, saved with
      torch.save as resnet32_rbl.pth, and its eval-mode logits on a fixed input in
      resnet32_rbl.json. tests/fixtures/pytorch/ holds this output: tests/pytorch_interop.rs
      imports the .pth into rbl and compares the logits in every CI run.

  torchvision OUT_DIR
      torchvision's resnet50 and resnext50_32x4d with random weights and statistics, saved as
      .pth, with their 2048-d features of a fixed 64x64 input. Then
          RBL_TORCHVISION_FIXTURE=OUT_DIR cargo test --release --test pytorch_interop -- --ignored
      imports each file as `model.init_weights` would and compares the features.

  run RUN_DIR [--rbl target/release/rbl] [--images 200]
      Exports a trained rbl run (ResNet-32, any head) with `rbl export`, loads the safetensors
      file into the PyTorch module strictly, and compares its class probabilities with
      `rbl predict --tau 0` on Fashion-MNIST test images written as PNG files.
"""

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import tomllib

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))
from torch_step import ResNet32, RblHead  # noqa: E402


class LinearHead(nn.Module):
    def __init__(self, dim, classes):
        super().__init__()
        self.linear = nn.Linear(dim, classes)

    def forward(self, f):
        return self.linear(f)


class EtfHead(nn.Module):
    def __init__(self, dim, classes):
        super().__init__()
        self.register_buffer("frame", torch.zeros(dim, classes))

    def forward(self, f):
        return f @ self.frame


class Net(nn.Module):
    """rbl's Network: backbone (with the projection) then head."""

    def __init__(self, backbone, head):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x):
        return self.head(self.backbone(x))


def shake(module, gen):
    """Random weights and BatchNorm statistics, so that a wrong mapping cannot pass."""
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var") or (name.endswith("weight") and t.dim() == 1):
                t.copy_(0.5 + torch.rand(t.shape, generator=gen))
            elif name.endswith(".a"):
                t.copy_(0.1 * torch.randn(t.shape, generator=gen))
            elif t.dim() == 1:
                t.copy_(0.1 * torch.randn(t.shape, generator=gen))


def fixture(out):
    os.makedirs(out, exist_ok=True)
    gen = torch.Generator().manual_seed(7)
    net = Net(ResNet32(1, widths=(4, 4, 8), blocks=5, feature_dim=16), RblHead(16, 10, seed=3))
    shake(net, gen)
    net.eval()
    x = torch.randn(2, 1, 8, 8, generator=gen)
    with torch.no_grad():
        logits = net(x)
    torch.save(net.state_dict(), os.path.join(out, "resnet32_rbl.pth"))
    with open(os.path.join(out, "resnet32_rbl.json"), "w") as f:
        json.dump({"input_shape": list(x.shape), "input": x.flatten().tolist(), "logits": logits.flatten().tolist(),
                   "torch": torch.__version__}, f)
    print(f"{out}: resnet32_rbl.pth ({len(net.state_dict())} entries), logits {logits.shape}")


def torchvision_fixture(out):
    import torchvision

    os.makedirs(out, exist_ok=True)
    for name in ["resnet50", "resnext50_32x4d"]:
        gen = torch.Generator().manual_seed(11)
        model = getattr(torchvision.models, name)(weights=None)
        shake(model, gen)
        model.eval()
        x = torch.randn(1, 3, 64, 64, generator=gen)
        torch.save(model.state_dict(), os.path.join(out, f"{name}.pth"))
        model.fc = nn.Identity()
        with torch.no_grad():
            features = model(x)
        with open(os.path.join(out, f"{name}.json"), "w") as f:
            json.dump({"input_shape": list(x.shape), "input": x.flatten().tolist(), "features": features.flatten().tolist(),
                       "torch": torch.__version__, "torchvision": torchvision.__version__}, f)
        print(f"{out}: {name}.pth, features {tuple(features.shape)}")


def read_idx_images(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    n, h, w = (int.from_bytes(data[i:i + 4], "big") for i in (4, 8, 12))
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(n, h, w)


def check_run(run, rbl, count):
    from PIL import Image
    from safetensors.torch import load_file
    from safetensors import safe_open

    work = tempfile.mkdtemp()
    path = os.path.join(work, "model.safetensors")
    subprocess.run([rbl, "export", "--checkpoint", run, "--out", path], check=True)
    with safe_open(path, "pt") as f:
        meta = f.metadata()
    cfg_text = meta["rbl.config"]
    mean, std = json.loads(meta["rbl.mean"]), json.loads(meta["rbl.std"])
    state = load_file(path)

    model = tomllib.loads(cfg_text)["model"]
    widths, dim, head_kind = model["widths"], model["feature_dim"], model["head"]
    classes = state["head.frame"].shape[1] if "head.frame" in state else state["head.linear.weight"].shape[0]
    head = {"rbl": lambda: RblHead(dim, classes), "etf": lambda: EtfHead(dim, classes),
            "linear": lambda: LinearHead(dim, classes)}[head_kind]()
    net = Net(ResNet32(1, widths=tuple(widths), blocks=5, feature_dim=dim), head)
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith("num_batches_tracked")]
    assert not missing and not unexpected, (missing, unexpected)
    net.eval()

    images = read_idx_images("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")[:count]
    pngs = os.path.join(work, "pngs")
    os.makedirs(pngs)
    for i, img in enumerate(images):
        Image.fromarray(img, mode="L").save(os.path.join(pngs, f"{i:05d}.png"))
    out = subprocess.run([rbl, "predict", "--checkpoint", run, pngs, "--json", "--tau", "0", "--top-k", str(classes)],
                         check=True, capture_output=True, text=True).stdout
    rbl_p = np.zeros((count, classes))
    for i, line in enumerate(out.splitlines()):
        for t in json.loads(line)["top"]:
            rbl_p[i, t["class"]] = t["probability"]
    x = (torch.from_numpy(images.astype(np.float32) / 255.0)[:, None] - mean[0]) / std[0]
    with torch.no_grad():
        torch_p = torch.softmax(net(x).double(), dim=1).numpy()
    diff = np.abs(rbl_p - torch_p).max()
    agree = (rbl_p.argmax(1) == torch_p.argmax(1)).mean()
    print(f"{run}: {count} Fashion-MNIST test images, head {head_kind}, widths {widths}, d = {dim}: "
          f"max |p_rbl - p_torch| = {diff:.2e}, top-1 agreement {100 * agree:.1f} % (torch {torch.__version__})")
    assert diff < 1e-4, diff


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("fixture").add_argument("out")
    sub.add_parser("torchvision").add_argument("out")
    r = sub.add_parser("run")
    r.add_argument("run")
    r.add_argument("--rbl", default="target/release/rbl")
    r.add_argument("--images", type=int, default=200)
    args = ap.parse_args()
    if args.cmd == "fixture":
        fixture(args.out)
    elif args.cmd == "torchvision":
        torchvision_fixture(args.out)
    else:
        check_run(args.run, args.rbl, args.images)


if __name__ == "__main__":
    main()
