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
      Exports a trained rbl run (any backbone, head, channel count) with `rbl export`, builds
      the PyTorch module and preprocessing from the file alone with python/rbl_torch.py, and
      compares its class probabilities with `rbl predict --tau 0` on test images as PNG
      files: Fashion-MNIST's (written here) for a Fashion-MNIST run, the tree's own test/
      images for an image-folder run.
"""

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile

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

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
    import rbl_torch

    work = tempfile.mkdtemp()
    path = os.path.join(work, "model.safetensors")
    subprocess.run([rbl, "export", "--checkpoint", run, "--out", path], check=True)
    net, preprocess, meta = rbl_torch.load(path)
    cfg = meta["config"]
    classes = len(meta["class_names"])
    data = cfg["data"]
    if data["dataset"] == "image-folder":
        test = os.path.join(data["root"], "test")
        files = sorted(os.path.join(d, f) for d, _, fs in os.walk(test) for f in fs if f.lower().endswith(".png"))[:count]
        what = f"{len(files)} PNG test images of {data['root']}"
    else:
        images = read_idx_images("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")[:count]
        os.makedirs(os.path.join(work, "pngs"))
        files = []
        for i, img in enumerate(images):
            files.append(os.path.join(work, "pngs", f"{i:05d}.png"))
            Image.fromarray(img, mode="L").save(files[-1])
        what = f"{len(files)} Fashion-MNIST test images"
    out = subprocess.run([rbl, "predict", "--checkpoint", run, *files, "--json", "--tau", "0", "--top-k", str(classes)],
                         check=True, capture_output=True, text=True).stdout
    rbl_p = np.zeros((len(files), classes))
    for i, line in enumerate(out.splitlines()):
        for t in json.loads(line)["top"]:
            rbl_p[i, t["class"]] = t["probability"]
    x = torch.stack([preprocess(Image.open(f)) for f in files])
    with torch.no_grad():
        torch_p = torch.softmax(net(x).double(), dim=1).numpy()
    diff = np.abs(rbl_p - torch_p).max()
    agree = (rbl_p.argmax(1) == torch_p.argmax(1)).mean()
    m = cfg["model"]
    print(f"{run}: {what}, {m.get('backbone', 'resnet32')} head {m['head']}, input {meta['input']}: "
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
