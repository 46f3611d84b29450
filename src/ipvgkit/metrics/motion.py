"""Motion metrics from OpenCV Farneback optical flow: ``motion_amplitude`` and ``dynamic_degree``.

Both use the same Farneback settings on grayscale frames, so a flow between two frames is computed
once per video and shared through ``sample.cache`` (key ``("flow", i, j)``).
"""

from __future__ import annotations

import numpy as np

from ipvgkit.metrics.base import Metric, MetricContext, MetricResult, VideoSample
from ipvgkit.metrics.registry import register
from ipvgkit.procs import available_cpus

# cv2.calcOpticalFlowFarneback(prev, next, None, pyr_scale, levels, winsize, iterations, poly_n, poly_sigma, flags)
FARNEBACK = dict(pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0)


def gray(frame: np.ndarray) -> np.ndarray:
    """RGB uint8 frame -> 8-bit grayscale (cv2's weights)."""
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)


def farneback(prev_gray: np.ndarray, next_gray: np.ndarray) -> np.ndarray:
    """Dense flow ``(H, W, 2)`` float32 from ``prev_gray`` to ``next_gray``."""
    import cv2

    return cv2.calcOpticalFlowFarneback(prev_gray, next_gray, None, **FARNEBACK)


def default_workers() -> int:
    """Threads for optical flow (OpenCV releases the GIL): the CPU count, at most 8."""
    return min(8, available_cpus())


def pair_flows(sample: VideoSample, pairs: list[tuple[int, int]], workers: int = 1) -> list[np.ndarray]:
    """Flows for ``(i, j)`` frame pairs, computed once per video and cached in ``sample.cache``.

    With ``workers > 1`` the pairs are spread over threads; each flow is the same computation, so the
    numbers do not depend on ``workers``.
    """
    todo = [p for p in pairs if ("flow", *p) not in sample.cache]
    if todo:
        idx = sorted({i for p in todo for i in p})
        frames = sample.frames(idx)
        grays = {i: gray(f) for i, f in zip(idx, frames, strict=True)}
        if workers > 1 and len(todo) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=min(workers, len(todo))) as pool:
                flows = list(pool.map(lambda p: farneback(grays[p[0]], grays[p[1]]), todo))
        else:
            flows = [farneback(grays[i], grays[j]) for i, j in todo]
        for p, f in zip(todo, flows, strict=True):
            sample.cache[("flow", *p)] = f
    return [sample.cache[("flow", *p)] for p in pairs]


def _workers(ctx: MetricContext) -> int:
    w = int(ctx.options.get("workers") or 0)
    return w if w > 0 else default_workers()


def downscale_flow(flow: np.ndarray, width: int = 16) -> np.ndarray:
    """A flow map resized (area interpolation) to ``width`` columns, height in proportion."""
    import cv2

    h, w = flow.shape[:2]
    new_h = max(1, int(h * (width / w)))
    return cv2.resize(flow, (width, new_h), interpolation=cv2.INTER_AREA)


@register
class MotionAmplitude(Metric):
    """OpenS2V-style motion amplitude: |mean of the signed flow|, flows downscaled to width 16.

    Flow between every pair of consecutive frames; each map is area-resized to width 16; the maps are
    averaged, and the value is the absolute value of the mean over all cells and both components.
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
        return MetricResult(value, {"pairs": len(pairs), "mean_magnitude": mean_mag})


def dynamic_step(fps: float) -> int:
    """Frame step that gives ~8 fps (VBench: ``round(fps / 8)``, at least 1)."""
    return max(1, int(round(fps / 8.0))) if fps and fps > 0 else 1


def top5_mean_magnitude(flow: np.ndarray) -> float:
    """Mean of the top 5% flow magnitudes of one flow map (VBench's per-pair score)."""
    mag = np.sqrt(np.square(flow[..., 0], dtype=np.float64) + np.square(flow[..., 1], dtype=np.float64))
    flat = mag.ravel()
    k = max(1, int(flat.size * 0.05))
    top = np.partition(flat, flat.size - k)[flat.size - k :]  # the k largest (same set as a full sort)
    return float(np.mean(np.sort(top)[::-1]))


@register
class DynamicDegree(Metric):
    """VBench-like dynamic degree with OpenCV Farneback flow instead of RAFT (no RAFT weights offline).

    Frames every ``round(fps/8)`` (about 8 fps); a consecutive pair is dynamic when the mean of its top
    5% flow magnitudes exceeds ``6 * min(H, W) / 256``; the video is dynamic (1.0, else 0.0) when at least
    ``round(4 * n / 16)`` pairs are, n = number of sampled frames.
    """

    name = "dynamic_degree"
    process_parallel = True  # OpenCV only
    family = "motion"
    description = "VBench-like dynamic degree (Farneback flow at ~8 fps; 1.0 dynamic / 0.0 static)"

    def __init__(self, fps: float | None = None):
        self.fps = fps  # override the video's fps (tests / odd containers)
        self.workers = 1

    def load(self, ctx: MetricContext) -> None:
        self.workers = _workers(ctx)

    def options(self) -> dict:
        return {"fps": self.fps}

    def _indices(self, n_frames: int, fps: float) -> list[int]:
        return list(range(0, n_frames, dynamic_step(fps)))

    def frame_indices(self, n_frames: int) -> list[int]:
        # The step depends on fps; the scorer calls frame_indices_for(sample-info) when it can.
        return self._indices(n_frames, self.fps or 8.0)

    def frame_indices_for(self, n_frames: int, fps: float) -> list[int]:
        """The frames read from a video with ``n_frames`` frames at ``fps``."""
        return self._indices(n_frames, self.fps or fps)

    def compute(self, sample: VideoSample) -> MetricResult:
        idx = self.frame_indices_for(sample.n_frames, float(sample.info.fps))
        if len(idx) < 2:
            return MetricResult(None, {"pairs": 0}, "needs at least 2 frames at ~8 fps")
        h, w = int(sample.info.height), int(sample.info.width)
        thres = 6.0 * (min(h, w) / 256.0)
        need = int(round(4 * (len(idx) / 16.0)))
        pairs = list(zip(idx[:-1], idx[1:], strict=True))
        scores = [top5_mean_magnitude(f) for f in pair_flows(sample, pairs, self.workers)]
        n_dyn = int(sum(s > thres for s in scores))
        value = 1.0 if n_dyn >= need else 0.0
        extra = {
            "pairs": len(pairs),
            "pairs_dynamic": n_dyn,
            "pairs_needed": need,
            "threshold": thres,
            "step": dynamic_step(self.fps or float(sample.info.fps)),
            "max_pair_score": max(scores),
        }
        return MetricResult(value, extra)
