"""subject_consistency on a tiny real DINO-style ViT, vs a numpy reference of VBench's rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ipvgkit.data.cases import Case
from ipvgkit.media import encode_video, probe_video, read_video
from ipvgkit.metrics import MetricContext, VideoSample, get_metric
from tests.conftest import moving_frames
from tests.metrics.tiny_models import make_tiny_dino


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    make_tiny_dino(root / "dino-vitb16")
    return root


def _sample(path: Path, metric) -> VideoSample:
    case = Case(case_id="c", track=1, ref_images=[], prompt="", output_name="v.mp4")
    info = probe_video(path, count_frames=True)
    return VideoSample(case, path, info, metric.frames_for(case, info.n_frames, info.fps))


def np_bilinear(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Bilinear resize with half-pixel centres and no antialias (torch align_corners=False), float64."""

    def axis(n_in: int, n_out: int):
        src = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
        return i0, np.minimum(i0 + 1, n_in - 1), src - i0

    y0, y1, fy = axis(img.shape[0], out_h)
    x0, x1, fx = axis(img.shape[1], out_w)
    img = img.astype(np.float64)
    top = img[y0][:, x0] * (1 - fx)[None, :, None] + img[y0][:, x1] * fx[None, :, None]
    bot = img[y1][:, x0] * (1 - fx)[None, :, None] + img[y1][:, x1] * fx[None, :, None]
    return top * (1 - fy)[:, None, None] + bot * fy[:, None, None]


def reference_embeddings(folder: Path, frames: np.ndarray) -> np.ndarray:
    """VBench's steps written out: short side to 224 (long side truncated), bilinear without antialias,
    rounded to uint8, /255, ImageNet mean/std; DINO's position-embedding interpolation (scale factor
    (n + 0.1) / sqrt(N), bicubic); encoder; final norm; CLS; L2-normalised."""
    import math

    import transformers

    h, w = frames.shape[1:3]
    out_h, out_w = (224, int(224 * w / h)) if h <= w else (int(224 * h / w), 224)
    x = np.stack([np.round(np_bilinear(f, out_h, out_w)) for f in frames]) / 255.0
    x = (x - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    pix = torch.from_numpy(x.transpose(0, 3, 1, 2)).float()
    model = transformers.ViTModel.from_pretrained(str(folder), add_pooling_layer=False).eval()
    emb = model.embeddings
    with torch.no_grad():
        tokens = emb.patch_embeddings.projection(pix).flatten(2).transpose(1, 2)
        tokens = torch.cat([emb.cls_token.expand(len(pix), -1, -1), tokens], dim=1)
        pos = emb.position_embeddings
        side, dim, p = int(math.sqrt(pos.shape[1] - 1)), pos.shape[-1], emb.patch_size
        grid = pos[:, 1:].reshape(1, side, side, dim).permute(0, 3, 1, 2)
        grid = torch.nn.functional.interpolate(
            grid, scale_factor=((out_h // p + 0.1) / side, (out_w // p + 0.1) / side), mode="bicubic"
        )
        pos = torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, -1, dim)], dim=1)
        hidden = tokens + pos
        for layer in model.layers:
            hidden = layer(hidden, None)
            hidden = hidden[0] if isinstance(hidden, tuple) else hidden
        e = model.layernorm(hidden)[:, 0].numpy().astype(np.float64)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def reference(folder: Path, frames: np.ndarray) -> tuple[float, int]:
    """(video value, frames compared) by VBench's rule on the reference embeddings."""
    e = reference_embeddings(folder, frames)
    sims = [(max(0.0, e[i - 1] @ e[i]) + max(0.0, e[0] @ e[i])) / 2 for i in range(1, len(e))]
    return float(np.mean(sims)), len(sims)


def test_matches_reference(models, tmp_path):
    frames = moving_frames(t=10, h=40, w=64, seed=2)  # not square: short side 40 -> 224, long 358
    frames[5:] = 255 - frames[5:]  # the subject changes halfway
    path = encode_video(frames, tmp_path / "v.mp4", fps=8, crf=12)
    m = get_metric("subject_consistency")
    m.load(MetricContext(models_dir=models, batch_size=4))
    r = m.compute(_sample(path, m))
    value, compared = reference(models / "dino-vitb16", read_video(path))
    # 1e-6: transformers' own position interpolation (size=n instead of DINO's scale factor) is 1e-5 off
    assert r.value == pytest.approx(value, abs=1e-6)
    assert r.extra["frames_scored"] == 10 and r.extra["frames_compared"] == compared == 9


def test_preprocessing_keeps_the_aspect_ratio():
    from ipvgkit.metrics.consistency import resized_size, vbench_preprocess

    assert resized_size(480, 832) == (224, 388) and resized_size(832, 480) == (388, 224)
    frames = moving_frames(t=2, h=40, w=64, seed=1)
    x = vbench_preprocess(frames).numpy()
    ref = np.stack([np.round(np_bilinear(f, 224, 358)) for f in frames]) / 255.0
    ref = ((ref - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])).transpose(0, 3, 1, 2)
    assert x.shape == (2, 3, 224, 358)
    # in uint8 levels: the same, except where float32 vs float64 puts a value on the other side of .5
    levels = np.abs(x - ref) * np.array([0.229, 0.224, 0.225])[None, :, None, None] * 255
    assert levels.max() < 1 + 1e-3 and np.mean(levels > 1e-3) < 0.005


def test_run_value_is_frame_weighted(models, tmp_path):
    """Two videos of 4 and 12 frames: VBench divides the sum of per-frame values by all frames compared."""
    m = get_metric("subject_consistency")
    m.load(MetricContext(models_dir=models))
    results, refs = [], []
    for t, seed in ((4, 3), (12, 4)):
        frames = moving_frames(t=t, h=40, w=48, seed=seed)
        frames[t // 2 :] = 255 - frames[t // 2 :]
        path = encode_video(frames, tmp_path / f"v{t}.mp4", fps=8, crf=12)
        results.append(m.compute(_sample(path, m)))
        refs.append(reference(models / "dino-vitb16", read_video(path)))
    expected = sum(v * n for v, n in refs) / sum(n for _, n in refs)
    per_video_mean = np.mean([v for v, _ in refs])
    assert m.run_value(results) == pytest.approx(expected, abs=1e-6)
    assert abs(expected - per_video_mean) > 1e-3  # the weighting moves the number
    assert m.run_summary(results)["aggregation"] == "frame_weighted"


def test_static_video_is_fully_consistent(models, tmp_path):
    frames = np.repeat(moving_frames(t=1, h=40, w=40)[:1], 6, axis=0)
    path = encode_video(frames, tmp_path / "s.mp4", fps=8, crf=12)
    m = get_metric("subject_consistency")
    m.load(MetricContext(models_dir=models))
    assert m.compute(_sample(path, m)).value == pytest.approx(1.0, abs=1e-5)
