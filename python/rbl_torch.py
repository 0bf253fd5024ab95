"""An rbl run in PyTorch: the module and the preprocessing of any `rbl export` file.

    import rbl_torch
    model, preprocess, meta = rbl_torch.load("runs/birds/model.safetensors")
    x = preprocess(PIL.Image.open("bird.jpg"))          # [C, H, W] float32, normalised
    logits = model(x[None])                             # [1, classes]
    adjusted = logits - meta["tau"] * meta["log_prior"] # rbl's prediction rule: z - tau * log(prior)
    print(meta["class_names"][adjusted.argmax()])

`rbl export --checkpoint RUN_DIR` writes the weights under these modules' state-dict names and
records in the file's metadata everything the model needs: the config (backbone, widths,
feature dimension, head), the input shape, the class names, the training counts and the exact
preprocessing. The modules are the ones rbl trains: the CIFAR ResNet-32 (3x3 stem, option-A
shortcuts, any widths, 1 or 3 channels) or torchvision's ResNet-50 / ResNeXt-50 32x4d, an
optional projection, optional BatchNorm + L2 feature normalisation, and a linear, ETF ("Fixed")
or RBL head (R = B0 @ matrix_exp(A - A^T), logits = f @ R^T M).

The preprocessing reproduces rbl's own, pixel for pixel on PNG (JPEG decoders may differ by a
level): RGB or PIL's convert("L"), the shorter side resized with rbl's bilinear filter (2 taps,
half-pixel centres, edges clamped, no antialias; computed in float32 and rounded half away from
zero, as rbl does) and the centre cropped, then (pixel / 255 - mean) / std. Needs torch, numpy,
pillow and safetensors.
"""

import json
import math
import tomllib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


# --- The backbones -------------------------------------------------------------------------

class CifarBlock(nn.Module):
    """Conv-BN-ReLU-Conv-BN, plus an identity or option-A shortcut (subsample by the stride,
    zero channels added equally on both sides), then ReLU."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.stride, self.pad = stride, (cout - cin) // 2

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        short = x
        if self.stride != 1 or self.pad:
            short = x[:, :, ::self.stride, ::self.stride]
            short = F.pad(short, (0, 0, 0, 0, self.pad, self.pad))
        return F.relu(out + short)


class ResNetCifar(nn.Module):
    """rbl's `resnet32`: 3x3 stem, three stages of `blocks` blocks (stride 2 at the start of
    stages 2 and 3), global average pooling, an optional Linear projection (`proj`)."""

    def __init__(self, channels, widths, blocks, feature_dim):
        super().__init__()
        self.conv = nn.Conv2d(channels, widths[0], 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(widths[0])
        layers, cin = [], widths[0]
        for s, w in enumerate(widths):
            for b in range(blocks):
                layers.append(CifarBlock(cin, w, 2 if (s > 0 and b == 0) else 1))
                cin = w
        self.layers = nn.Sequential(*layers)
        self.proj = nn.Linear(widths[-1], feature_dim) if feature_dim else None

    def forward(self, x):
        x = self.layers(F.relu(self.bn(self.conv(x))))
        f = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.proj(f) if self.proj is not None else f


class ResNetImageNet(nn.Module):
    """torchvision's ResNet-50 / ResNeXt-50 32x4d (its state-dict names) without `fc`, then an
    optional Linear projection (`projection`)."""

    def __init__(self, name, feature_dim):
        super().__init__()
        import torchvision

        net = getattr(torchvision.models, name)(weights=None)
        del net.fc
        for key, module in net.named_children():
            self.add_module(key, module)
        self.projection = nn.Linear(2048, feature_dim) if feature_dim else None

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        f = torch.flatten(self.avgpool(x), 1)
        return self.projection(f) if self.projection is not None else f


# --- The heads -----------------------------------------------------------------------------

class LinearHead(nn.Module):
    def __init__(self, dim, classes, cosine):
        super().__init__()
        self.linear = nn.Linear(dim, classes)
        self.cosine = cosine

    def forward(self, f):
        if self.cosine:
            return F.normalize(f, dim=1, eps=1e-12) @ F.normalize(self.linear.weight, dim=1, eps=1e-12).T
        return self.linear(f)


class EtfHead(nn.Module):
    """The fixed simplex ETF M (d x C): logits f @ M."""

    def __init__(self, dim, classes, cosine):
        super().__init__()
        self.register_buffer("frame", torch.zeros(dim, classes))
        self.cosine = cosine

    def directions(self):
        return self.frame

    def forward(self, f):
        if self.cosine:
            f = F.normalize(f, dim=1, eps=1e-12)
        return f @ self.directions()


class RblHead(EtfHead):
    """The ETF behind the learned rotation R = B0 @ matrix_exp(A - A^T): logits f @ R^T M."""

    def __init__(self, dim, classes, cosine):
        super().__init__(dim, classes, cosine)
        self.register_buffer("b0", torch.eye(dim))
        self.a = nn.Parameter(torch.zeros(dim, dim))

    def directions(self):
        r = self.b0 @ torch.linalg.matrix_exp(self.a - self.a.T)
        return r.T @ self.frame


class FeatureNorm(nn.Module):
    """BatchNorm1d then L2 normalisation of the feature (`model.feature_bn_l2`)."""

    def __init__(self, dim):
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)

    def forward(self, f):
        return F.normalize(self.bn(f), dim=1, eps=1e-12)


class RblNet(nn.Module):
    """rbl's Network: backbone, optional feature normalisation, head."""

    def __init__(self, backbone, head, feature_norm=None):
        super().__init__()
        self.backbone = backbone
        self.feature_norm = feature_norm
        self.head = head

    def forward(self, x):
        f = self.backbone(x)
        if self.feature_norm is not None:
            f = self.feature_norm(f)
        return self.head(f)


