"""``subject_consistency`` (VBench): frame-to-frame similarity of self-supervised DINO ViT-B/16 embeddings."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ipvgkit.metrics.base import Metric, MetricContext, MetricResult, VideoSample
from ipvgkit.metrics.registry import register
from ipvgkit.weights import ModelFile, locate, register_file

DINO_B16 = register_file(
    ModelFile(
        name="dino-vitb16",
        relpath="dino-vitb16",
        source="hf download facebook/dino-vitb16 --local-dir <models-dir>/dino-vitb16",
        hf_repo="facebook/dino-vitb16",
        hf_path="",
        description="DINO ViT-B/16 (self-supervised; transformers ViTModel format)",
        used_by=("subject_consistency",),
    )
)

_LOADED: dict[tuple[str, str], DinoEncoder] = {}

SHORT_SIDE = 224  # VBench dino_transform(224): Resize(224) keeps the aspect ratio, no crop
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # VBench utils.dino_transform's Normalize
IMAGENET_STD = (0.229, 0.224, 0.225)


def resized_size(h: int, w: int, short: int = SHORT_SIDE) -> tuple[int, int]:
    """torchvision ``Resize(short)``'s output (h, w): the short side becomes ``short``, the long one
    ``int(short * long / short_side)`` (truncated)."""
    if w <= h:
        return int(short * h / w), short
    return short, int(short * w / h)


def vbench_preprocess(frames: np.ndarray):
    """VBench's ``dino_transform(224)`` on RGB uint8 ``(N, H, W, 3)`` frames -> float tensor ``(N, 3, h, w)``.

    torchvision's tensor ``Resize(224, antialias=False)`` on uint8: bilinear (half-pixel centres, no
    antialias) in float, rounded back to uint8; then ``/255`` and the ImageNet mean/std.
    """
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    size = resized_size(int(x.shape[2]), int(x.shape[3]))
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=False)
    x = torch.round(x).clamp(0, 255) / 255.0
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def dino_interpolate_pos_encoding(self, embeddings, height: int, width: int):
    """DINO's ``VisionTransformer.interpolate_pos_encoding`` (the torch.hub model VBench loads), for a
    transformers ``ViTEmbeddings``: bicubic with ``scale_factor = (n + 0.1) / sqrt(N)`` per side (not
    transformers' ``size=n``, which samples slightly different positions); unchanged for a square input
    with the trained number of patches."""
    import math

    import torch
    import torch.nn.functional as F

    npatch = embeddings.shape[1] - 1
    n_pos = self.position_embeddings.shape[1] - 1
    if npatch == n_pos and height == width:
        return self.position_embeddings
    cls_pos, patch_pos = self.position_embeddings[:, :1], self.position_embeddings[:, 1:]
    dim = embeddings.shape[-1]
    side = int(math.sqrt(n_pos))
    h0, w0 = height // self.patch_size + 0.1, width // self.patch_size + 0.1
    grid = patch_pos.reshape(1, side, side, dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, scale_factor=(h0 / side, w0 / side), mode="bicubic")
    if grid.shape[-2:] != (int(h0), int(w0)):
        raise RuntimeError(f"position grid {tuple(grid.shape[-2:])} != patches {(int(h0), int(w0))}")
    return torch.cat((cls_pos, grid.permute(0, 2, 3, 1).reshape(1, -1, dim)), dim=1)


class DinoEncoder:
    """A transformers ``ViTModel`` run as VBench runs DINO: L2-normalised CLS embeddings of frames.

    Preprocessing is :func:`vbench_preprocess` (not the folder's image processor, which squashes to
    224 x 224); the position embeddings are interpolated DINO's way (:func:`dino_interpolate_pos_encoding`
    bound to the model's embeddings; ``ViTModel`` takes ``interpolate_pos_encoding=True``).
    """

    def __init__(self, path: Path, device: str = "cpu"):
        import types

        import torch
        import transformers

        from ipvgkit.devices import resolve_device

        self.device = resolve_device(device)
        self.model = transformers.ViTModel.from_pretrained(str(path), add_pooling_layer=False).eval()
        emb = self.model.embeddings
        emb.interpolate_pos_encoding = types.MethodType(dino_interpolate_pos_encoding, emb)
        self.model.to(self.device)
        self._torch = torch

    @classmethod
    def shared(cls, path: Path, device: str) -> DinoEncoder:
        from ipvgkit.devices import resolve_device

        key = (str(Path(path).resolve()), resolve_device(device))
        if key not in _LOADED:
            _LOADED[key] = cls(path, device)
        return _LOADED[key]

    def embed(self, frames: np.ndarray, batch_size: int = 16) -> np.ndarray:
        """``(N, D)`` L2-normalised CLS-token embeddings (last hidden state, after the final norm) of
        frames of one size."""
        from ipvgkit.metrics.clip import l2n

        torch = self._torch
        out = []
        for s in range(0, len(frames), max(1, batch_size)):
            pix = vbench_preprocess(frames[s : s + batch_size]).to(self.device)
            with torch.inference_mode():
                h = self.model(pixel_values=pix, interpolate_pos_encoding=True).last_hidden_state[:, 0]
            out.append(h.float().cpu().numpy())
        return l2n(np.concatenate(out))


def consistency_from_embeddings(emb: np.ndarray) -> tuple[float, list[float]]:
    """VBench's rule on L2-normalised embeddings: for frames 1..n-1, the mean of max(0, cos(prev, cur))
    and max(0, cos(first, cur)); the video's value is the mean over those frames."""
    per = []
    for i in range(1, len(emb)):
        to_prev = max(0.0, float(emb[i - 1] @ emb[i]))
        to_first = max(0.0, float(emb[0] @ emb[i]))
        per.append((to_prev + to_first) / 2.0)
    return float(np.mean(per)), per


@register
class SubjectConsistency(Metric):
    """VBench subject consistency (``vbench/subject_consistency.py``) with DINO ViT-B/16, in [0, 1].

    Every frame by default (``n_frames`` limits it to N frames at linspace). The run value is VBench's
    frame-weighted one: the sum of the per-frame values of all videos / the number of frames compared
    (``extra["frames_compared"]`` = frames - 1 per video), not the mean of the videos' values.
    """

    name = "subject_consistency"
    family = "consistency"
    description = "mean of cos(prev, cur) and cos(first, cur) of DINO ViT-B/16 embeddings, clamped at 0"
    run_aggregation = "frame_weighted"
    run_weight_key = "frames_compared"

    def __init__(self, n_frames: int | None = None):
        self.n_frames = n_frames
        self.encoder: DinoEncoder | None = None
        self.batch_size = 16

    def options(self) -> dict:
        return {"n_frames": self.n_frames, "preprocess": f"vbench-short-side-{SHORT_SIDE}"}

    def model_files(self) -> list[ModelFile]:
        return [DINO_B16]

    def frame_indices(self, n_frames: int) -> list[int]:
        if self.n_frames is None:
            return list(range(n_frames))
        from ipvgkit.media import sample_indices

        return sorted(set(sample_indices(n_frames, self.n_frames)))

    def load(self, ctx: MetricContext) -> None:
        self.batch_size = ctx.batch_size
        self.encoder = DinoEncoder.shared(locate(DINO_B16, ctx.models_dir), ctx.device)

    def compute(self, sample: VideoSample) -> MetricResult:
        if self.encoder is None:
            raise RuntimeError("subject_consistency: load() was not called")
        frames = sample.frames(self.frame_indices(sample.n_frames))
        if len(frames) < 2:
            return MetricResult(None, {"frames_scored": len(frames)}, "needs at least 2 frames")
        value, per = consistency_from_embeddings(self.encoder.embed(frames, self.batch_size))
        return MetricResult(value, {"frames_scored": len(frames), "frames_compared": len(per)})
