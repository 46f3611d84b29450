"""insightface backend on a tiny SCRFD-shaped detector and ArcFace-shaped recogniser (real insightface code)."""

from __future__ import annotations

import cv2
import numpy as np
import onnxruntime as ort
import pytest
from insightface.model_zoo import model_zoo
from insightface.utils import face_align

from ipvgkit.errors import InputError, MissingWeightsError
from ipvgkit.faces import aligned_crop, detect_largest, get_backend, pad_image, unpadded_crop
from ipvgkit.faces.insight import InsightFaceBackend
from tests.support.tiny_models import BOX_HALF, KPS_OFFSETS, export_recognizer, square_image


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


def _reference_pad_detect(det, rgb):
    """ConsisID's pad_np_bgr_image(scale=1.25) + detect, written with OpenCV: int(h*0.25) rows top and
    bottom, int(w*0.25) columns left and right of (128, 128, 128); keypoints shifted back."""
    bgr = rgb[..., ::-1].copy()
    h, w = bgr.shape[:2]
    top, left = int(h * 0.25), int(w * 0.25)
    canvas = cv2.copyMakeBorder(bgr, top, top, left, left, cv2.BORDER_CONSTANT, value=(128, 128, 128))
    boxes, kpss = det.detect(canvas, input_size=(320, 320))
    # the reference keeps sorted(faces, key=box area)[-1]: the last of equal areas
    k = sorted(range(len(boxes)), key=lambda i: (boxes[i, 2] - boxes[i, 0]) * (boxes[i, 3] - boxes[i, 1]))[-1]
    return canvas, (left, top), boxes[k : k + 1], kpss[k : k + 1]


def test_pad_retry_maps_back_to_original_coordinates(backend, tiny_models_dir):
    # A 46 px square is too big for the tiny detector at scale 1; on the padded canvas (1.5x per axis,
    # shown at 2/3 scale to the 320 detector) it is ~31 px. The image is not square: 0.25 of h and of w.
    img = square_image(square=46, center=(200, 120))[40:280]  # 240 x 320, square centre (200, 80)
    assert backend.detect(img) == []
    face = detect_largest(backend, img)
    assert face is not None and face.extra["pad_offset"] == (80, 60)
    det = model_zoo.get_model(str(tiny_models_dir / "insightface/buffalo_l/a_detector.onnx"))
    det.prepare(-1, input_size=(320, 320))
    canvas, (left, top), boxes, kpss = _reference_pad_detect(det, img)
    assert canvas.shape == (360, 480, 3) and (left, top) == (80, 60)
    np.testing.assert_allclose(face.bbox, boxes[0, :4] - [80, 60, 80, 60], atol=1e-4)
    np.testing.assert_allclose(face.kps, kpss[0] - np.array([80, 60], np.float32), atol=1e-4)
    c, left, top = pad_image(img)
    np.testing.assert_array_equal(c, canvas[..., ::-1])
    assert (left, top) == (80, 60)
    assert detect_largest(backend, img, pad_retry=False) is None
    # the old reading (1.25x in all, centred) puts the face elsewhere on another canvas: not the rule
    old = np.full((300, 400, 3), 128, np.uint8)
    old[30:270, 40:360] = img
    assert old.shape != canvas.shape


def test_arcface_crop_of_the_padded_pass_and_unpadded_crop(backend, tiny_models_dir):
    # face near the top-left corner: found only on the padded canvas, its aligned crops reach outside
    img = square_image(square=46, center=(24, 24), seed=4)
    assert backend.detect(img) == []
    face = detect_largest(backend, img)
    assert face is not None
    det = model_zoo.get_model(str(tiny_models_dir / "insightface/buffalo_l/a_detector.onnx"))
    det.prepare(-1, input_size=(320, 320))
    canvas, off, boxes, kpss = _reference_pad_detect(det, img)
    # ArcFace: insightface's norm_crop of the padded BGR canvas with the detector's keypoints there
    crop = face_align.norm_crop(canvas, kpss[0], image_size=112)
    np.testing.assert_array_equal(backend.align(img, [face])[0], crop)
    blob = ((crop[..., ::-1].astype(np.float32) - 127.5) / 127.5).transpose(2, 0, 1)[None]
    sess = ort.InferenceSession(str(tiny_models_dir / "insightface/buffalo_l/b_recognizer.onnx"))
    ref = sess.run(None, {"input.1": blob})[0][0]
    np.testing.assert_allclose(backend.embed(img, [face])[0], ref / np.linalg.norm(ref), atol=1e-5)
    # the 224 crop: from the UNPADDED image with the shifted keypoints; outside the image is black (0)
    kps = kpss[0] - np.array(off, np.float32)
    ref224 = face_align.norm_crop(img[..., ::-1].copy(), kps, image_size=224)[..., ::-1]
    ours = unpadded_crop(img, face, 224)
    np.testing.assert_array_equal(ours, ref224)
    assert (ours[:8, :8] == 0).all()  # reaches past the corner: black, not gray
    assert (aligned_crop(img, face, 224)[:8, :8] == 128).all()  # the padded canvas would give gray


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


def test_largest_face_ties_keep_the_last_as_the_reference_sort():
    from ipvgkit.faces import Face, largest_face

    a = Face(bbox=np.array([0, 0, 10, 10], np.float32), kps=None, score=0.9)
    b = Face(bbox=np.array([5, 5, 15, 15], np.float32), kps=None, score=0.8)
    small = Face(bbox=np.array([0, 0, 5, 5], np.float32), kps=None, score=0.99)
    assert largest_face([small, a, b]) is b
    assert largest_face([b, small, a]) is a
    assert largest_face([]) is None
