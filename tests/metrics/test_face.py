"""Face metrics against independent computations (insightface's own detector/norm_crop, onnxruntime, torch)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import torch
from insightface.model_zoo import model_zoo
from insightface.utils import face_align
from PIL import Image
from scipy import linalg

from ipvgkit.data.cases import Case
from ipvgkit.errors import MissingWeightsError
from ipvgkit.media import encode_video, probe_video, read_frames
from ipvgkit.metrics import MetricContext, VideoSample, get_metric
from ipvgkit.metrics.face import dlib_similarity, fid_from_features, frechet_distance, linspace_indices
from tests.support.tiny_models import make_pack, save_tiny_inception, square_image, tiny_ir

N_FRAMES = 12


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    make_pack(root / "insightface" / "buffalo_l")
    net = tiny_ir(seed=5)
    (root / "curricularface").mkdir()
    torch.save(net.state_dict(), root / "curricularface" / "glint360k_curricular_face_r101_backbone.bin")
    save_tiny_inception(root / "inception" / "inception_v3_fid.pt")
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("facedata")
    frames = []
    for k in range(N_FRAMES):
        if k >= 9:
            frames.append(np.zeros((320, 320, 3), np.uint8))  # no face
        else:
            frames.append(square_image(square=32, center=(120 + 8 * k, 160 + 8 * (k % 3)), seed=k % 4))
    video = encode_video(np.stack(frames), d / "v.mp4", fps=8)
    video2 = encode_video(np.stack(frames[:9][::-1]), d / "v2.mp4", fps=8)
    refs = {}
    for name, seed in (("ref_a", 0), ("ref_b", 7)):
        refs[name] = d / f"{name}.png"
        Image.fromarray(square_image(square=32, center=(160, 152), seed=seed)).save(refs[name])
    refs["black"] = d / "black.png"
    Image.fromarray(np.zeros((200, 200, 3), np.uint8)).save(refs["black"])
    # faces found only on the padded retry, near the corner: their aligned crops reach outside the frame
    corner = [
        square_image(square=46, center=(24 + 8 * (k % 2), 24 + 8 * (k % 3)), seed=k % 4) for k in range(8)
    ]
    video_corner = encode_video(np.stack(corner), d / "corner.mp4", fps=8, crf=10)
    return {"video": video, "video2": video2, "corner": video_corner, **refs}


def _sample(video: Path, ref: Path, metrics=()) -> VideoSample:
    case = Case(case_id="c1", track=1, ref_images=[ref], prompt="a person", output_name="1.mp4")
    info = probe_video(video)
    needed = sorted({i for m in metrics for i in m.frame_indices(info.n_frames)})
    return VideoSample(case, video, info, needed=needed)


def _loaded(name: str, models: Path, **kw):
    m = get_metric(name, **kw)
    m.load(MetricContext(models_dir=models))
    return m


class Reference:
    """The independent pipeline, step by step as ConsisID's eval/get_facesim_fid.py (written here with
    insightface's SCRFD and norm_crop, OpenCV, PIL, onnxruntime and torch; none of ipvgkit's code)."""

    def __init__(self, models: Path):
        pack = models / "insightface" / "buffalo_l"
        self.det = model_zoo.get_model(str(pack / "a_detector.onnx"))
        self.det.prepare(-1, input_size=(320, 320), det_thresh=0.5)
        self.rec = ort.InferenceSession(str(pack / "b_recognizer.onnx"))
        self.cur = torch.load(models / "curricularface" / "glint360k_curricular_face_r101_backbone.bin")
        self.cur_net = tiny_ir()
        self.cur_net.load_state_dict(self.cur)
        self.cur_net.eval()
        self.inc = torch.jit.load(str(models / "inception" / "inception_v3_fid.pt"))

    def _largest(self, bgr):
        boxes, kpss = self.det.detect(bgr, input_size=(320, 320))
        if len(boxes) == 0:
            return None
        order = sorted(
            range(len(boxes)), key=lambda i: (boxes[i, 2] - boxes[i, 0]) * (boxes[i, 3] - boxes[i, 1])
        )
        return kpss[order[-1]]

    def _arc(self, bgr, kps):
        crop = face_align.norm_crop(bgr, kps, image_size=112)
        blob = ((crop[..., ::-1].astype(np.float32) - 127.5) / 127.5).transpose(2, 0, 1)[None]
        e = self.rec.run(None, {"input.1": blob})[0][0]
        return e / np.linalg.norm(e)

    def process(self, rgb: np.ndarray, gray_crop: bool = False):
        """(224 RGB crop, ArcFace embedding) or None; ``gray_crop``: cut the crop from the padded canvas
        instead (NOT the rule: used to show that the rule changes the number)."""
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        kps = self._largest(bgr)
        src = bgr
        if kps is not None:
            arc = self._arc(bgr, kps)
        else:
            h, w = bgr.shape[:2]
            top, left = int(h * 0.25), int(w * 0.25)
            padded = cv2.copyMakeBorder(bgr, top, top, left, left, cv2.BORDER_CONSTANT, value=(128, 128, 128))
            kps_pad = self._largest(padded)
            if kps_pad is None:
                return None
            arc = self._arc(padded, kps_pad)
            kps = kps_pad - np.array([left, top], np.float32)
            if gray_crop:
                src, kps = padded, kps_pad
        crop = cv2.cvtColor(face_align.norm_crop(src, kps, image_size=224), cv2.COLOR_BGR2RGB)
        return crop, arc

    def arc(self, crop, arc):
        return arc

    def curf(self, crop, arc):
        x = np.transpose(cv2.resize(crop, (112, 112)), (2, 0, 1))
        x = torch.from_numpy(np.ascontiguousarray(x))[None].float().div(255).sub(0.5).div(0.5)
        with torch.no_grad():
            e = self.cur_net(x)[0].numpy()
        return e / np.linalg.norm(e)

    def incf(self, crop, arc):
        im = Image.fromarray(crop).resize((299, 299), Image.BILINEAR)
        x = torch.from_numpy((np.asarray(im, np.float32) / 255.0).transpose(2, 0, 1).copy())[None]
        with torch.no_grad():
            return self.inc(x)[0].double().numpy()

    def per_frame(self, video: Path, ref: Path, fn, gray_crop: bool = False):
        r = fn(*self.process(np.asarray(Image.open(ref).convert("RGB"))))
        n = probe_video(video).n_frames
        idx = np.linspace(0, n - 1, 16, dtype=int)
        vals, no_face = [], 0
        for f in read_frames(video, [int(i) for i in idx]):
            got = self.process(f, gray_crop=gray_crop)
            if got is None:
                no_face += 1
            else:
                vals.append(fn(*got))
        return r, vals, no_face


@pytest.fixture(scope="module")
def reference(models) -> Reference:
    return Reference(models)


def test_linspace_indices():
    assert linspace_indices(12, 16) == [int(i) for i in np.linspace(0, 11, 16).astype(int)]
    assert linspace_indices(100, 4) == [0, 33, 66, 99]
    assert linspace_indices(0, 16) == []


def test_facesim_arc(models, data, reference):
    m = _loaded("facesim_arc", models)
    res = m.compute(_sample(data["video"], data["ref_a"], [m]))
    r, vals, no_face = reference.per_frame(data["video"], data["ref_a"], reference.arc)
    expected = float(np.mean([max(0.0, float(v @ r)) for v in vals]))
    assert no_face > 0 and len(vals) > 0
    assert res.error is None
    assert res.value == pytest.approx(expected, abs=1e-5)
    assert res.extra["frames_no_face"] == no_face and res.extra["frames_scored"] == len(vals)
    assert 0.0 < res.value <= 1.0


def test_facesim_cur_and_opens2v_options(models, data, reference):
    m = _loaded("facesim_cur", models)
    res = m.compute(_sample(data["video"], data["ref_b"], [m]))
    r, vals, no_face = reference.per_frame(data["video"], data["ref_b"], reference.curf)
    scores = np.array([max(0.0, float(v @ r)) for v in vals])
    assert res.value == pytest.approx(float(scores.mean()), abs=1e-5)
    assert res.extra["frames_no_face"] == no_face
    m32 = _loaded("facesim_cur", models, n_frames=32, skip_zero=True)
    assert len(m32.frame_indices(100)) == 32
    res32 = m32.compute(_sample(data["video"], data["ref_b"], [m32]))
    assert res32.extra["frames_scored"] + res32.extra["frames_no_face"] == 32
    assert res32.value is not None and res32.value > 0


def test_face_feat_dist(models, data, reference):
    m = _loaded("face_feat_dist", models)
    assert m.higher_is_better is False
    res = m.compute(_sample(data["video"], data["ref_a"], [m]))
    r, vals, _ = reference.per_frame(data["video"], data["ref_a"], reference.incf)
    expected = float(np.mean([np.sum((v - r) ** 2) for v in vals]))
    assert res.value == pytest.approx(expected, rel=1e-4)


def test_fid_run_level(models, data, reference):
    m = _loaded("fid", models)
    results = [
        m.compute(_sample(data["video"], data["ref_a"], [m])),
        m.compute(_sample(data["video2"], data["ref_b"], [m])),
    ]
    assert all(r.value is None and r.extra.get("not_applicable") for r in results)
    out = m.finalize(results)
    real, gen = [], []
    for video, ref in ((data["video"], data["ref_a"]), (data["video2"], data["ref_b"])):
        r, vals, _ = reference.per_frame(video, ref, reference.incf)
        real.append(r)
        gen.extend(vals)
    real, gen = np.stack(real), np.stack(gen)
    mu1, mu2 = real.mean(0), gen.mean(0)
    s1, s2 = np.cov(real, rowvar=False), np.cov(gen, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    expected = float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))
    assert out["n_real"] == 2 and out["n_gen"] == len(gen)
    assert out["value"] == pytest.approx(expected, rel=1e-3)


def test_detections_shared_between_metrics(models, data):
    arc = _loaded("facesim_arc", models)
    dist = _loaded("face_feat_dist", models)
    sample = _sample(data["video"], data["ref_a"], [arc, dist])
    first = arc.compute(sample)
    keys = [k for k in sample.cache if k[0] == "faces" and k[1] == "insightface:buffalo_l"]
    assert len(keys) == len(set(arc.frame_indices(N_FRAMES)))
    # Blank one cached detection: the second metric must read the cache, not detect again.
    face_idx = next(k for k in keys if sample.cache[k] is not None)
    sample.cache[face_idx] = None
    second = dist.compute(sample)
    n_rep = arc.frame_indices(N_FRAMES).count(face_idx[2])
    assert second.extra["frames_no_face"] == first.extra["frames_no_face"] + n_rep
    # face_feat_dist and fid share the InceptionV3 features of each frame through the cache too
    inc = {k[2] for k in sample.cache if k[0] == "inception"}
    assert inc == {k[2] for k in keys if sample.cache[k] is not None}
    fid = _loaded("fid", models)
    assert fid.compute(sample).extra["frames_scored"] == second.extra["frames_scored"]
    assert {k[2] for k in sample.cache if k[0] == "inception"} == inc


def test_no_face_in_reference_and_in_video(models, data, tmp_path):
    m = _loaded("facesim_arc", models)
    res = m.compute(_sample(data["video"], data["black"], [m]))
    assert res.value is None and "no face in reference image black.png" in res.error
    black = encode_video(np.zeros((6, 320, 320, 3), np.uint8), tmp_path / "black.mp4", fps=8)
    res = m.compute(_sample(black, data["ref_a"], [m]))
    assert res.value == 0.0 and res.extra["frames_no_face"] == 16 and res.extra["frames_scored"] == 0
    d = _loaded("face_feat_dist", models)
    res = d.compute(_sample(black, data["ref_a"], [d]))
    assert res.value is None and "no face in any sampled frame" in res.error


def test_missing_weights_name_file_and_source(tmp_path, monkeypatch, models):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    m = get_metric("facesim_cur")
    with pytest.raises(MissingWeightsError) as e:
        m.load(MetricContext(models_dir=tmp_path))
    assert "glint360k_curricular_face_r101_backbone.bin" in str(e.value)
    assert "BestWishYsh/ConsisID-preview" in str(e.value)
    names = {f.name for f in m.model_files()}
    assert names == {"buffalo_l", "curricularface-ir101"}
    with pytest.raises(MissingWeightsError, match="inception_v3_fid.pt"):
        get_metric("fid").load(MetricContext(models_dir=tmp_path))


def test_frechet_distance_properties():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(50, 4))
    assert fid_from_features(a, a) == pytest.approx(0.0, abs=1e-6)
    b = a + np.array([3.0, 0, 0, 0])
    assert fid_from_features(a, b) == pytest.approx(9.0, rel=1e-6)
    s = np.eye(2)
    assert frechet_distance(np.zeros(2), s, np.zeros(2), 4 * s) == pytest.approx(2.0)


def test_dlib_similarity_scale():
    np.testing.assert_allclose(dlib_similarity([0.0, 0.6, 1.2, 2.0]), [1.0, 0.5, 0.0, 0.0])


def test_facesim_dlib_same_person_scores_higher(astronaut, tom_hanks, tmp_path):
    img = np.asarray(Image.open(astronaut).convert("RGB"))
    frames = np.stack([img[40:360, 40 + 8 * i : 360 + 8 * i] for i in range(9)])  # a pan over the face
    video = encode_video(frames, tmp_path / "pan.mp4", fps=8)
    m = get_metric("facesim_dlib")
    m.load(MetricContext())
    same = m.compute(_sample(video, astronaut, [m]))
    other = m.compute(_sample(video, tom_hanks, [m]))
    assert same.extra["frames_scored"] == 16 and same.extra["frames_no_face"] == 0
    assert same.value > 0.75 and other.value < 0.5
    assert same.value > other.value + 0.3


@pytest.mark.parametrize("name", ["facesim_arc", "facesim_cur", "face_feat_dist"])
def test_faces_found_only_after_padding(models, data, reference, name):
    """SPEC §4 pad retry: 0.25 per side, keypoints shifted back, ArcFace from the padded pass, the 224
    crop from the unpadded frame (black outside it); each metric against the reference flow."""
    fn = {"facesim_arc": reference.arc, "facesim_cur": reference.curf, "face_feat_dist": reference.incf}[name]
    m = _loaded(name, models)
    sample = _sample(data["corner"], data["ref_a"], [m])
    res = m.compute(sample)
    frame0 = read_frames(data["corner"], [0])[0]
    backend = m.backend
    assert backend.detect(frame0) == [] and sample.cache[("faces", backend.name, 0)] is not None
    r, vals, no_face = reference.per_frame(data["corner"], data["ref_a"], fn)
    assert no_face == 0 and len(vals) == 16

    def agg(r, vals):
        if name == "face_feat_dist":
            return float(np.mean([np.sum((v - r) ** 2) for v in vals]))
        return float(np.mean([max(0.0, float(v @ r)) for v in vals]))

    expected = agg(r, vals)
    assert res.value == pytest.approx(expected, rel=1e-5, abs=1e-5)
    assert res.extra["frames_scored"] == 16
    if name != "facesim_arc":  # the crop rule changes the number: a gray-canvas crop gives another value
        _, gray_vals, _ = reference.per_frame(data["corner"], data["ref_a"], fn, gray_crop=True)
        assert abs(agg(r, gray_vals) - expected) > 1e-4


def test_one_crop_per_frame_shared_by_cur_and_inception(models, data):
    cur = _loaded("facesim_cur", models)
    dist = _loaded("face_feat_dist", models)
    sample = _sample(data["corner"], data["ref_a"], [cur, dist])
    cur.compute(sample)
    crops = {k: v for k, v in sample.cache.items() if k[0] == "crop224"}
    assert len(crops) == len(set(cur.frame_indices(sample.n_frames)))
    dist.compute(sample)
    assert all(sample.cache[k] is v for k, v in crops.items())  # reused, not cut again


def test_no_face_quirk_under_consisid(models, data, tmp_path):
    from ipvgkit.metrics.face import NO_FACE_QUIRK
    from ipvgkit.metrics.presets import PRESET_OPTIONS

    black = encode_video(np.zeros((6, 320, 320, 3), np.uint8), tmp_path / "black.mp4", fps=8)
    opts = PRESET_OPTIONS["consisid"]
    assert set(opts) == {"facesim_cur", "facesim_arc", "face_feat_dist"}
    for name in ("facesim_cur", "facesim_arc", "face_feat_dist"):
        m = _loaded(name, models, **opts[name])
        res = m.compute(_sample(black, data["ref_a"], [m]))
        assert res.value == 0.0 and res.error is None
        assert res.extra["no_face"] is True and res.extra["quirk"] == NO_FACE_QUIRK
        assert m.options()["no_face_quirk"] is True
    plain = _loaded("face_feat_dist", models)
    res = plain.compute(_sample(black, data["ref_a"], [plain]))
    assert res.value is None and res.extra["no_face"] is True and "quirk" not in res.extra
