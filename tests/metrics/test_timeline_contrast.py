"""timeline_contrast on synthetic videos whose answer is known, and against a numpy computation."""

from __future__ import annotations

import numpy as np
import pytest

from ipvgkit.data.cases import Case, Event
from ipvgkit.media import VideoInfo
from ipvgkit.metrics import VideoSample, get_metric


def _sample(frames: np.ndarray, events: list[tuple[float, float]], units="fraction", fps=8.0) -> VideoSample:
    timeline = [Event(a, b, f"event {k}") for k, (a, b) in enumerate(events)]
    case = Case("c", 2, [], "a prompt", "c.mp4", timeline=timeline, timeline_units=units)
    n, h, w = frames.shape[:3]
    info = VideoInfo("c.mp4", "mp4", "h264", "yuv420p", w, h, fps, n, n / fps, 0)
    return VideoSample(case, "c.mp4", info, preloaded=dict(enumerate(frames)))


def test_still_within_windows_and_different_across_is_one():
    a = np.full((8, 64, 64, 3), 40, np.uint8)
    b = np.full((8, 64, 64, 3), 200, np.uint8)
    r = get_metric("timeline_contrast").compute(_sample(np.concatenate([a, b]), [(0, 0.5), (0.5, 1)]))
    assert r.value == pytest.approx(1.0)
    assert r.extra["boundaries"] == [pytest.approx(1.0), None]


def test_a_still_video_is_zero_and_no_timeline_is_not_applicable():
    still = np.full((16, 64, 64, 3), 90, np.uint8)
    m = get_metric("timeline_contrast")
    assert m.compute(_sample(still, [(0, 0.5), (0.5, 1)])).value == 0.0
    s = _sample(still, [(0, 1)])
    s.case.timeline = None
    r = m.compute(s)
    assert r.value is None and r.extra["not_applicable"]
    one = m.compute(_sample(still, [(0, 1)]))
    assert one.value is None and "at least 2" in one.error


def test_equals_an_independent_numpy_computation():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (30, 64, 64, 3), dtype=np.uint8)
    frames[10:20] //= 3  # the middle event is darker
    events = [(0.0, 1.25), (1.25, 2.5), (2.5, 3.75)]  # seconds at 8 fps: frames [0,10), [10,20), [20,30)
    m = get_metric("timeline_contrast", frames_per_event=4)
    r = m.compute(_sample(frames, events, units="seconds"))

    def feat(f):  # luma, 2x2 block mean (= INTER_AREA from 64 to 32), / 255
        y = f[..., 0] * 0.299 + f[..., 1] * 0.587 + f[..., 2] * 0.114
        return y.reshape(32, 2, 32, 2).mean(axis=(1, 3)).ravel() / 255.0

    rms = lambda x: np.sqrt(np.mean(x**2))  # noqa: E731
    wins = [[int(p) for p in np.linspace(lo, lo + 9, 4)] for lo in (0, 10, 20)]
    feats = [np.stack([feat(frames[i].astype(np.float64)) for i in w]) for w in wins]
    means = [f.mean(0) for f in feats]
    spread = [np.mean([rms(x - mu) for x in f]) for f, mu in zip(feats, means, strict=True)]
    cs = []
    for e in range(2):
        between = rms(means[e] - means[e + 1])
        cs.append(between / (between + (spread[e] + spread[e + 1]) / 2))
    assert r.value == pytest.approx(np.mean(cs), abs=1e-5)
    assert r.extra["boundaries"][:2] == [pytest.approx(c, abs=1e-5) for c in cs]
