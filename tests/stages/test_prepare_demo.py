"""The demo's VIP-200K-format dataset from the real face photos, prepared with face embeddings."""

import json

import numpy as np
import pytest

from ipvgkit.data.manifest import read_manifest
from ipvgkit.stages.prepare_demo import prepare_demo
from ipvgkit.stages.prepare_work import sharpness


def test_sharpness_is_the_laplacian_variance():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
    gray = img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    ref = cv2.Laplacian(gray, cv2.CV_32F, ksize=1)[1:-1, 1:-1].var()
    assert sharpness(img) == pytest.approx(float(ref), rel=1e-5)


@pytest.mark.slow
def test_demo_dataset_prepares_with_cross_segment_refs_and_embeddings(tmp_path):
    pytest.importorskip("dlib")
    report, note = prepare_demo(tmp_path, workers=1)
    assert "dlib" in note and not report.rejects and report.face_backend in ("dlib", "buffalo_l")
    ann = json.loads((tmp_path / "vip200k/annotations.json").read_text())
    assert [len(p["segments"]) for p in ann] == [2, 2]
    samples = read_manifest(tmp_path / "prepared", source="vip200k")
    assert len(samples) == 4 and not any(s.ref_same_segment for s in samples)
    assert all(s.frame_start >= 120 for s in samples)  # the clips sit 5 s into their videos
    emb = {s.sample_id: np.load(tmp_path / "prepared" / s.face_embedding) for s in samples}
    assert all(e.shape == (128,) for e in emb.values())
    by_person: dict[str, list] = {}
    for s in samples:
        by_person.setdefault(s.identity_id, []).append(emb[s.sample_id])
    (a1, a2), (b1, b2) = by_person.values()
    same = max(np.linalg.norm(a1 - a2), np.linalg.norm(b1 - b2))
    other = min(np.linalg.norm(x - y) for x in (a1, a2) for y in (b1, b2))
    # the same person in two segments is closer than two people (the astronaut's face is only
    # ~76 px, so the gap is smaller than dlib's 0.6 convention would suggest)
    assert same < other
