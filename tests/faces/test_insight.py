"""insightface backend on a tiny SCRFD-shaped detector and ArcFace-shaped recogniser (real insightface code)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from insightface.model_zoo import model_zoo
from insightface.utils import face_align

from ipvgkit.errors import InputError, MissingWeightsError
from ipvgkit.faces import detect_largest, get_backend, pad_image
from ipvgkit.faces.insight import InsightFaceBackend
from tests.faces.tiny_models import BOX_HALF, KPS_OFFSETS, export_recognizer, square_image


@pytest.fixture(scope="module")
def backend(tiny_models_dir):
    return get_backend("buffalo_l", tiny_models_dir)


def test_routes_detector_and_recognizer(backend):
    assert type(backend.detector).__name__ == "SCRFD"
    assert type(backend.recognizer).__name__ == "ArcFaceONNX"
    assert backend.name == "insightface:buffalo_l"
    assert backend.crop_size == 112


def test_loaded_once(tiny_models_dir, backend):
    assert get_backend("buffalo_l", tiny_models_dir) is backend
    # an explicit pack folder (no models-dir search) gives the same cached backend
    assert (
        get_backend("buffalo_l", "/nonexistent", path=tiny_models_dir / "insightface" / "buffalo_l")
        is backend
    )


def test_detect_box_and_keypoints(backend):
    img = square_image(square=32, center=(152, 168))
    faces = backend.detect(img)
    assert len(faces) == 1
    f = faces[0]
    # The anchor nearest the square's centre (anchor grid: multiples of 8).
    np.testing.assert_allclose(f.bbox, [152 - BOX_HALF, 168 - BOX_HALF, 152 + BOX_HALF, 168 + BOX_HALF])
    np.testing.assert_allclose(f.kps, KPS_OFFSETS + [152, 168])
    assert f.score > 0.9 and f.kps_format == "arcface5"


def test_no_face_on_black(backend):
    assert backend.detect(np.zeros((240, 320, 3), np.uint8)) == []
    assert detect_largest(backend, np.zeros((240, 320, 3), np.uint8)) is None


def test_pad_retry_maps_back_to_original_coordinates(backend, tiny_models_dir):
    # A 40 px square is too big for the tiny detector at scale 1; on the 1.25x gray canvas it is 32 px.
    img = square_image(square=40, center=(200, 120))
    assert backend.detect(img) == []
    face = detect_largest(backend, img)
    assert face is not None and face.extra["pad_offset"] == (40, 40)
    # Independent: insightface's SCRFD on our own gray canvas, shifted back by hand.
    canvas = np.full((400, 400, 3), 128, np.uint8)
    canvas[40:360, 40:360] = img
    det = model_zoo.get_model(str(tiny_models_dir / "insightface/buffalo_l/a_detector.onnx"))
    det.prepare(-1, input_size=(320, 320))
    boxes, kpss = det.detect(canvas[..., ::-1].copy())
    assert len(boxes) == 1
    np.testing.assert_allclose(face.bbox, boxes[0, :4] - [40, 40, 40, 40], atol=1e-4)
    np.testing.assert_allclose(face.kps, kpss[0] - [40, 40], atol=1e-4)
    np.testing.assert_allclose(face.bbox, [180, 100, 220, 140], atol=1e-4)
    c, left, top = pad_image(img)
    np.testing.assert_array_equal(c, canvas)
    assert (left, top) == (40, 40)
    assert detect_largest(backend, img, pad_retry=False) is None


def test_embedding_equals_onnxruntime_on_insightface_crop(backend, tiny_models_dir):
    img = square_image(square=32, center=(160, 160), seed=3)
    face = detect_largest(backend, img)
    emb = backend.embed(img, [face])
    assert emb.shape == (1, 32)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    bgr = img[..., ::-1].copy()
    crop = face_align.norm_crop(bgr, face.kps, image_size=112)
    blob = ((crop[..., ::-1].astype(np.float32) - 127.5) / 127.5).transpose(2, 0, 1)[None]
    sess = ort.InferenceSession(str(tiny_models_dir / "insightface/buffalo_l/b_recognizer.onnx"))
    ref = sess.run(None, {"input.1": blob})[0][0]
    np.testing.assert_allclose(emb[0], ref / np.linalg.norm(ref), atol=1e-5)


def test_pack_without_detector_is_an_input_error(tmp_path):
    pack = tmp_path / "pack"
    pack.mkdir()
    export_recognizer(pack / "rec.onnx")
    with pytest.raises(InputError, match="no detector"):
        InsightFaceBackend(pack)


def test_missing_pack_names_file_and_source(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(MissingWeightsError) as e:
        get_backend("antelopev2", tmp_path / "models")
    msg = str(e.value)
    assert "insightface/antelopev2" in msg and "antelopev2.zip" in msg
    assert str(tmp_path / "models" / "insightface" / "antelopev2") in msg
