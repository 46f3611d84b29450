"""CurricularFace IR-101 face recogniser (the FaceSim-Cur model of ConsisID's eval).

The file ConsisID ships (``face_encoder/glint360k_curricular_face_r101_backbone.bin``) is a plain state
dict of TFace's IR-101 (``torchkit/backbone/model_irse.py``, ``Backbone((112, 112), 100, "ir")``):

- ``input_layer``: Conv 3->64 3x3, BatchNorm2d, PReLU;
- ``body``: 49 ``BasicBlockIR`` units in four stages of (3, 13, 30, 3) units, widths 64, 128, 256, 512;
  the first unit of each stage has stride 2 (the very first one too, with a ``MaxPool2d(1, 2)``
  shortcut since its width does not change; a width change gets a 1x1 conv + BatchNorm shortcut).
  A unit's ``res_layer`` is BatchNorm2d, Conv 3x3, **BatchNorm2d, PReLU**, Conv 3x3 (stride), BatchNorm2d
  (indices 0-5);
- ``output_layer``: BatchNorm2d(512), Dropout, Flatten, Linear(512*7*7, 512), BatchNorm1d(512, affine=False).

The older face.evoLVe/CurricularFace ``model_irse`` variant (``res_layer`` without the BatchNorm before
the PReLU, indices 0-4) loads too. Units per stage and widths are read from the file's keys, the
network is built, and the file is loaded with ``strict=True``: a file that does not fit is a one-line
:class:`InputError` naming the file and the first mismatched key. Files are read with
``torch.load(weights_only=True)`` (never unpickled code); a TorchScript export loads as well.

FaceSim-Cur preprocessing (SPEC §4) is :meth:`CurricularFace.embed_crops`: the 224 aligned RGB uint8 crop,
``cv2.resize`` to 112 (bilinear, uint8 result), ``x/255``, ``(x-0.5)/0.5``, NCHW contiguous.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ipvgkit.errors import InputError

IR101_UNITS = (3, 13, 30, 3)
IR_WIDTHS = (64, 128, 256, 512)
EMBEDDING = 512


def _strip_prefix(sd: dict) -> dict:
    """Unwrap ``{"state_dict": ...}`` checkpoints and DataParallel ``module.`` prefixes."""
    for key in ("state_dict", "model", "backbone"):
        if key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def _layout(sd: dict) -> tuple[list[tuple[int, int, int]], bool, int, int, bool] | None:
    """(units as (in, depth, stride), TFace variant?, embedding size, stem width, affine last BatchNorm?)
    read from ``sd``'s keys; None when they do not describe an IR network."""
    units_idx = sorted({int(m.group(1)) for k in sd if (m := re.match(r"body\.(\d+)\.res_layer\.", k))})
    if not units_idx or "input_layer.0.weight" not in sd or "output_layer.3.weight" not in sd:
        return None
    tface = f"body.{units_idx[0]}.res_layer.5.weight" in sd
    units, prev = [], None
    for i in units_idx:
        w = sd.get(f"body.{i}.res_layer.1.weight")
        if w is None or w.ndim != 4:
            return None
        depth, in_c = int(w.shape[0]), int(w.shape[1])
        units.append((in_c, depth, 2 if prev is None or depth != prev else 1))
        prev = depth
    emb, stem = int(sd["output_layer.3.weight"].shape[0]), int(sd["input_layer.0.weight"].shape[0])
    return units, tface, emb, stem, "output_layer.4.weight" in sd


