"""Stand-in models of the real sizes for ``bench_score.py --preset consisid`` (random weights, no downloads).

- the tiny SCRFD-shaped detector and ArcFace-shaped recogniser ONNX files of the tests
  (``tests/support/tiny_models.py``; they find bright squares, so the benchmark's "faces" are squares);
- CurricularFace: ipvgkit's own TFace IR-101 (:func:`ipvgkit.faces.curricular.build_ir`), random
  weights, saved as a state dict in ConsisID's layout (the real file's key names and shapes);
- InceptionV3: the torchvision architecture (stem, Mixed_5b-7c, 2048-d pooled output, input
  transform) written here with plain torch, random weights, saved as TorchScript - the real network's
  cost, since torchvision does not import here;
- a tiny CLIP (the tests' one).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.support


class Conv(nn.Module):
    def __init__(self, i: int, o: int, k, s=1, p=0):
        super().__init__()
        self.conv = nn.Conv2d(i, o, k, s, p, bias=False)
        self.bn = nn.BatchNorm2d(o, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class MixedA(nn.Module):
    def __init__(self, i: int, pool: int):
        super().__init__()
        self.b1 = Conv(i, 64, 1)
        self.b5 = nn.Sequential(Conv(i, 48, 1), Conv(48, 64, 5, p=2))
        self.b3 = nn.Sequential(Conv(i, 64, 1), Conv(64, 96, 3, p=1), Conv(96, 96, 3, p=1))
        self.bp = Conv(i, pool, 1)

    def forward(self, x):
        bp = self.bp(F.avg_pool2d(x, 3, 1, 1))
        return torch.cat([self.b1(x), self.b5(x), self.b3(x), bp], 1)


class MixedB(nn.Module):
    def __init__(self, i: int):
        super().__init__()
        self.b3 = Conv(i, 384, 3, s=2)
        self.bd = nn.Sequential(Conv(i, 64, 1), Conv(64, 96, 3, p=1), Conv(96, 96, 3, s=2))

    def forward(self, x):
        return torch.cat([self.b3(x), self.bd(x), F.max_pool2d(x, 3, 2)], 1)


class MixedC(nn.Module):
    def __init__(self, c7: int):
        super().__init__()
        self.b1 = Conv(768, 192, 1)
        self.b7 = nn.Sequential(
            Conv(768, c7, 1), Conv(c7, c7, (1, 7), p=(0, 3)), Conv(c7, 192, (7, 1), p=(3, 0))
        )
        self.bd = nn.Sequential(
            Conv(768, c7, 1),
            Conv(c7, c7, (7, 1), p=(3, 0)),
            Conv(c7, c7, (1, 7), p=(0, 3)),
            Conv(c7, c7, (7, 1), p=(3, 0)),
            Conv(c7, 192, (1, 7), p=(0, 3)),
        )
        self.bp = Conv(768, 192, 1)

    def forward(self, x):
        return torch.cat([self.b1(x), self.b7(x), self.bd(x), self.bp(F.avg_pool2d(x, 3, 1, 1))], 1)


class MixedD(nn.Module):
    def __init__(self):
        super().__init__()
        self.b3 = nn.Sequential(Conv(768, 192, 1), Conv(192, 320, 3, s=2))
        self.b7 = nn.Sequential(
            Conv(768, 192, 1),
            Conv(192, 192, (1, 7), p=(0, 3)),
            Conv(192, 192, (7, 1), p=(3, 0)),
            Conv(192, 192, 3, s=2),
        )

    def forward(self, x):
        return torch.cat([self.b3(x), self.b7(x), F.max_pool2d(x, 3, 2)], 1)


class MixedE(nn.Module):
    def __init__(self, i: int):
        super().__init__()
        self.b1 = Conv(i, 320, 1)
        self.b3 = Conv(i, 384, 1)
        self.b3a, self.b3b = Conv(384, 384, (1, 3), p=(0, 1)), Conv(384, 384, (3, 1), p=(1, 0))
        self.bd = nn.Sequential(Conv(i, 448, 1), Conv(448, 384, 3, p=1))
        self.bda, self.bdb = Conv(384, 384, (1, 3), p=(0, 1)), Conv(384, 384, (3, 1), p=(1, 0))
        self.bp = Conv(i, 192, 1)

    def forward(self, x):
        b3, bd = self.b3(x), self.bd(x)
        return torch.cat(
            [
                self.b1(x),
                self.b3a(b3),
                self.b3b(b3),
                self.bda(bd),
                self.bdb(bd),
                self.bp(F.avg_pool2d(x, 3, 1, 1)),
            ],
            1,
        )


class InceptionV3Features(nn.Module):
    """torchvision's inception_v3 (eval, ``transform_input=True``, ``fc = Identity``): (N,3,299,299) -> 2048."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(
            Conv(3, 32, 3, s=2), Conv(32, 32, 3), Conv(32, 64, 3, p=1), nn.MaxPool2d(3, 2),
            Conv(64, 80, 1), Conv(80, 192, 3), nn.MaxPool2d(3, 2),
        )  # fmt: skip
        self.mixed = nn.Sequential(
            MixedA(192, 32), MixedA(256, 64), MixedA(288, 64), MixedB(288),
            MixedC(128), MixedC(160), MixedC(160), MixedC(192), MixedD(), MixedE(1280), MixedE(2048),
        )  # fmt: skip

    def forward(self, x):
        mean = torch.tensor([0.485, 0.456, 0.406], device=x.device).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225], device=x.device).view(1, 3, 1, 1)
        x = x * (std / 0.5) + (mean - 0.5) / 0.5  # transform_input, as torchvision's forward does
        x = self.mixed(self.stem(x))
        return F.adaptive_avg_pool2d(x, 1).flatten(1)


