"""dlib backend on real faces (weights from the face-recognition-models package)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ipvgkit.errors import UsageError
from ipvgkit.faces import detect_largest, get_backend, largest_face


def _rgb(path):
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def dlib_backend():
    return get_backend("dlib")


def test_group_photo_keeps_largest(dlib_backend, group_photo):
    img = _rgb(group_photo)
    faces = dlib_backend.detect(img)
    assert len(faces) >= 3
    best = detect_largest(dlib_backend, img)
    assert best is not None and best.area == max(f.area for f in faces)
    assert largest_face(faces) is not None and largest_face(faces).area == best.area
    assert best.kps.shape == (5, 2) and best.kps_format == "dlib5"
    x1, y1, x2, y2 = best.bbox
    assert np.all((best.kps[:, 0] > x1 - 5) & (best.kps[:, 0] < x2 + 5))


def test_same_person_closer_than_another(dlib_backend, astronaut, tom_hanks):
    a = _rgb(astronaut)
    t = _rgb(tom_hanks)
    fa, ft = detect_largest(dlib_backend, a), detect_largest(dlib_backend, t)
    # The same face shifted inside the frame vs the other person.
    shifted = np.ascontiguousarray(a[30:, 20:])
    fs = detect_largest(dlib_backend, shifted)
    da, dt, ds = (dlib_backend.descriptors(img, [f])[0] for img, f in ((a, fa), (t, ft), (shifted, fs)))
    assert np.linalg.norm(da - ds) < 0.6 < np.linalg.norm(da - dt)
    emb = dlib_backend.embed(a, [fa])
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(emb[0], da / np.linalg.norm(da), rtol=1e-5)


def test_no_face_and_unknown_detector(dlib_backend):
    assert dlib_backend.detect(np.zeros((120, 160, 3), np.uint8)) == []
    assert dlib_backend.embed(np.zeros((8, 8, 3), np.uint8), []).shape == (0, 128)
    with pytest.raises(UsageError, match="unknown face backend"):
        get_backend("dlib:nope")


def test_cnn_detector_agrees_with_hog(dlib_backend, astronaut):
    from ipvgkit.faces.dlib_backend import DlibBackend

    img = _rgb(astronaut)
    cnn = DlibBackend("cnn", upsample=0)
    assert cnn.name == "dlib:cnn"
    faces = cnn.detect(img)
    assert len(faces) == 1  # the MMOD detector does not fire on the suit's NASA patch
    hog = detect_largest(dlib_backend, img)
    a, b = faces[0].bbox, hog.bbox
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    assert inter / (faces[0].area + hog.area - inter) > 0.6
