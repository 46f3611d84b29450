"""Tiny real models in the real on-disk formats, built in the tests (no downloads): one module for all tests.

Faces:

- an SCRFD-shaped detector ONNX (9 outputs: scores/boxes/keypoints at strides 8, 16, 32, 2 anchors) that
  "detects" bright squares of about 24-36 px (in its 320x320 input) on a dark background;
- an ArcFace-shaped recogniser ONNX (input N x 3 x 112 x 112, one output named ``embedding``);
- an IR backbone (the older CurricularFace layout) as a state dict and as TorchScript;
- an InceptionV3 stand-in (input 299) as TorchScript.

CLIP-family (transformers ``save_pretrained`` folders):

- CLIP: a 2-layer ``CLIPModel`` (32x32 images, 16-d projection) with a character-level ``CLIPTokenizer``
  (vocab.json + empty merges.txt written here) and a ``CLIPImageProcessor`` (resize/crop 32); its
  logit scale is the config default exp(2.6592) ~ 14.3 (not the released weights' 100) unless given;
- LAION aesthetic MLP: the real layer layout (``layers.{0,2,4,6,7}`` linear, dropouts between) with
  small widths, saved with ``torch.save(state_dict)``;
- DINO: a 2-layer ``ViTModel`` with a ``ViTImageProcessor`` (32x32).
"""

from __future__ import annotations

import json
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
    left, right, above and below are dark or mid-gray (the 128 padding counts as background): a bright
    square of 16-36 px centred on the anchor grid."""

    def forward(self, x: torch.Tensor):
        v = (x.mean(1, keepdim=True) + 1.0) / 2.0  # ~[0, 1] brightness
        h8, w8 = x.shape[2] // 8, x.shape[3] // 8

        def window(size: int, ox: int, oy: int) -> torch.Tensor:
            pooled = F.avg_pool2d(F.pad(v, (32, 32, 32, 32)), size, stride=1)
            return pooled[:, :, 32 + oy :: 8, 32 + ox :: 8][:, :, :h8, :w8]

        s8 = torch.sigmoid(50.0 * (window(16, -8, -8) - 0.75))
        for ox, oy in ((16, -4), (-24, -4), (-4, 16), (-4, -24)):
            s8 = s8 * torch.sigmoid(50.0 * (0.6 - window(8, ox, oy)))
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


# -- CLIP-family models ----------------------------------------------------------------------
CHARS = "abcdefghijklmnopqrstuvwxyz"
EMB = 16  # CLIP projection size of the tiny model


def _quiet() -> None:
    import transformers

    transformers.logging.set_verbosity_error()


def make_tiny_clip(folder: Path, seed: int = 0, logit_scale: float | None = None) -> Path:
    """Save a tiny CLIP (model, tokenizer, image processor) into ``folder`` (``logit_scale``: log of the
    scale; None keeps the config default 2.6592)."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    _quiet()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab: dict[str, int] = {}
    for c in CHARS:
        vocab[c] = len(vocab)
    for c in CHARS:
        vocab[c + "</w>"] = len(vocab)
    for t in ("<|startoftext|>", "<|endoftext|>"):
        vocab[t] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"))
    torch.manual_seed(seed)
    cfg = CLIPConfig(
        text_config=dict(
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            projection_dim=EMB,
            bos_token_id=vocab["<|startoftext|>"],
            eos_token_id=vocab["<|endoftext|>"],
            pad_token_id=vocab["<|endoftext|>"],
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
            projection_dim=EMB,
        ),
        projection_dim=EMB,
        **({} if logit_scale is None else {"logit_scale_init_value": logit_scale}),
    )
    CLIPModel(cfg).eval().save_pretrained(folder)
    tok.save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        folder
    )
    return folder


def make_tiny_aesthetic(path: Path, dim: int = EMB, seed: int = 0) -> Path:
    """Save an MLP with the LAION predictor's layer layout (input ``dim``) as a state dict."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    layers = nn.Sequential(
        nn.Linear(dim, 24),
        nn.Dropout(0.2),
        nn.Linear(24, 12),
        nn.Dropout(0.2),
        nn.Linear(12, 8),
        nn.Dropout(0.1),
        nn.Linear(8, 4),
        nn.Linear(4, 1),
    )
    module = nn.Module()
    module.layers = layers
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(module.state_dict(), path)
    return path


def make_tiny_dino(folder: Path, seed: int = 0) -> Path:
    """Save a tiny ``ViTModel`` + image processor into ``folder``."""
    import torch
    import transformers
    from transformers import ViTConfig, ViTModel

    _quiet()
    folder = Path(folder)
    torch.manual_seed(seed)
    cfg = ViTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        image_size=32,
        patch_size=8,
    )
    ViTModel(cfg, add_pooling_layer=False).eval().save_pretrained(folder)
    proc = getattr(transformers, "ViTImageProcessorPil", None) or transformers.ViTImageProcessor
    proc(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def make_models_dir(root: Path) -> Path:
    """A models dir with every non-face metric's files (tiny): CLIP B/32 and L/14, the MLP, DINO."""
    root = Path(root)
    make_tiny_clip(root / "clip-vit-base-patch32", seed=0)
    make_tiny_clip(root / "clip-vit-large-patch14", seed=1)
    make_tiny_aesthetic(root / "sac+logos+ava1-l14-linearMSE.pth")
    make_tiny_dino(root / "dino-vitb16")
    return root