def make_models_dir(root: Path, seed: int = 0, size: str = "full") -> Path:
    """A models dir in ConsisID's checkpoint layout with every consisid-preset file as a stand-in.

    ``size="tiny"`` uses the tests' tiny IR and InceptionV3 stand-ins instead of the real-size networks
    (then decoding, detection and alignment dominate the time, not the two big networks)."""
    from tests.support.tiny_models import export_detector, export_recognizer, make_tiny_clip

    from ipvgkit.faces.curricular import build_ir

    root = Path(root)
    if (root / "done").is_file():
        return root
    if size == "tiny":
        from tests.support.tiny_models import make_pack, save_tiny_inception, tiny_ir

        make_pack(root / "face_encoder" / "models" / "buffalo_l")
        torch.save(
            tiny_ir(seed=seed).state_dict(),
            root / "face_encoder" / "glint360k_curricular_face_r101_backbone.bin",
        )
        save_tiny_inception(root / "inception" / "inception_v3_fid.pt", seed=seed)
        make_tiny_clip(root / "data_process" / "clip-vit-base-patch32")
        (root / "done").write_text("ok")
        return root
    pack = root / "face_encoder" / "models" / "buffalo_l"
    pack.mkdir(parents=True, exist_ok=True)
    export_detector(pack / "det_10g.onnx")
    export_recognizer(pack / "w600k_r50.onnx")
    torch.manual_seed(seed)
    ir = build_ir()
    for m in ir.modules():  # scaled so 49 random residual units keep activations finite
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.normal_(m.weight, std=0.5 / (m.weight[0].numel() ** 0.5))
    torch.save(ir.state_dict(), root / "face_encoder" / "glint360k_curricular_face_r101_backbone.bin")
    inc = root / "inception" / "inception_v3_fid.pt"
    inc.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.script(InceptionV3Features().eval()).save(str(inc))
    make_tiny_clip(root / "data_process" / "clip-vit-base-patch32")
    (root / "done").write_text("ok")
    return root