def build_ir(
    units: list[tuple[int, int, int]] | None = None,
    tface: bool = True,
    embedding: int = EMBEDDING,
    stem: int = 64,
    affine: bool = False,
):
    """An IR backbone (``nn.Module``, random weights); default: TFace's IR-101 for 112x112 input."""
    from torch import nn

    if units is None:
        units, in_c = [], stem
        for n, depth in zip(IR101_UNITS, IR_WIDTHS, strict=True):
            units += [(in_c, depth, 2)] + [(depth, depth, 1)] * (n - 1)
            in_c = depth

    class BasicBlockIR(nn.Module):
        def __init__(self, in_c: int, depth: int, stride: int):
            super().__init__()
            if in_c == depth:
                self.shortcut_layer = nn.MaxPool2d(1, stride)
            else:
                self.shortcut_layer = nn.Sequential(
                    nn.Conv2d(in_c, depth, (1, 1), stride, bias=False), nn.BatchNorm2d(depth)
                )
            mid = [nn.BatchNorm2d(depth), nn.PReLU(depth)] if tface else [nn.PReLU(depth)]
            self.res_layer = nn.Sequential(
                nn.BatchNorm2d(in_c),
                nn.Conv2d(in_c, depth, (3, 3), (1, 1), 1, bias=False),
                *mid,
                nn.Conv2d(depth, depth, (3, 3), stride, 1, bias=False),
                nn.BatchNorm2d(depth),
            )

        def forward(self, x):
            return self.res_layer(x) + self.shortcut_layer(x)

    class IRBackbone(nn.Module):
        def __init__(self):
            super().__init__()
            self.input_layer = nn.Sequential(
                nn.Conv2d(3, stem, (3, 3), 1, 1, bias=False), nn.BatchNorm2d(stem), nn.PReLU(stem)
            )
            self.body = nn.Sequential(*(BasicBlockIR(*u) for u in units))
            out_c = units[-1][1]
            self.output_layer = nn.Sequential(
                nn.BatchNorm2d(out_c),
                nn.Dropout(0.4),
                nn.Flatten(),
                nn.Linear(out_c * 7 * 7, embedding),
                nn.BatchNorm1d(embedding, affine=affine),
            )

        def forward(self, x):
            return self.output_layer(self.body(self.input_layer(x)))

    return IRBackbone()


def first_mismatch(model, sd: dict) -> str | None:
    """The first key (in the network's order) that ``sd`` lacks or has with another shape, or that it has
    in excess; None when ``sd`` fits ``model`` (``num_batches_tracked`` may be absent, as in old files)."""
    own = model.state_dict()
    for k, v in own.items():
        if k not in sd:
            if k.endswith("num_batches_tracked"):
                continue
            return f"{k} missing (expected shape {tuple(v.shape)})"
        if tuple(sd[k].shape) != tuple(v.shape):
            return f"{k} has shape {tuple(sd[k].shape)}, expected {tuple(v.shape)}"
    extra = [k for k in sd if k not in own]
    return f"{extra[0]} unexpected" if extra else None


def _from_state_dict(path: Path, sd: dict):
    import torch

    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in _strip_prefix(sd).values()):
        raise InputError(f"{path}: expected a state dict of tensors, got {type(sd).__name__}")
    sd = _strip_prefix(sd)
    layout = _layout(sd)
    model = build_ir(*layout) if layout is not None else build_ir()
    bad = first_mismatch(model, sd)
    if bad is not None:
        kind = "" if layout is not None else "not an IR backbone state dict: "
        raise InputError(f"{path}: {kind}does not fit the IR network (first mismatched key: {bad})")
    counters = {
        k: v for k, v in model.state_dict().items() if k.endswith("num_batches_tracked") and k not in sd
    }
    model.load_state_dict({**sd, **counters}, strict=True)
    return model


def load_curricularface(path: Path | str, device: str = "cpu"):
    """The recogniser module from a TorchScript file or an IR state dict, in eval mode on ``device``."""
    import torch

    path = Path(path)
    try:
        model = torch.jit.load(str(path), map_location=device)
    except (RuntimeError, ValueError):
        try:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise InputError(f"{path}: neither a TorchScript file nor a torch state dict ({msg})") from None
        model = _from_state_dict(path, sd).to(device)
    return model.eval()


class CurricularFace:
    """CurricularFace embeddings of aligned RGB face crops."""

    name = "curricularface"

    def __init__(self, path: Path | str, device: str = "cpu"):
        self.device = device
        self.model = load_curricularface(path, device)

    def embed_crops(self, crops_rgb: list[np.ndarray], batch_size: int = 16) -> np.ndarray:
        """(N, D) L2-normalised embeddings of aligned RGB uint8 crops (any size; ``cv2.resize`` to 112)."""
        import cv2
        import torch

        from ipvgkit.faces.base import l2_normalize

        if not crops_rgb:
            return np.zeros((0, EMBEDDING), np.float32)
        small = [cv2.resize(np.ascontiguousarray(c, dtype=np.uint8), (112, 112)) for c in crops_rgb]
        outs = []
        with torch.inference_mode():
            for i in range(0, len(small), batch_size):
                x = torch.from_numpy(np.stack(small[i : i + batch_size]).transpose(0, 3, 1, 2).copy())
                x = x.float().div_(255).sub_(0.5).div_(0.5).contiguous()
                y = self.model(x.to(self.device))
                if isinstance(y, tuple | list):
                    y = y[0]
                outs.append(y.float().cpu().numpy())
        return l2_normalize(np.concatenate(outs))
