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
from tests.support.tiny_models import make_tiny_dino


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    make_tiny_dino(root / "dino-vitb16")
    return root


def _sample(path: Path, metric) -> VideoSample:
    case = Case(case_id="c", track=1, ref_images=[], prompt="", output_name="v.mp4")
    info = probe_video(path, count_frames=True)
    return VideoSample(case, path, info, metric.frames_for(case, info.n_frames, info.fps))


def reference(folder: Path, frames: np.ndarray) -> float:
    import transformers

    model = transformers.ViTModel.from_pretrained(str(folder), add_pooling_layer=False).eval()
    proc = getattr(transformers, "ViTImageProcessorPil", None) or transformers.ViTImageProcessor
    pix = proc.from_pretrained(str(folder))(images=list(frames), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        e = model(pixel_values=pix).last_hidden_state[:, 0].numpy().astype(np.float64)
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    sims = [(max(0.0, e[i - 1] @ e[i]) + max(0.0, e[0] @ e[i])) / 2 for i in range(1, len(e))]
    return float(np.mean(sims))


def test_matches_reference(models, tmp_path):
    frames = moving_frames(t=10, h=40, w=40, seed=2)
    frames[5:] = 255 - frames[5:]  # the subject changes halfway
    path = encode_video(frames, tmp_path / "v.mp4", fps=8, crf=12)
    m = get_metric("subject_consistency")
    m.load(MetricContext(models_dir=models, batch_size=4))
    r = m.compute(_sample(path, m))
    assert r.value == pytest.approx(reference(models / "dino-vitb16", read_video(path)), abs=1e-5)
    assert r.extra["frames_scored"] == 10


def test_static_video_is_fully_consistent(models, tmp_path):
    frames = np.repeat(moving_frames(t=1, h=40, w=40)[:1], 6, axis=0)
    path = encode_video(frames, tmp_path / "s.mp4", fps=8, crf=12)
    m = get_metric("subject_consistency")
    m.load(MetricContext(models_dir=models))
    assert m.compute(_sample(path, m)).value == pytest.approx(1.0, abs=1e-5)
