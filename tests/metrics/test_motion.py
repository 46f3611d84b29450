"""motion_amplitude and dynamic_degree on synthetic videos with known motion, vs a direct cv2 computation."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from ipvgkit.data.cases import Case
from ipvgkit.media import encode_video, probe_video, read_video
from ipvgkit.metrics import VideoSample, get_metric
from ipvgkit.metrics.motion import FARNEBACK, dynamic_step


def texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth random texture (blurred noise), so optical flow has something to track."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, size=(h, w, 3)).astype(np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 2.0)


def shifting(t: int, h: int, w: int, dx: int) -> np.ndarray:
    """A texture moving right by ``dx`` pixels per frame (rolled, so the image stays full)."""
    base = texture(h, w + dx * t)
    return np.stack([base[:, i * dx : i * dx + w] for i in range(t)][::-1])


def _case() -> Case:
    return Case(case_id="c", track=1, ref_images=[], prompt="p", output_name="v.mp4")


def _sample(path: Path, metrics) -> VideoSample:
    info = probe_video(path, count_frames=True)
    needed = set()
    for m in metrics:
        needed.update(m.frames_for(_case(), info.n_frames, info.fps))
    return VideoSample(_case(), path, info, needed)


def ref_motion_amplitude(frames: np.ndarray) -> float:
    """Independent reference: Farneback on every consecutive pair, maps to width 16, |mean|."""
    grays = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    maps = []
    for a, b in zip(grays[:-1], grays[1:], strict=True):
        flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        maps.append(
            cv2.resize(flow, (16, int(flow.shape[0] * 16 / flow.shape[1])), interpolation=cv2.INTER_AREA)
        )
    return abs(float(np.mean(np.mean(np.array(maps), axis=0))))


def ref_dynamic(frames: np.ndarray, fps: float) -> tuple[float, int]:
    """Independent reference of the VBench rule on our Farneback flow: (value, dynamic pairs)."""
    step = max(1, round(fps / 8))
    sub = frames[::step]
    h, w = sub.shape[1:3]
    thres = 6.0 * min(h, w) / 256.0
    count = 0
    for a, b in zip(sub[:-1], sub[1:], strict=True):
        flow = cv2.calcOpticalFlowFarneback(
            cv2.cvtColor(a, cv2.COLOR_RGB2GRAY),
            cv2.cvtColor(b, cv2.COLOR_RGB2GRAY),
            None,
            0.5,
            3,
            15,
            3,
            5,
            1.2,
            0,
        )
        rad = np.sqrt(flow[..., 0].astype(np.float64) ** 2 + flow[..., 1].astype(np.float64) ** 2).ravel()
        top = np.sort(rad)[::-1][: max(1, int(rad.size * 0.05))]
        count += int(top.mean() > thres)
    return (1.0 if count >= round(4 * len(sub) / 16) else 0.0), count


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("motion")
    still = np.repeat(texture(64, 96)[None], 12, axis=0)
    return {
        "static": encode_video(still, d / "static.mp4", fps=8, crf=10),
        "moving": encode_video(shifting(12, 64, 96, 3), d / "moving.mp4", fps=8, crf=10),
        "moving16": encode_video(shifting(17, 64, 96, 2), d / "moving16.mp4", fps=16, crf=10),
    }


def test_static_video_has_no_motion(videos):
    ma, dd = get_metric("motion_amplitude"), get_metric("dynamic_degree")
    s = _sample(videos["static"], [ma, dd])
    amp = ma.compute(s)
    dyn = dd.compute(s)
    assert amp.value is not None and amp.value < 0.02
    assert dyn.value == 0.0 and dyn.extra["pairs_dynamic"] == 0


def test_shifting_pattern_is_large_and_dynamic(videos):
    ma, dd = get_metric("motion_amplitude"), get_metric("dynamic_degree")
    s = _sample(videos["moving"], [ma, dd])
    amp = ma.compute(s)
    dyn = dd.compute(s)
    # the texture moves 3 px/frame to the left: mean of (dx, dy) ~ (-3 + 0) / 2
    assert amp.value > 1.0
    assert dyn.value == 1.0 and dyn.extra["pairs_dynamic"] == dyn.extra["pairs"] == 11


@pytest.mark.parametrize("name", ["static", "moving", "moving16"])
def test_matches_direct_cv2_computation(videos, name):
    frames = read_video(videos[name])
    fps = probe_video(videos[name]).fps
    ma, dd = get_metric("motion_amplitude"), get_metric("dynamic_degree")
    s = _sample(videos[name], [ma, dd])
    assert ma.compute(s).value == pytest.approx(ref_motion_amplitude(frames), abs=1e-6)
    dyn = dd.compute(s)
    value, count = ref_dynamic(frames, fps)
    assert (dyn.value, dyn.extra["pairs_dynamic"]) == (value, count)


def test_dynamic_degree_samples_about_8_fps(videos):
    dd = get_metric("dynamic_degree")
    assert dynamic_step(16.0) == 2 and dynamic_step(8.0) == 1 and dynamic_step(30.0) == 4
    assert dd.frame_indices_for(17, 16.0) == list(range(0, 17, 2))
    s = _sample(videos["moving16"], [dd])
    assert dd.compute(s).extra["pairs"] == 8


def test_flows_are_shared_between_the_two_metrics(videos):
    ma, dd = get_metric("motion_amplitude"), get_metric("dynamic_degree")
    s = _sample(videos["moving"], [ma, dd])
    ma.compute(s)
    n_flows = sum(1 for k in s.cache if k[0] == "flow")
    dd.compute(s)  # 8 fps video: the same consecutive pairs, no new flow
    assert sum(1 for k in s.cache if k[0] == "flow") == n_flows == 11
    assert s.decode_passes == 1
    assert FARNEBACK["winsize"] == 15


def test_one_frame_video_is_an_error_not_zero(tmp_path):
    path = encode_video(texture(32, 32)[None], tmp_path / "one.mp4", fps=8)
    ma = get_metric("motion_amplitude")
    r = ma.compute(_sample(path, [ma]))
    assert r.value is None and "2 frames" in r.error


def test_flow_threads_give_the_same_numbers(videos):
    from ipvgkit.metrics import MetricContext

    values = []
    for workers in (1, 3):
        ma, dd = get_metric("motion_amplitude"), get_metric("dynamic_degree")
        for m in (ma, dd):
            m.load(MetricContext(options={"workers": workers}))
        assert ma.workers == workers
        s = _sample(videos["moving16"], [ma, dd])
        values.append((ma.compute(s).value, dd.compute(s).extra["max_pair_score"]))
    assert values[0] == values[1]