def build(cfg, channels, classes, state):
    """The module an rbl config describes, for `classes` classes and `channels` input channels
    (`state`, the exported tensors, tells the number of blocks per stage)."""
    m = cfg["model"]
    backbone, head_kind = m.get("backbone", "resnet32"), m["head"]
    feature_dim, cosine = m.get("feature_dim", 0), m.get("cosine", False)
    if backbone == "resnet32":
        widths = m["widths"]
        blocks = len({k.split(".")[2] for k in state if k.startswith("backbone.layers.")}) // 3
        body = ResNetCifar(channels, widths, blocks, feature_dim)
        dim = feature_dim or widths[-1]
    else:
        body = ResNetImageNet(backbone, feature_dim)
        dim = feature_dim or 2048
    head = {"linear": LinearHead, "etf": EtfHead, "rbl": RblHead}[head_kind](dim, classes, cosine)
    norm = FeatureNorm(dim) if m.get("feature_bn_l2", False) else None
    return RblNet(body, head, norm)


# --- The preprocessing ---------------------------------------------------------------------

def _crop_resize(planes, window, out_w, out_h):
    """rbl's `crop_resize`: the window (x, y, w, h) of planar uint8 planes [C, H, W] resampled
    to out_w x out_h, bilinear with half-pixel centres, edges clamped, in float32, rounded half
    away from zero."""
    x0, y0, cw, ch = window
    h, w = planes.shape[1:]

    def taps(scale, offset, n_out, n_in):
        s = np.clip(offset + (np.arange(n_out) + 0.5) * scale - 0.5, 0.0, n_in - 1)
        i = np.floor(s).astype(np.int64)
        return i, np.minimum(i + 1, n_in - 1), (s - i).astype(np.float32)

    x1, x2, fx = taps(cw / out_w, x0, out_w, w)
    y1, y2, fy = taps(ch / out_h, y0, out_h, h)
    p = planes.astype(np.float32)
    one = np.float32(1.0)
    top = p[:, y1][:, :, x1] * (one - fx) + p[:, y1][:, :, x2] * fx
    bottom = p[:, y2][:, :, x1] * (one - fx) + p[:, y2][:, :, x2] * fx
    v = top * (one - fy[:, None]) + bottom * fy[:, None]
    return np.clip(np.floor(v.astype(np.float64) + 0.5), 0, 255).astype(np.uint8)


