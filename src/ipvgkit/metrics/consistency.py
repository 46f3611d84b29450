"""``subject_consistency`` (VBench-like): frame-to-frame similarity of self-supervised DINO embeddings."""

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


class DinoEncoder:
    """A transformers ``ViTModel`` + its image processor: L2-normalised CLS embeddings of frames."""

    def __init__(self, path: Path, device: str = "cpu"):
        import torch
        import transformers

        from ipvgkit.devices import resolve_device

        self.device = resolve_device(device)
        self.model = transformers.ViTModel.from_pretrained(str(path), add_pooling_layer=False).eval()
        self.model.to(self.device)
        proc_cls = getattr(transformers, "ViTImageProcessorPil", None) or transformers.ViTImageProcessor
        self.processor = proc_cls.from_pretrained(str(path))
        self._torch = torch

    @classmethod
    def shared(cls, path: Path, device: str) -> DinoEncoder:
        from ipvgkit.devices import resolve_device

        key = (str(Path(path).resolve()), resolve_device(device))
        if key not in _LOADED:
            _LOADED[key] = cls(path, device)
        return _LOADED[key]

    def embed(self, frames: np.ndarray, batch_size: int = 16) -> np.ndarray:
        """``(N, D)`` L2-normalised CLS-token embeddings (last hidden state, after the final norm)."""
        from ipvgkit.metrics.clip import l2n

        torch = self._torch
        out = []
        for s in range(0, len(frames), max(1, batch_size)):
            chunk = [np.ascontiguousarray(f) for f in frames[s : s + batch_size]]
            pix = self.processor(images=chunk, return_tensors="pt")["pixel_values"].to(self.device)
            with torch.inference_mode():
                h = self.model(pixel_values=pix).last_hidden_state[:, 0]
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
    """VBench-like subject consistency with DINO ViT-B/16 (value in [0, 1], 1 = the subject never changes).

    Every frame by default (``n_frames`` limits it to N frames at linspace).
    """

    name = "subject_consistency"
    family = "consistency"
    description = "mean of cos(prev, cur) and cos(first, cur) of DINO ViT-B/16 embeddings, clamped at 0"

    def __init__(self, n_frames: int | None = None):
        self.n_frames = n_frames
        self.encoder: DinoEncoder | None = None
        self.batch_size = 16

    def options(self) -> dict:
        return {"n_frames": self.n_frames}

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
        return self.compute_batch([sample])[0]

    def compute_batch(self, samples: list[VideoSample]) -> list[MetricResult]:
        if self.encoder is None:
            raise RuntimeError("subject_consistency: load() was not called")
        frames, owner = [], []
        for k, s in enumerate(samples):
            f = s.frames(self.frame_indices(s.n_frames))
            frames.extend(f)
            owner.extend([k] * len(f))
        emb = self.encoder.embed(np.stack(frames), self.batch_size) if frames else np.zeros((0, 1))
        owner_a = np.asarray(owner)
        out = []
        for k in range(len(samples)):
            e = emb[owner_a == k]
            if len(e) < 2:
                out.append(MetricResult(None, {"frames_scored": len(e)}, "needs at least 2 frames"))
                continue
            value, _ = consistency_from_embeddings(e)
            out.append(MetricResult(value, {"frames_scored": len(e)}))
        return out
