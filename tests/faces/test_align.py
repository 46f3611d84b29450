"""Alignment by 5 keypoints equals insightface's own ``face_align.norm_crop``."""

from __future__ import annotations

import numpy as np
import pytest
from insightface.utils import face_align
from PIL import Image

from ipvgkit.faces.align import ARCFACE_TEMPLATE, estimate_norm, norm_crop, template


@pytest.mark.parametrize("size", [112, 224, 128])
def test_norm_crop_equals_insightface(astronaut, size):
    img = np.asarray(Image.open(astronaut).convert("RGB"))[..., ::-1].copy()
    rng = np.random.default_rng(size)
    base = np.array([[200, 180], [260, 178], [232, 215], [205, 250], [255, 248]], np.float32)
    for _ in range(5):
        kps = (base + rng.normal(0, 6, base.shape)).astype(np.float32)
        ours = norm_crop(img, kps, size)
        theirs = face_align.norm_crop(img, kps, image_size=size)
        assert ours.shape == (size, size, 3)
        np.testing.assert_array_equal(ours, theirs)
        np.testing.assert_allclose(estimate_norm(kps, size), face_align.estimate_norm(kps, size), atol=1e-9)


def test_template_maps_onto_itself():
    m = estimate_norm(ARCFACE_TEMPLATE * 2.0, 224)
    pts = np.c_[ARCFACE_TEMPLATE * 2.0, np.ones(5)] @ m.T
    np.testing.assert_allclose(pts, template(224), atol=1e-4)


def test_bad_inputs():
    with pytest.raises(ValueError, match="5 keypoints"):
        estimate_norm(np.zeros((4, 2)), 112)
    with pytest.raises(ValueError, match="multiple of 112 or 128"):
        template(100)
