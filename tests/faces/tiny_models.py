"""Tiny real models in the real on-disk formats, built in the tests (no downloads).

- an SCRFD-shaped detector ONNX (9 outputs: scores/boxes/keypoints at strides 8, 16, 32, 2 anchors) that
  "detects" bright squares of about 24-36 px (in its 320x320 input) on a dark background;
- an ArcFace-shaped recogniser ONNX (input N x 3 x 112 x 112, one output named ``embedding``);
- an IR backbone (CurricularFace layout) as a state dict and as TorchScript;
- an InceptionV3 stand-in (input 299) as TorchScript.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# Keypoint offsets (pixels) of the tiny detector around an anchor centre, ArcFace order.
KPS_OFFSETS = np.array([[-6, -4], [6, -4], [0, 2], [-5, 8], [5, 8]], dtype=np.float32)
BOX_HALF = 16.0


class TinySCRFD(nn.Module):
    """Fires at a stride-8 anchor whose 16x16 centre window is bright and whose four 8x8 windows 16-24 px
    left, right, above and below are dark: a bright square of 16-36 px centred on the anchor grid."""

    def forward(self, x: torch.Tensor):
        v = (x.mean(1, keepdim=True) + 1.0) / 2.0  # ~[0, 1] brightness
        h8, w8 = x.shape[2] // 8, x.shape[3] // 8

        def window(size: int, ox: int, oy: int) -> torch.Tensor:
            pooled = F.avg_pool2d(F.pad(v, (32, 32, 32, 32)), size, stride=1)
            return pooled[:, :, 32 + oy :: 8, 32 + ox :: 8][:, :, :h8, :w8]

        s8 = torch.sigmoid(50.0 * (window(16, -8, -8) - 0.75))
        for ox, oy in ((16, -4), (-24, -4), (-4, 16), (-4, -24)):
            s8 = s8 * torch.sigmoid(50.0 * (0.3 - window(8, ox, oy)))
        s8 = s8.reshape(-1, 1).repeat_interleave(2, dim=0)
        outs_s, outs_b, outs_k = [s8], [], []
        for stride in (16, 32):
            z = F.avg_pool2d(v, stride, stride=stride) * 0.0
            outs_s.append(z.reshape(-1, 1).repeat_interleave(2, dim=0))
        for i, stride in enumerate((8, 16, 32)):
            base = outs_s[i] * 0.0
            outs_b.append(base.repeat(1, 4) + BOX_HALF / stride)
            k = torch.tensor(KPS_OFFSETS.reshape(1, 10) / stride)
            outs_k.append(base.repeat(1, 10) + k)
        return tuple(outs_s + outs_b + outs_k)


class TinyArc(nn.Module):
    """A random 112x112 -> 32-d embedding network."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 8, stride=8)
        self.fc = nn.Linear(8 * 14 * 14, 32)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def export_detector(path: Path) -> Path:
    """The tiny SCRFD-shaped detector as ONNX (dynamic spatial size)."""
    names = [f"{k}_{s}" for k in ("score", "bbox", "kps") for s in (8, 16, 32)]
    torch.onnx.export(
        TinySCRFD().eval(),
        (torch.zeros(1, 3, 320, 320),),
        str(path),
        input_names=["input.1"],
        output_names=names,
        dynamic_axes={"input.1": {2: "height", 3: "width"}, **{n: {0: f"n_{n}"} for n in names}},
        dynamo=False,
        opset_version=17,
    )
    return path


def export_recognizer(path: Path, seed: int = 0) -> Path:
    """The tiny ArcFace-shaped recogniser as ONNX (dynamic batch)."""
    torch.manual_seed(seed)
    torch.onnx.export(
        TinyArc().eval(),
        (torch.zeros(1, 3, 112, 112),),
        str(path),
        input_names=["input.1"],
        output_names=["embedding"],
        dynamic_axes={"input.1": {0: "batch"}, "embedding": {0: "batch"}},
        dynamo=False,
        opset_version=17,
    )
    return path


def make_pack(folder: Path) -> Path:
    """An insightface pack folder with the tiny detector and recogniser (non-standard file names)."""
    folder.mkdir(parents=True, exist_ok=True)
    export_detector(folder / "a_detector.onnx")
    export_recognizer(folder / "b_recognizer.onnx")
    return folder


class _BottleneckIR(nn.Module):
    def __init__(self, in_c: int, depth: int, stride: int):
        super().__init__()
        if in_c == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_c, depth, 1, stride, bias=False), nn.BatchNorm2d(depth)
            )
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_c),
            nn.Conv2d(in_c, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
        )

    def forward(self, x):
        return self.res_layer(x) + self.shortcut_layer(x)


class TinyIR(nn.Module):
    """IR backbone in CurricularFace's key layout: stages (8,1), (12,2), (16,1), (20,1) units; 112 -> 16-d."""

    def __init__(self, affine: bool = False):
        super().__init__()
        self.input_layer = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.PReLU(8))
        units, in_c = [], 8
        for depth, n in ((8, 1), (12, 2), (16, 1), (20, 1)):
            for j in range(n):
                units.append(_BottleneckIR(in_c, depth, 2 if j == 0 else 1))
                in_c = depth
        self.body = nn.Sequential(*units)
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(20),
            nn.Dropout(),
            nn.Flatten(),
            nn.Linear(20 * 7 * 7, 16),
            nn.BatchNorm1d(16, affine=affine),
        )

    def forward(self, x):
        return self.output_layer(self.body(self.input_layer(x)))


def tiny_ir(seed: int = 0, affine: bool = False) -> TinyIR:
    """A TinyIR with random weights and non-trivial BatchNorm statistics, in eval mode."""
    torch.manual_seed(seed)
    m = TinyIR(affine=affine)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d | nn.BatchNorm1d):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
    return m.eval()


class TinyInception(nn.Module):
    """299x299 [0,1] input -> 24-d pooled features (stands in for InceptionV3's 2048-d)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 24, 13, stride=13)

    def forward(self, x):
        if x.shape[-1] != 299 or x.shape[-2] != 299:
            raise ValueError("expected 299x299 input")
        return F.adaptive_avg_pool2d(torch.relu(self.conv(x)), 1).flatten(1)


def save_tiny_inception(path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.script(TinyInception().eval()).save(str(path))
    return path


def square_image(
    size: int = 320, square: int = 32, center: tuple[int, int] = (160, 160), seed: int = 0
) -> np.ndarray:
    """RGB uint8: a textured bright square (values 200-255) on black, centred at ``center`` (x, y)."""
    rng = np.random.default_rng(seed)
    img = np.zeros((size, size, 3), np.uint8)
    x0, y0 = center[0] - square // 2, center[1] - square // 2
    img[y0 : y0 + square, x0 : x0 + square] = rng.integers(200, 256, size=(square, square, 3), dtype=np.uint8)
    return img
