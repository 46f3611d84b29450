import json

import pytest

from ipvgkit.data.manifest import sample_id
from ipvgkit.data.sources import Reject, SampleSpec, Vip200kSource
from ipvgkit.data.sources.vip200k import identity_id, segment_range
from ipvgkit.errors import InputError
from tests.data.sources.builders import clip, person


def test_segment_range_follows_the_card_semantics():
    # the viewer's row: clip 1016->1147 (end exclusive), segment 0->130 (fidx_end inclusive)
    seg = {"clip": clip(1016, 1147, 23.976023976), "fidx_beg": 0, "fidx_end": 130}
    assert segment_range(seg) == (1016, 1147, 23.976023976)
    # a segment running past its clip is clamped to the clip
    seg = {"clip": clip(100, 150, 30.0), "fidx_beg": 10, "fidx_end": 80}
    assert segment_range(seg) == (110, 150, 30.0)


def _write(tmp_path, entries, videos=("v1",)):
    vids = tmp_path / "videos"
    vids.mkdir(exist_ok=True)
    for v in videos:
        (vids / f"{v}.mp4").write_bytes(b"x")  # existence is all the source checks
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps(entries))
    return Vip200kSource(ann, vids)


def test_items_reference_prefers_another_segment_and_falls_back(tmp_path):
    two = person("v1", 0, 100, 30.0, [(0, 49), (50, 99)], [10, 70])
    one = person("v2", 0, 100, 30.0, [(0, 99)], [10])
    src = _write(tmp_path, [two, one], videos=("v1", "v2"))
    src.load()
    items = list(src.items())
    assert all(isinstance(i, SampleSpec) for i in items)
    a, b, c = items
    assert (a.frame_start, a.frame_end, a.t_start, a.t_end) == (0, 50, 0.0, 50 / 30)
    assert a.sample_id == sample_id("vip200k", "v1", 0, 50)
    # segment 0's first candidate is the face at frame 70 (segment 1), its own face comes last
    assert [r.same_segment for r in a.refs] == [False, True]
    assert a.refs[0].t == pytest.approx(70 / 30)
    assert b.refs[0].t == pytest.approx(10 / 30) and not b.refs[0].same_segment
    # a person with one segment: the only face is inside it (the recorded fallback)
    assert [r.same_segment for r in c.refs] == [True]
    assert a.identity_id == b.identity_id != c.identity_id


def test_identity_and_sample_ids_do_not_depend_on_list_position(tmp_path):
    p1 = person("v1", 0, 100, 30.0, [(0, 49)], [10])
    p2 = person("v2", 0, 100, 30.0, [(0, 49)], [10])
    assert identity_id(p1) != identity_id(p2)
    s1 = _write(tmp_path, [p1, p2], videos=("v1", "v2"))
    s1.load()
    ids1 = {(i.sample_id, i.identity_id) for i in s1.items()}
    s2 = _write(tmp_path, [p2, p1], videos=("v1", "v2"))
    s2.load()
    assert {(i.sample_id, i.identity_id) for i in s2.items()} == ids1


def test_missing_video_and_empty_caption_are_rejects_not_errors(tmp_path):
    ok = person("v1", 0, 100, 30.0, [(0, 49)], [10], caption="  ")
    gone = person("nope", 0, 100, 30.0, [(0, 49)], [10])
    src = _write(tmp_path, [ok, gone])
    src.load()
    rej = list(src.items())
    assert all(isinstance(r, Reject) for r in rej)
    assert [(r.video_id, r.reason, r.segment) for r in rej] == [
        ("v1", "empty-caption", "person 0 segment 0"),
        ("nope", "missing-video", "person 1 segment 0"),
    ]
    assert src.missing_videos() == ["nope"]


@pytest.mark.parametrize(
    "mutate, expect",
    [
        (lambda d: {"persons": d}, "expected a JSON list of persons"),
        (lambda d: [d[0], {"faces": []}], "entry 1: segments: missing or not a list"),
        (
            lambda d: [{**d[0], "faces": [{**d[0]["faces"][0], "xyxy_norm": [0, 1]}]}],
            "entry 0: faces[0].xyxy_norm",
        ),
        (
            lambda d: [{**d[0], "segments": [{**d[0]["segments"][0], "clip": clip(0, 9, 0)}]}],
            "entry 0: segments[0].clip.beg.framerate",
        ),
        (
            lambda d: [
                {**d[0], "segments": [{k: v for k, v in d[0]["segments"][0].items() if k != "caption"}]}
            ],
            "entry 0: segments[0].caption",
        ),
    ],
)
def test_malformed_annotations_name_the_first_bad_entry_and_field(tmp_path, mutate, expect):
    good = [person("v1", 0, 100, 30.0, [(0, 49)], [10])]
    src = _write(tmp_path, mutate(good))
    with pytest.raises(InputError, match=expect.replace("[", r"\[").replace("]", r"\]")):
        src.load()


def test_missing_videos_folder_is_an_error(tmp_path):
    ann = tmp_path / "a.json"
    ann.write_text("[]")
    with pytest.raises(InputError, match="videos folder not found"):
        Vip200kSource(ann, tmp_path / "nowhere").load()


def test_segment_windows_cut_long_segments_and_keep_the_remainder():
    from ipvgkit.data.sources.vip200k import segment_windows

    assert segment_windows(0, 100, 30.0, None) == [(0, 100)]
    assert segment_windows(0, 100, 30.0, 1.0) == [(0, 30), (30, 60), (60, 100)]  # last keeps 10 more
    assert segment_windows(5, 25, 30.0, 1.0) == [(5, 25)]  # shorter than one window: as it is


def test_windows_are_samples_with_their_own_ids_and_the_segment_s_reference_rule(tmp_path):
    long_one = person("v1", 0, 300, 30.0, [(0, 239), (240, 299)], [10, 250])
    src = _write(tmp_path, [long_one], videos=("v1",))
    src.window_seconds = 2.0
    src.load()
    items = list(src.items())
    assert [(i.frame_start, i.frame_end) for i in items] == [
        (0, 60),
        (60, 120),
        (120, 180),
        (180, 240),
        (240, 300),
    ]
    assert len({i.sample_id for i in items}) == 5
    assert items[1].sample_id == sample_id("vip200k", "v1", 60, 120)
    assert (items[1].t_start, items[1].t_end) == (2.0, 4.0)
    assert items[1].segment.endswith("segment 0 window 1") and items[4].segment.endswith("segment 1")
    # the face at frame 10 is inside segment 0 (not inside window 1): still the segment's own face,
    # so window 1 prefers the face of segment 1 (no copy-paste from its own segment)
    assert [r.same_segment for r in items[1].refs] == [False, True]
    assert items[1].refs[0].t == pytest.approx(250 / 30)
