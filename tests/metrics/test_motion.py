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


def ref_motion_amplitude(frames: np.ndarray, code: int = cv2.COLOR_BGR2GRAY) -> float:
    """Independent reference of OpenS2V-Eval's get_motionscore.py: RGB frames converted with
    COLOR_BGR2GRAY, Farneback on every consecutive pair, maps to width 16, |mean|."""
    grays = [cv2.cvtColor(f, code) for f in frames]
    maps = []
    for a, b in zip(grays[:-1], grays[1:], strict=True):
        flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        maps.append(
            cv2.resize(flow, (16, int(flow.shape[0] * 16 / flow.shape[1])), interpolation=cv2.INTER_AREA)
        )
    return abs(float(np.mean(np.mean(np.array(maps), axis=0))))


def ref_pad(img: np.ndarray) -> np.ndarray:
    """RAFT's InputPadder (sintel): pad to a multiple of 8, edge replicate, split evenly (extra at the end)."""
    h, w = img.shape[:2]
    ph, pw = (-h) % 8, (-w) % 8
    return cv2.copyMakeBorder(img, ph // 2, ph - ph // 2, pw // 2, pw - pw // 2, cv2.BORDER_REPLICATE)


def ref_pair_score(flow: np.ndarray) -> float:
    """VBench get_score: float32 magnitudes, mean of the first int(h*w*0.05) of the sorted list."""
    u, v = flow[..., 0], flow[..., 1]
    rad = np.sqrt(np.square(u) + np.square(v))
    h, w = rad.shape
    return float(np.mean(abs(np.sort(-rad.flatten()))[: int(h * w * 0.05)]))


def ref_dynamic(frames: np.ndarray, fps: float, pad: bool = True) -> tuple[float, int, float]:
    """Independent reference of VBench's rule on the Farneback substitute: (value, dynamic pairs, max score)."""
    step = max(1, round(fps / 8))
    sub = frames[::step]
    h, w = sub.shape[1:3]
    thres = 6.0 * min(h, w) / 256.0
    scores = []
    for a, b in zip(sub[:-1], sub[1:], strict=True):
        ga, gb = (cv2.cvtColor(x, cv2.COLOR_BGR2GRAY) for x in (a, b))
        if pad:
            ga, gb = ref_pad(ga), ref_pad(gb)
        flow = cv2.calcOpticalFlowFarneback(ga, gb, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        scores.append(ref_pair_score(flow))
    count = sum(s > thres for s in scores)
    return (1.0 if count >= round(4 * len(sub) / 16) else 0.0), count, max(scores, default=0.0)


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
    value, count, top = ref_dynamic(frames, fps)
    assert (dyn.value, dyn.extra["pairs_dynamic"]) == (value, count)
    assert dyn.extra["max_pair_score"] == pytest.approx(top, rel=1e-6)


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


def test_motion_amplitude_converts_rgb_with_the_bgr_code(tmp_path):
    """Saturated colour: red texture moving 3 px/frame, blue texture 1 px/frame, no green. OpenS2V's
    COLOR_BGR2GRAY on RGB weights blue by 0.299 and red by 0.114, so the blue motion dominates."""
    t, h, w = 10, 64, 96
    red, blue = shifting(t, h, w, 3)[..., 0], shifting(t, h, w, 1)[..., 2]
    frames = np.stack([red, np.zeros_like(red), blue], axis=-1)
    path = encode_video(frames, tmp_path / "sat.mp4", fps=8, crf=8)
    decoded = read_video(path)
    ma = get_metric("motion_amplitude")
    value = ma.compute(_sample(path, [ma])).value
    bgr_ref = ref_motion_amplitude(decoded, cv2.COLOR_BGR2GRAY)
    rgb_way = ref_motion_amplitude(decoded, cv2.COLOR_RGB2GRAY)
    assert value == pytest.approx(bgr_ref, abs=1e-6)
    assert abs(rgb_way - bgr_ref) > 0.1 * bgr_ref  # the conversion moves the number


def test_dynamic_degree_pads_to_a_multiple_of_8(tmp_path):
    """60 x 90 frames (not multiples of 8): padded to 64 x 96 by edge replication before the flow."""
    frames = shifting(9, 60, 90, 2)
    path = encode_video(frames, tmp_path / "odd.mp4", fps=8, crf=10)
    decoded = read_video(path)
    dd = get_metric("dynamic_degree", flow="opencv-farneback")
    r = dd.compute(_sample(path, [dd]))
    value, count, top = ref_dynamic(decoded, 8.0)
    assert r.extra["pad"] == [3, 3, 2, 2]
    assert (r.value, r.extra["pairs_dynamic"]) == (value, count)
    assert r.extra["max_pair_score"] == pytest.approx(top, rel=1e-6)
    unpadded = ref_dynamic(decoded, 8.0, pad=False)[2]
    assert abs(unpadded - top) > 1e-3  # the padding (and top 5 % of the padded map) moves the score


def test_one_sampled_frame_is_not_dynamic(tmp_path):
    path = encode_video(texture(32, 32)[None], tmp_path / "one.mp4", fps=8)
    dd = get_metric("dynamic_degree")
    r = dd.compute(_sample(path, [dd]))
    assert r.value == 0.0 and r.error is None and r.extra["pairs"] == 0


def test_flow_substitution_is_recorded(tmp_path):
    """torchvision does not import here: auto falls back to OpenCV and says why in every row."""
    from ipvgkit.errors import MissingWeightsError
    from ipvgkit.metrics import MetricContext
    from ipvgkit.metrics.flow import torchvision_problem

    ctx = MetricContext(models_dir=tmp_path / "models")
    dd = get_metric("dynamic_degree")
    dd.load(ctx)
    path = encode_video(shifting(5, 32, 48, 2), tmp_path / "v.mp4", fps=8)
    r = dd.compute(_sample(path, [dd]))
    assert r.extra["flow"] == "opencv-farneback"
    problem = torchvision_problem()
    if problem is not None:
        assert "torchvision" in r.extra["flow_substitution"]
        with pytest.raises(RuntimeError, match="torchvision"):
            get_metric("dynamic_degree", flow="raft-things").load(ctx)
    else:  # torchvision present but no weights in the empty models dir
        assert "not found" in r.extra["flow_substitution"]
        with pytest.raises(MissingWeightsError):
            get_metric("dynamic_degree", flow="raft-things").load(ctx)
    assert get_metric("dynamic_degree", flow="raft-things").model_files()[0].name == "raft-large-c-t-v1"


def test_raft_path_matches_torchvision_run_directly(tmp_path):
    """Where torchvision imports (not in this build's CPU torch): a raft_large state dict saved under the
    C_T_V1 file name is found, loaded strict, and gives the flow of torchvision's model run by hand on the
    sintel-padded frames scaled to [-1, 1]."""
    import torch

    tv_flow = pytest.importorskip("torchvision.models.optical_flow")
    from ipvgkit.metrics import MetricContext
    from ipvgkit.metrics.flow import RAFT_LARGE

    torch.manual_seed(0)
    net = tv_flow.raft_large(weights=None, progress=False).eval()
    torch.save(net.state_dict(), tmp_path / RAFT_LARGE.relpath)
    path = encode_video(shifting(3, 130, 186, 2), tmp_path / "v.mp4", fps=8, crf=10)  # >= 128: torchvision
    dd = get_metric("dynamic_degree")
    dd.load(MetricContext(models_dir=tmp_path))
    r = dd.compute(_sample(path, [dd]))
    assert r.extra["flow"] == "raft-things" and "flow_substitution" not in r.extra
    frames = read_video(path)
    padded = [ref_pad(f) for f in frames]
    scores = []
    for a, b in zip(padded[:-1], padded[1:], strict=True):
        ta, tb = (2 * (torch.from_numpy(x).permute(2, 0, 1)[None].float() / 255.0) - 1 for x in (a, b))
        with torch.no_grad():
            flow = net(ta, tb, num_flow_updates=20)[-1][0].permute(1, 2, 0).numpy()
        scores.append(ref_pair_score(flow))
    assert r.extra["max_pair_score"] == pytest.approx(max(scores), rel=1e-4)
    torch.save({"bad": torch.zeros(1)}, tmp_path / RAFT_LARGE.relpath)
    from ipvgkit.errors import InputError
    from ipvgkit.metrics.flow import RaftFlow

    with pytest.raises(InputError, match="missing key"):
        RaftFlow(tmp_path / RAFT_LARGE.relpath)