def _round(v):
    """Rust's f64::round: half away from zero (Python's round is half to even)."""
    return math.copysign(math.floor(abs(v) + 0.5), v)


def resize_center_crop(planes, resize_to, crop):
    """rbl's `resize_center_crop`: the shorter side to `resize_to`, the central `crop` x `crop`,
    in one resampling."""
    h, w = planes.shape[1:]
    scale = resize_to / min(w, h)
    rw, rh = max(_round(w * scale), 1.0), max(_round(h * scale), 1.0)
    cx, cy = _round((rw - crop) / 2), _round((rh - crop) / 2)
    fx, fy = w / rw, h / rh
    return _crop_resize(planes, (cx * fx, cy * fy, crop * fx, crop * fy), crop, crop)


def _grey(planes):
    """PIL's convert("L"): (19595 R + 38470 G + 7471 B + 2^15) >> 16."""
    r, g, b = (planes[i].astype(np.uint32) for i in range(3))
    return ((19595 * r + 38470 * g + 7471 * b + 32768) >> 16).astype(np.uint8)[None]


def make_preprocess(meta):
    """A function from a PIL image to the model's input tensor, from the export's metadata."""
    channels, height, width = meta["input"]
    mean = torch.tensor(meta["mean"], dtype=torch.float32)[:, None, None]
    std = torch.tensor(meta["std"], dtype=torch.float32)[:, None, None]
    file_size = meta["preprocess"].get("center_crop") if meta["preprocess"].get("from_files") else None

    def preprocess(image):
        rgb = np.asarray(image.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1)
        if file_size is not None:
            # Datasets read from image files: shorter side to size * 8 / 7, centre crop.
            planes = resize_center_crop(rgb, file_size * 8 // 7, file_size)
        elif rgb.shape[1:] == (height, width):
            planes = rgb
        elif height == width:
            planes = resize_center_crop(rgb, height, height)
        else:
            planes = _crop_resize(rgb, (0.0, 0.0, float(rgb.shape[2]), float(rgb.shape[1])), width, height)
        if channels == 1:
            planes = _grey(planes)
        x = torch.from_numpy(planes.astype(np.float32) / np.float32(255.0))
        return (x - mean) / std

    return preprocess


def load(path):
    """(model in eval mode, preprocess, meta) of an `rbl export` safetensors file. `meta` has
    `class_names`, `train_counts`, `log_prior` (a tensor), `tau`, `mean`, `std`, `input`,
    `preprocess` and `config` (the run's TOML, parsed)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(path, "pt") as f:
        raw = f.metadata()
    state = load_file(path)
    cfg = tomllib.loads(raw["rbl.config"])
    counts = json.loads(raw["rbl.train_counts"])
    channels, height, width = json.loads(raw["rbl.input"])
    meta = {
        "config": cfg,
        "class_names": json.loads(raw["rbl.class_names"]),
        "train_counts": counts,
        "log_prior": torch.log(torch.tensor(counts, dtype=torch.float64) / sum(counts)).float(),
        "tau": float(raw["rbl.tau"]),
        "mean": json.loads(raw["rbl.mean"]),
        "std": json.loads(raw["rbl.std"]),
        "input": [channels, height, width],
        "preprocess": json.loads(raw["rbl.preprocess"]),
    }
    model = build(cfg, channels, len(counts), state)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"{path}: the export does not fit the module: missing {missing}, unexpected {unexpected}")
    model.eval()
    return model, make_preprocess(meta), meta
