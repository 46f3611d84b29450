"""CurricularFace IR-101 face recogniser (the FaceSim-Cur model of ConsisID's eval).

Loads either a TorchScript file or a state dict of the IR backbone (``input_layer`` / ``body.N.res_layer``
/ ``output_layer``, as in CurricularFace's and face.evoLVe's ``model_irse.py``). For a state dict the
architecture is read from the tensors: the number of units per stage, the widths and whether the last
BatchNorm1d is affine, so IR-50/100/101/152 and small test networks all load. Input: (N, 3, 112, 112)
RGB scaled ``(x/255 - 0.5)/0.5``; output: (N, 512).

The FaceSim-Cur preprocessing (SPEC §4) is :meth:`CurricularFace.embed_crops`: 224 aligned RGB crops,
bilinear resize to 112 (``torch.nn.functional.interpolate``, ``align_corners=False``), normalise, embed,
L2-normalise.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ipvgkit.errors import InputError


def _strip_prefix(sd: dict) -> dict:
    """Unwrap ``{"state_dict": ...}`` checkpoints and DataParallel ``module.`` prefixes."""
    for key in ("state_dict", "model", "backbone"):
        if key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def build_ir_backbone(sd: dict):
    """An IR backbone (torch ``nn.Module``) whose shape matches the state dict ``sd`` (weights not loaded)."""
    import torch
    from torch import nn

    class BottleneckIR(nn.Module):
        def __init__(self, in_c: int, depth: int, stride: int, conv_shortcut: bool):
            super().__init__()
            if conv_shortcut:
                self.shortcut_layer = nn.Sequential(
                    nn.Conv2d(in_c, depth, (1, 1), stride, bias=False), nn.BatchNorm2d(depth)
                )
            else:
                self.shortcut_layer = nn.MaxPool2d(1, stride)
            self.res_layer = nn.Sequential(
                nn.BatchNorm2d(in_c),
                nn.Conv2d(in_c, depth, (3, 3), (1, 1), 1, bias=False),
                nn.PReLU(depth),
                nn.Conv2d(depth, depth, (3, 3), stride, 1, bias=False),
                nn.BatchNorm2d(depth),
            )

        def forward(self, x):
            return self.res_layer(x) + self.shortcut_layer(x)

    class IRBackbone(nn.Module):
        def __init__(self):
            super().__init__()
            w0 = sd["input_layer.0.weight"]
            stem = w0.shape[0]
            self.input_layer = nn.Sequential(
                nn.Conv2d(w0.shape[1], stem, (3, 3), 1, 1, bias=False), nn.BatchNorm2d(stem), nn.PReLU(stem)
            )
            units = sorted({int(m.group(1)) for k in sd if (m := re.match(r"body\.(\d+)\.", k))})
            modules, prev_depth = [], None
            for i in units:
                w = sd[f"body.{i}.res_layer.1.weight"]
                depth, in_c = int(w.shape[0]), int(w.shape[1])
                stride = 2 if prev_depth is None or depth != prev_depth else 1
                conv_sc = f"body.{i}.shortcut_layer.0.weight" in sd
                modules.append(BottleneckIR(in_c, depth, stride, conv_sc))
                prev_depth = depth
            self.body = nn.Sequential(*modules)
            lin = sd["output_layer.3.weight"]
            out_c = int(sd["output_layer.0.weight"].shape[0])
            affine = "output_layer.4.weight" in sd
            self.output_layer = nn.Sequential(
                nn.BatchNorm2d(out_c),
                nn.Dropout(),
                nn.Flatten(),
                nn.Linear(int(lin.shape[1]), int(lin.shape[0])),
                nn.BatchNorm1d(int(lin.shape[0]), affine=affine),
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.output_layer(self.body(self.input_layer(x)))

    return IRBackbone()


def load_curricularface(path: Path | str, device: str = "cpu"):
    """The recogniser module from a TorchScript file or an IR state dict, in eval mode on ``device``."""
    import torch

    path = Path(path)
    try:
        model = torch.jit.load(str(path), map_location=device)
    except RuntimeError:
        model = None
    if model is None:
        try:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
            raise InputError(f"{path}: neither a TorchScript file nor a torch state dict ({e})") from e
        if not isinstance(sd, dict):
            raise InputError(f"{path}: expected a state dict, got {type(sd).__name__}")
        sd = _strip_prefix(sd)
        if "input_layer.0.weight" not in sd or "output_layer.3.weight" not in sd:
            raise InputError(f"{path}: not an IR backbone state dict (no input_layer/output_layer keys)")
        model = build_ir_backbone(sd)
        missing, unexpected = model.load_state_dict(sd, strict=False)
        missing = [k for k in missing if not k.endswith("num_batches_tracked")]
        if missing or unexpected:
            raise InputError(
                f"{path}: state dict does not fit the IR backbone (missing {missing[:3]}, "
                f"unexpected {unexpected[:3]})"
            )
        model = model.to(device)
    return model.eval()


class CurricularFace:
    """CurricularFace embeddings of aligned RGB face crops."""

    name = "curricularface"

    def __init__(self, path: Path | str, device: str = "cpu"):
        self.device = device
        self.model = load_curricularface(path, device)

    def embed_crops(self, crops_rgb: list[np.ndarray], batch_size: int = 16) -> np.ndarray:
        """(N, 512) L2-normalised embeddings of aligned RGB uint8 crops (any square size; resized to 112)."""
        import torch
        import torch.nn.functional as F

        from ipvgkit.faces.base import l2_normalize

        if not crops_rgb:
            return np.zeros((0, 512), np.float32)
        outs = []
        with torch.inference_mode():
            for i in range(0, len(crops_rgb), batch_size):
                x = torch.from_numpy(np.stack(crops_rgb[i : i + batch_size])).permute(0, 3, 1, 2).float()
                x = F.interpolate(x, size=(112, 112), mode="bilinear", align_corners=False)
                x = (x / 255.0 - 0.5) / 0.5
                y = self.model(x.to(self.device))
                if isinstance(y, tuple | list):
                    y = y[0]
                outs.append(y.float().cpu().numpy())
        return l2_normalize(np.concatenate(outs))
