"""``timeline_contrast`` (Track 2, ipvgkit's own; needs no model file; see docs/metrics.md).

Does the video change where its timeline says one event ends and the next begins? It does **not** look
at the event texts (that is ``timeline_alignment``, which needs CLIP): it is the weaker, download-free
signal of the offline preset. For a case with events e = 1..E and windows W_e (frames ``[lo, hi)``, the
same windows as ``timeline_alignment``), with up to ``frames_per_event`` frames sampled at linspace in
each window:

    f(i)      = the frame's luma (0.299 R + 0.587 G + 0.114 B) resized to 32 x 32 (INTER_AREA), / 255
    m_e       = mean of f over the sampled frames of W_e
    s_e       = mean over those frames of rms(f(i) - m_e)            (spread inside the window)
    between_b = rms(m_e - m_e')                                      (e' the next event with frames)
    within_b  = (s_e + s_e') / 2
    c_b       = between_b / (between_b + within_b)      (0 when both are 0: a still video)
    value     = mean over the boundaries b of c_b        in [0, 1]

rms(x) = sqrt(mean(x^2)). 0.5: the picture changes across a boundary as much as it varies inside a
window; near 1: stable inside each window, different across boundaries; near 0: nothing changes at the
boundaries. Events whose window holds no frame are left out (and counted); fewer than 2 events with
frames: no value.
"""

from __future__ import annotations

import numpy as np

from ipvgkit.data.cases import Case
from ipvgkit.metrics.base import Metric, MetricResult, VideoSample
from ipvgkit.metrics.registry import register
from ipvgkit.metrics.timeline import event_windows

SIDE = 32


def frame_features(frames: np.ndarray) -> np.ndarray:
    """(N, SIDE*SIDE) luma thumbnails in [0, 1] of RGB uint8 frames."""
    import cv2

    rgb = frames.astype(np.float32)
    luma = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    small = [cv2.resize(f, (SIDE, SIDE), interpolation=cv2.INTER_AREA) for f in luma]
    return np.stack(small).reshape(len(small), -1) / 255.0


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x))))


def boundary_contrasts(windows: list[np.ndarray]) -> tuple[list[float], list[float], list[float]]:
    """(c_b, between_b, within_b) for consecutive windows of features (each ``(n_e, D)``, n_e >= 1)."""
    means = [w.mean(axis=0) for w in windows]
    spreads = [float(np.mean([_rms(f - m) for f in w])) for w, m in zip(windows, means, strict=True)]
    cs, betweens, withins = [], [], []
    for e in range(len(windows) - 1):
        between = _rms(means[e] - means[e + 1])
        within = (spreads[e] + spreads[e + 1]) / 2
        cs.append(between / (between + within) if between + within > 0 else 0.0)
        betweens.append(between)
        withins.append(within)
    return cs, betweens, withins


@register
class TimelineContrast(Metric):
    """Change of the picture across the timeline's event boundaries vs inside the windows (module doc)."""

    name = "timeline_contrast"
    family = "timeline"
    process_parallel = True
    description = "Track 2 without weights: picture change across event boundaries vs inside the windows"

    def __init__(self, frames_per_event: int = 8):
        self.frames_per_event = frames_per_event

    def options(self) -> dict:
        return {"frames_per_event": self.frames_per_event}

    def frame_indices(self, n_frames: int) -> list[int]:
        return []  # the frames depend on the case's timeline: see frames_for()

    def frames_for(self, case: Case, n_frames: int, fps: float) -> list[int]:
        return sorted({i for w in event_windows(case, n_frames, fps, self.frames_per_event) for i in w})

    def compute(self, sample: VideoSample) -> MetricResult:
        case = sample.case
        if not case.timeline:
            return MetricResult.not_applicable("case has no timeline")
        wins = event_windows(case, sample.n_frames, float(sample.info.fps), self.frames_per_event)
        keep = [k for k, w in enumerate(wins) if w]
        extra: dict = {"events": len(wins), "events_without_frames": len(wins) - len(keep)}
        if len(keep) < 2:
            return MetricResult(None, extra, "needs at least 2 timeline events with frames inside the video")
        feats = [frame_features(sample.frames(wins[k])) for k in keep]
        cs, betweens, withins = boundary_contrasts(feats)
        after: list[float | None] = [None] * len(wins)  # per event: contrast to the next event with frames
        for j, k in enumerate(keep[:-1]):
            after[k] = cs[j]
        extra.update(boundaries=after, between=betweens, within=withins)
        return MetricResult(float(np.mean(cs)), extra)
