"""The contract of :class:`ipvgkit.models.base.VideoBackend`, run against every video backend.

A new backend gets this suite by adding one :class:`Spec`: ``check`` rejects bad requests with a
``CaseError`` naming the case, ``generate`` returns uint8 frames ``(num_frames, height, width, 3)``, the
same seed gives the same frames, and ``describe`` is JSON-serialisable. ConsisID runs its ``check`` and
``describe`` with the face weight files located (placeholders); its generation needs the real
checkpoint and is skipped with the reason when that is not on the machine.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from ipvgkit.errors import CaseError
from ipvgkit.models import ModelOptions, load_backend
from tests.models.conftest import request as make_request


@dataclass(frozen=True)
class Spec:
    """One backend under test: how to build it, a request it can generate, and why generation may be
    skipped here (None: it runs)."""

    name: str
    build: Callable[[Path], object]
    good: dict
    skip_generate: str | None = None


def _consisid(tmp: Path):
    folder = tmp / "ConsisID-preview"
    (folder / "face_encoder" / "models" / "antelopev2").mkdir(parents=True, exist_ok=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "ConsisIDPipeline"}))
    (folder / "face_encoder" / "models" / "antelopev2" / "glintr100.onnx").write_bytes(b"x")
    (folder / "face_encoder" / "EVA02_CLIP_L_336_psz14_s6B.pt").write_bytes(b"x")
    return load_backend(ModelOptions(model=str(folder), models_dir=tmp / "models"))


def _tiny(name: str, identity: str) -> Callable[[Path], object]:
    def build(models_dir: Path):
        return load_backend(ModelOptions(model=name, identity=identity, models_dir=models_dir))

    return build


SMALL = dict(num_frames=9, height=32, width=32, fps=16.0, steps=2)
SPECS = [
    Spec("wan", _tiny("tiny-wan", "none"), SMALL),
    Spec("wan reference-concat", _tiny("tiny-wan", "reference-concat"), {**SMALL, "refs": True}),
    Spec("wan-i2v", _tiny("tiny-wan-i2v", "auto"), {**SMALL, "refs": True}),
    Spec("wan-vace", _tiny("tiny-wan-vace", "auto"), {**SMALL, "refs": True}),
    Spec(
        "consisid",
        _consisid,
        dict(num_frames=49, height=480, width=720, fps=8.0, steps=2, refs=True),
        skip_generate="needs the real ConsisID checkpoint (BestWishYsh/ConsisID-preview), not on this machine",
    ),
]


@pytest.fixture(scope="module", params=SPECS, ids=[s.name for s in SPECS])
def spec_backend(request, tmp_path_factory):
    spec = request.param
    return spec, spec.build(tmp_path_factory.mktemp("conformance-" + spec.name.replace(" ", "-")))


def good_request(spec: Spec, face: Path, **kw):
    fields = {k: v for k, v in spec.good.items() if k != "refs"}
    refs = [face] if spec.good.get("refs") else []
    return make_request(case_id="id007/prompt2", ref_images=refs, **{**fields, **kw})


def test_check_accepts_the_good_request(spec_backend, tom_hanks):
    spec, backend = spec_backend
    backend.check(good_request(spec, tom_hanks))


@pytest.mark.parametrize(
    "bad",
    [
        dict(num_frames=10),
        dict(height=30),
        dict(missing_ref=True),
    ],
    ids=["frames-not-4k+1", "size-not-multiple-of-16", "missing-reference"],
)
def test_check_rejects_bad_requests_naming_the_case(spec_backend, tom_hanks, tmp_path, bad):
    spec, backend = spec_backend
    bad = dict(bad)
    if bad.pop("missing_ref", False):
        bad["ref_images"] = [tmp_path / "missing.png"]
    req = good_request(spec, tom_hanks)
    for key, value in bad.items():
        setattr(req, key, value)
    with pytest.raises(CaseError) as info:
        backend.check(req)
    assert info.value.case_key == "id007/prompt2"
    assert str(info.value).startswith("case id007/prompt2: ")


def test_describe_is_json_serialisable(spec_backend):
    _, backend = spec_backend
    described = backend.describe()
    assert isinstance(described, dict) and described
    assert json.loads(json.dumps(described)) == json.loads(json.dumps(described, default=str))


def test_generate_returns_the_documented_frames_and_is_deterministic(spec_backend, tom_hanks):
    spec, backend = spec_backend
    if spec.skip_generate:
        pytest.skip(spec.skip_generate)
    req = good_request(spec, tom_hanks, seed=5)
    first = backend.generate(req)
    assert isinstance(first, np.ndarray) and first.dtype == np.uint8
    assert first.shape == (req.num_frames, req.height, req.width, 3)
    assert np.array_equal(backend.generate(good_request(spec, tom_hanks, seed=5)), first)
    other = backend.generate(good_request(spec, tom_hanks, seed=6))
    assert not np.array_equal(other, first)
