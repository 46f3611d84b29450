"""VideoSample: the union of frames is decoded once and shared; reference images load once."""

from __future__ import annotations

import numpy as np
import pytest

from ipvgkit.data.cases import Case
from ipvgkit.media import encode_video, probe_video, read_video
from ipvgkit.metrics import MetricResult, VideoSample
from tests.conftest import moving_frames


@pytest.fixture
def video(tmp_path):
    return encode_video(moving_frames(t=12, h=32, w=48), tmp_path / "v.mp4", fps=8)


def _case(refs=()):
    return Case(case_id="c", track=1, ref_images=list(refs), prompt="p", output_name="v.mp4")


def test_frames_come_from_one_decoding_pass(video):
    s = VideoSample(_case(), video, probe_video(video), needed=[0, 3, 5, 11])
    full = read_video(video)
    a = s.frames([5, 0, 5])
    b = s.frames([11, 3])
    assert s.decode_passes == 1
    np.testing.assert_array_equal(a, full[[5, 0, 5]])
    np.testing.assert_array_equal(b, full[[11, 3]])
    c = s.frames([7])  # outside the union: decoded on demand, counted
    np.testing.assert_array_equal(c, full[[7]])
    assert s.decode_passes == 2
    assert s.frames([]).shape == (0, 32, 48, 3)
    s.release()
    assert s.cache == {}


def test_ref_images_load_once(video, tom_hanks):
    s = VideoSample(_case([tom_hanks]), video, probe_video(video))
    refs = s.ref_images()
    assert len(refs) == 1 and refs[0].dtype == np.uint8 and refs[0].shape[2] == 3
    assert s.ref_images() is refs


def test_unreadable_ref_image_is_an_input_error(video, tmp_path):
    from ipvgkit.errors import InputError

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(InputError, match="bad.png"):
        VideoSample(_case([bad]), video, probe_video(video)).ref_images()


def test_metric_result_flags():
    assert MetricResult(None, error="x").is_failure
    na = MetricResult.not_applicable("no timeline", events=0)
    assert not na.is_failure and na.extra == {"not_applicable": True, "events": 0}
    assert MetricResult(0.0).to_dict() == {"value": 0.0, "extra": {}, "error": None}


def test_reference_entries_are_shared_between_videos_of_one_reference(video):
    shared: dict = {}
    a = VideoSample(_case(), video, probe_video(video), ref_cache=shared)
    b = VideoSample(_case(), video, probe_video(video), ref_cache=shared)
    a.cache[("ref_faces", "dlib")] = ["face"]
    a.cache[("faces", "dlib", 0)] = "frame face"
    assert b.cache[("ref_faces", "dlib")] == ["face"] and ("ref_faces", "dlib") in b.cache
    assert ("faces", "dlib", 0) not in b.cache
    assert set(a.cache) == {("ref_faces", "dlib"), ("faces", "dlib", 0)} and len(a.cache) == 2
    a.release()
    assert ("faces", "dlib", 0) not in a.cache and b.cache.get(("ref_faces", "dlib")) == ["face"]
    c = VideoSample(_case(), video, probe_video(video))  # its own store
    assert ("ref_faces", "dlib") not in c.cache
