"""clipscore and aesthetic on tiny real CLIP models, vs reference computations written here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ipvgkit.data.cases import Case
from ipvgkit.media import encode_video, probe_video, read_video
from ipvgkit.metrics import MetricContext, VideoSample, get_metric
from ipvgkit.metrics.clip import clipscore_indices
from tests.conftest import moving_frames
from tests.support.tiny_models import make_tiny_aesthetic, make_tiny_clip

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    make_tiny_clip(root / "clip-vit-base-patch32", seed=0)
    make_tiny_clip(root / "clip-vit-large-patch14", seed=1)
    make_tiny_aesthetic(root / "sac+logos+ava1-l14-linearMSE.pth")
    return root


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    frames = moving_frames(t=20, h=48, w=64, seed=3)
    frames[10:, :, :, 0] = 255 - frames[10:, :, :, 0]  # a colour change halfway
    return encode_video(frames, tmp_path_factory.mktemp("v") / "v.mp4", fps=8, crf=12)


def _sample(path: Path, prompt: str, metric) -> VideoSample:
    case = Case(case_id="c", track=1, ref_images=[], prompt=prompt, output_name="v.mp4")
    info = probe_video(path, count_frames=True)
    return VideoSample(case, path, info, metric.frames_for(case, info.n_frames, info.fps))


def _ref_embeddings(folder: Path, frames: np.ndarray, texts: list[str] | None = None):
    """Image (and text) embeddings straight from the model's towers, normalised in numpy."""
    from transformers import CLIPImageProcessorPil, CLIPModel, CLIPTokenizer

    model = CLIPModel.from_pretrained(str(folder)).eval()
    proc = CLIPImageProcessorPil.from_pretrained(str(folder))
    with torch.no_grad():
        pix = proc(images=list(frames), return_tensors="pt")["pixel_values"]
        img = model.visual_projection(model.vision_model(pixel_values=pix).pooler_output).numpy()
        txt = None
        if texts is not None:
            tok = CLIPTokenizer.from_pretrained(str(folder))(
                texts, padding=True, truncation=True, max_length=77, return_tensors="pt"
            )
            txt = model.text_projection(model.text_model(**tok).pooler_output).numpy()
    norm = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    return norm(img.astype(np.float64)), None if txt is None else norm(txt.astype(np.float64))


def test_clipscore_sampling_is_int_i_n_over_16():
    assert clipscore_indices(32) == [2 * i for i in range(16)]
    assert clipscore_indices(20) == [int(i * 20 / 16) for i in range(16)]
    assert clipscore_indices(4) == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]


def _reference_clipscore(folder: Path, frames: np.ndarray, prompt: str) -> float:
    """ConsisID eval/get_clipscore.py: CLIPProcessor(text, images, padding, truncation) -> model(**inputs)
    -> logits_per_image.mean() (the model's own logit scale)."""
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(str(folder)).eval()
    processor = CLIPProcessor.from_pretrained(str(folder))
    inputs = processor(text=prompt, images=list(frames), return_tensors="pt", padding=True, truncation=True)
    with torch.no_grad():
        return float(model(**inputs).logits_per_image.mean())


@pytest.mark.parametrize("bgr", [False, True])
def test_clipscore_matches_reference(models, video, bgr):
    prompt = "a cat walks along a road"
    m = get_metric("clipscore")
    m.load(MetricContext(models_dir=models, options={"bgr_quirk": bgr}))
    r = m.compute(_sample(video, prompt, m))
    frames = read_video(video)[[int(i * 20 / 16) for i in range(16)]]
    if bgr:
        frames = frames[..., ::-1]
    folder = models / "clip-vit-base-patch32"
    img, txt = _ref_embeddings(folder, frames, [prompt])
    scale = float(np.exp(2.6592))  # the tiny model's logit scale: not the released weights' 100
    assert r.value == pytest.approx(float(np.mean(scale * img @ txt[0])), abs=1e-4)
    assert r.value == pytest.approx(_reference_clipscore(folder, frames, prompt), abs=1e-4)
    assert r.extra["frames_scored"] == 16
    assert r.extra["logit_scale"] == pytest.approx(scale, rel=1e-5)
    assert (
        r.extra["image_processor"] == "CLIPImageProcessorPil"
    )  # what transformers picks without torchvision


def test_clipscore_uses_the_models_own_logit_scale(tmp_path, video):
    frames = read_video(video)[[int(i * 20 / 16) for i in range(16)]]
    values = {}
    for name, log_scale in (("hundred", float(np.log(100.0))), ("other", 3.0)):
        make_tiny_clip(tmp_path / name / "clip-vit-base-patch32", seed=0, logit_scale=log_scale)
        m = get_metric("clipscore")
        m.load(MetricContext(models_dir=tmp_path / name))
        values[name] = m.compute(_sample(video, "a red car", m)).value
        ref = _reference_clipscore(tmp_path / name / "clip-vit-base-patch32", frames, "a red car")
        assert values[name] == pytest.approx(ref, abs=1e-4)
    # same weights, only the scale differs: the ratio of the scores is the ratio of the scales
    assert values["other"] / values["hundred"] == pytest.approx(np.exp(3.0) / 100.0, rel=1e-4)


def test_clipscore_bgr_quirk_changes_the_number(models, video):
    vals = []
    for bgr in (False, True):
        m = get_metric("clipscore", bgr_quirk=bgr)
        m.load(MetricContext(models_dir=models))
        vals.append(m.compute(_sample(video, "a dog", m)).value)
    assert vals[0] != pytest.approx(vals[1], abs=1e-6)


def test_clipscore_truncates_long_prompts_to_77_tokens(models, video):
    m = get_metric("clipscore")
    m.load(MetricContext(models_dir=models))
    long = "walk " * 60  # 5 tokens per word with this character-level vocabulary: far over 77
    r_long = m.compute(_sample(video, long, m))
    r_cut = m.compute(_sample(video, long + " and then a completely different ending", m))
    assert r_long.value == pytest.approx(r_cut.value, abs=1e-9)  # the tail is cut off


def test_clipscore_batches_across_videos(models, video, tmp_path):
    other = encode_video(moving_frames(t=9, h=48, w=64, seed=5), tmp_path / "o.mp4", fps=8)
    m = get_metric("clipscore")
    m.load(MetricContext(models_dir=models, batch_size=5))
    samples = [_sample(video, "a red car", m), _sample(other, "a blue sky", m)]
    batched = m.compute_batch(samples)
    single = [m.compute(_sample(video, "a red car", m)), m.compute(_sample(other, "a blue sky", m))]
    for a, b in zip(batched, single, strict=True):
        assert a.value == pytest.approx(b.value, abs=1e-4)


def test_aesthetic_matches_reference(models, video):
    m = get_metric("aesthetic")
    m.load(MetricContext(models_dir=models))
    r = m.compute(_sample(video, "", m))
    frames = read_video(video)[[int(x) for x in np.linspace(0, 19, 32)]]
    img, _ = _ref_embeddings(models / "clip-vit-large-patch14", frames)
    sd = torch.load(models / "sac+logos+ava1-l14-linearMSE.pth", weights_only=True)
    x = img
    for i in (0, 2, 4, 6, 7):  # the LAION MLP: linear layers with no activation between them
        x = x @ sd[f"layers.{i}.weight"].double().numpy().T + sd[f"layers.{i}.bias"].double().numpy()
    assert r.value == pytest.approx(float(x[:, 0].mean()), abs=1e-5)
    assert r.extra["frames_scored"] == 32
