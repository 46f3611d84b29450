"""Motion metrics: ``motion_amplitude`` (OpenS2V-Eval) and ``dynamic_degree`` (VBench).

The flows come from :mod:`ipvgkit.metrics.flow` (grey conversion, padding, RAFT or Farneback) and are
shared between the two metrics through ``sample.cache`` when they ask for the same flow.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ipvgkit.metrics.base import Metric, MetricContext, MetricResult, VideoSample
from ipvgkit.metrics.flow import (
    FARNEBACK,
    FLOW_CHOICES,
    NO_PAD,
    RAFT_LARGE,
    default_workers,
    pair_flows,
    raft_model,
    resolve_flow,
    sintel_pad,
)
from ipvgkit.metrics.registry import register
from ipvgkit.weights import ModelFile

__all__ = ["FARNEBACK", "DynamicDegree", "MotionAmplitude", "dynamic_step", "top5_mean_magnitude"]


def _workers(ctx: MetricContext) -> int:
    w = int(ctx.options.get("workers") or 0)
    return w if w > 0 else default_workers()


def downscale_flow(flow: np.ndarray, width: int = 16) -> np.ndarray:
    """A flow map resized (area interpolation) to ``width`` columns, height ``int(h * width / w)``."""
    import cv2

    h, w = flow.shape[:2]
    new_h = max(1, int(h * (width / w)))
    return cv2.resize(flow, (width, new_h), interpolation=cv2.INTER_AREA)


@register
class MotionAmplitude(Metric):
    """OpenS2V-Eval motion amplitude (``eval/get_motionscore.py``, ``motion_fb``): |mean signed flow|.

    Every frame, grey by ``COLOR_BGR2GRAY`` on the RGB frame (the reference's conversion), Farneback flow
    between consecutive frames, each map area-resized to width 16; the maps are averaged over pairs and
    the value is the absolute value of the mean over all cells and both components.
    """

    name = "motion_amplitude"
    process_parallel = True  # OpenCV only
    family = "motion"
    description = "Farneback flow between consecutive frames, maps resized to width 16, |mean signed flow|"

    def __init__(self, n_frames: int | None = None):
        self.n_frames = n_frames  # None: every frame (the reference); else N frames at linspace
        self.workers = 1

    def load(self, ctx: MetricContext) -> None:
        self.workers = _workers(ctx)

    def options(self) -> dict:
        return {"n_frames": self.n_frames}

    def frame_indices(self, n_frames: int) -> list[int]:
        if self.n_frames is None:
            return list(range(n_frames))
        from ipvgkit.media import sample_indices

        return sorted(set(sample_indices(n_frames, self.n_frames)))

    def compute(self, sample: VideoSample) -> MetricResult:
        idx = self.frame_indices(sample.n_frames)
        if len(idx) < 2:
            return MetricResult(None, {"pairs": 0}, "needs at least 2 frames")
        pairs = list(zip(idx[:-1], idx[1:], strict=True))
        small = [downscale_flow(f) for f in pair_flows(sample, pairs, self.workers)]
        mean_map = np.mean(np.stack(small), axis=0)
        value = abs(float(np.mean(mean_map)))
        mean_mag = float(np.mean([np.mean(np.linalg.norm(s, axis=-1)) for s in small]))
        extra = {"pairs": len(pairs), "mean_magnitude": mean_mag, "flow": "opencv-farneback"}
        return MetricResult(value, extra)


def dynamic_step(fps: float) -> int:
    """Frame step that gives ~8 fps (VBench: ``round(fps / 8)``, at least 1)."""
    return max(1, int(round(fps / 8.0))) if fps and fps > 0 else 1


def top5_mean_magnitude(flow: np.ndarray) -> float:
    """VBench's ``get_score``: mean of the ``int(h*w*0.05)`` largest flow magnitudes, in float32 as there.

    ``h, w`` are the flow map's (padded) size; at least one value is kept (VBench's mean of an empty
    list, for maps under 20 pixels, would be NaN).
    """
    u, v = flow[..., 0].astype(np.float32), flow[..., 1].astype(np.float32)
    flat = np.sqrt(np.square(u) + np.square(v)).ravel()
    k = max(1, int(flow.shape[0] * flow.shape[1] * 0.05))
    top = np.partition(flat, flat.size - k)[flat.size - k :]  # the k largest (the same set as a full sort)
    return float(np.mean(np.sort(top)[::-1]))


@register
class DynamicDegree(Metric):
    """VBench dynamic degree (``vbench/dynamic_degree.py``): 1.0 when the video moves, else 0.0.

    Frames every ``max(1, round(fps/8))``; n = their count. Each consecutive pair is padded to a multiple
    of 8 (RAFT's sintel ``InputPadder``, edge replicate) and its flow computed (RAFT-things, 20 updates,
    when torchvision and the ``C_T_V1`` weights are there; else OpenCV Farneback, a recorded
    substitution); pair score = mean of the top ``int(h*w*0.05)`` magnitudes of the padded flow; a pair
    is dynamic above ``6 * min(H, W) / 256`` (unpadded size); the video is dynamic when at least
    ``round(4 * n / 16)`` pairs are. A video with one sampled frame scores 0 (no pair moves).
    """

    name = "dynamic_degree"
    recorded_keys = ("flow", "flow_substitution")
    family = "motion"
    description = (
        "VBench dynamic degree (RAFT-things or recorded OpenCV substitute; 1.0 dynamic / 0.0 static)"
    )

    def __init__(self, fps: float | None = None, flow: str = "auto"):
        if flow not in FLOW_CHOICES:
            raise ValueError(f"flow must be one of {', '.join(FLOW_CHOICES)}, got {flow!r}")
        self.fps = fps  # override the video's fps (tests / odd containers)
        self.flow = flow
        self.workers = 1
        self.algorithm = "opencv-farneback"
        self.substitution: str | None = None
        self.raft: Any = None

    @property
    def process_parallel(self) -> bool:  # type: ignore[override]
        """OpenCV flow gains from video chunks in processes; RAFT (torch, one model per process) does not."""
        from ipvgkit.metrics.flow import torchvision_problem

        return self.flow == "opencv-farneback" or torchvision_problem() is not None

    def load(self, ctx: MetricContext) -> None:
        self.workers = _workers(ctx)
        self.algorithm, self.substitution = resolve_flow(self.flow, ctx.models_dir)
        self.raft = raft_model(ctx.models_dir, ctx.device) if self.algorithm == "raft-things" else None

    def options(self) -> dict:
        return {"fps": self.fps, "flow": self.flow}

    def resolved_options(self, models_dir: Any) -> dict:
        if self.flow != "auto":
            return self.options()
        return {**self.options(), "flow": resolve_flow(self.flow, models_dir)[0]}

    def model_files(self) -> list[ModelFile]:
        return [RAFT_LARGE] if self.flow == "raft-things" else []

    def _indices(self, n_frames: int, fps: float) -> list[int]:
        return list(range(0, n_frames, dynamic_step(fps)))

    def frame_indices(self, n_frames: int) -> list[int]:
        # The step depends on fps; the scorer calls frame_indices_for(sample-info) when it can.
        return self._indices(n_frames, self.fps or 8.0)

    def frame_indices_for(self, n_frames: int, fps: float) -> list[int]:
        """The frames read from a video with ``n_frames`` frames at ``fps``."""
        return self._indices(n_frames, self.fps or fps)

    def flow_record(self) -> dict:
        """What every row records about the flow that ran (and why RAFT was substituted, if it was)."""
        rec: dict[str, Any] = {"flow": self.algorithm}
        if self.substitution:
            rec["flow_substitution"] = self.substitution
        return rec

    def compute(self, sample: VideoSample) -> MetricResult:
        idx = self.frame_indices_for(sample.n_frames, float(sample.info.fps))
        h, w = int(sample.info.height), int(sample.info.width)
        thres = 6.0 * (min(h, w) / 256.0)
        need = int(round(4 * (len(idx) / 16.0)))
        step = dynamic_step(self.fps or float(sample.info.fps))
        base = {"threshold": thres, "step": step, "pairs_needed": need, **self.flow_record()}
        if len(idx) < 2:
            return MetricResult(0.0, {**base, "pairs": 0, "pairs_dynamic": 0, "note": "one sampled frame"})
        pad = sintel_pad(h, w)
        pairs = list(zip(idx[:-1], idx[1:], strict=True))
        flows = pair_flows(sample, pairs, self.workers, pad=pad, raft=self.raft)
        scores = [top5_mean_magnitude(f) for f in flows]
        n_dyn = int(sum(s > thres for s in scores))
        extra = {
            **base,
            "pairs": len(pairs),
            "pairs_dynamic": n_dyn,
            "pad": list(pad) if pad != NO_PAD else None,
            "max_pair_score": max(scores),
        }
        return MetricResult(1.0 if n_dyn >= need else 0.0, extra)
