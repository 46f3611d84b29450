"""OpenS2V-Eval's FaceSim case rules (get_facesim.py): human cases only, reference image chosen by path."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ipvgkit.data.cases import Case
from ipvgkit.media import encode_video, probe_video
from ipvgkit.metrics import MetricContext, VideoSample, get_metric
from ipvgkit.metrics.opens2v import is_human_case, reference_index
from ipvgkit.metrics.presets import PRESET_OPTIONS


def _case(name: str, refs: list[Path]) -> Case:
    return Case(case_id=name, track=1, ref_images=refs, prompt="a person", output_name=name)


def _sample(video: Path, case: Case, metric) -> VideoSample:
    info = probe_video(video, count_frames=True)
    return VideoSample(case, video, info, metric.frames_for(case, info.n_frames, info.fps))


@pytest.fixture(scope="module")
def data(tmp_path_factory, tom_hanks, astronaut) -> dict:
    d = tmp_path_factory.mktemp("opens2v")
    (d / "Images" / "objects").mkdir(parents=True)
    (d / "Images" / "man").mkdir(parents=True)
    other = d / "Images" / "objects" / "astronaut.png"  # a face too, but not under /man/ or /woman/
    shutil.copy(astronaut, other)
    man = d / "Images" / "man" / "tom.png"
    shutil.copy(tom_hanks, man)
    face = np.asarray(Image.open(tom_hanks).convert("RGB").resize((160, 160)))
    video = encode_video(np.repeat(face[None], 4, axis=0), d / "singleface_3.mp4", fps=8)
    return {"other": other, "man": man, "video": video}


def test_path_rules_as_the_reference():
    assert is_human_case(_case("Results/singlehuman_12.mp4", []))
    assert all(is_human_case(_case(f"{k}_1.mp4", [])) for k in ("singleface", "faceobj", "humanobj"))
    assert not is_human_case(_case("singleobj_1.mp4", [])) and not is_human_case(
        _case("multiobject_2.mp4", [])
    )
    refs = [Path("x/Images/objects/cup.png"), Path("x/Images/crop_woman/a.png"), Path("x/Images/man/b.png")]
    assert reference_index(_case("faceobj_1.mp4", refs)) == 1  # the first qualifying path, in order
    assert reference_index(_case("faceobj_1.mp4", refs[:1])) is None
    assert PRESET_OPTIONS["opens2v"]["facesim_cur"]["opens2v_cases"] is True


def test_reference_image_is_chosen_by_path(data):
    refs = [data["other"], data["man"]]
    rule = get_metric("facesim_dlib", n_frames=4, opens2v_cases=True)
    plain = get_metric("facesim_dlib", n_frames=4)
    only_man = get_metric("facesim_dlib", n_frames=4)
    for m in (rule, plain, only_man):
        m.load(MetricContext())
    case = _case("singleface_3.mp4", refs)
    r = rule.compute(_sample(data["video"], case, rule))
    p = plain.compute(_sample(data["video"], case, plain))
    alone = only_man.compute(_sample(data["video"], _case("singleface_3.mp4", [data["man"]]), only_man))
    assert r.extra["ref_index"] == 1 and p.extra["ref_index"] == 0  # first face vs the /man/ image
    assert r.value == pytest.approx(alone.value, abs=1e-12)
    assert abs(r.value - p.value) > 0.05  # the choice moves the number


def test_non_human_cases_and_cases_without_a_person_image_are_not_scored(data):
    m = get_metric("facesim_dlib", n_frames=4, opens2v_cases=True)
    m.load(MetricContext())
    obj = m.compute(_sample(data["video"], _case("singleobj_3.mp4", [data["man"]]), m))
    assert obj.value is None and obj.extra["not_applicable"] and "human" in obj.error
    no_ref = m.compute(_sample(data["video"], _case("singleface_3.mp4", [data["other"]]), m))
    assert no_ref.value is None and no_ref.extra["not_applicable"] and "/man/" in no_ref.error
