import pytest

from ipvgkit.data.sources import ReactIdSource, Reject, SampleSpec
from ipvgkit.data.sources.reactid import parse_events, parse_face_box, resolve_event_units
from ipvgkit.errors import InputError
from tests.data.sources.builders import reactid_tree


def test_parse_events_accepts_the_three_text_keys_and_names_unknown_fields():
    evs = [{"start": 0, "end": 1, "description": "a"}, {"start": 1, "end": 2, "caption": "b"},
           {"start": 2, "end": 3, "text": " c "}]  # fmt: skip
    assert parse_events(evs, "x") == [(0.0, 1.0, "a"), (1.0, 2.0, "b"), (2.0, 3.0, "c")]
    with pytest.raises(InputError, match="unknown event field 'label'"):
        parse_events([{"start": 0, "end": 1, "text": "a", "label": "x"}], "x")
    with pytest.raises(InputError, match="exactly one of"):
        parse_events([{"start": 0, "end": 1, "text": "a", "caption": "b"}], "x")
    with pytest.raises(InputError, match="not after start"):
        parse_events([{"start": 2, "end": 1, "text": "a"}], "x")


def test_event_units_seconds_unless_only_frames_fit():
    ev = [(0.0, 1.5, "a"), (1.5, 3.0, "b")]
    # a 3 s clip of 48 frames at 16 fps: 3.0 fits the duration -> seconds, unchanged
    assert resolve_event_units(ev, 3.0, 48, 16.0) == ("seconds", ev)
    frames = [(0.0, 24.0, "a"), (24.0, 48.0, "b")]
    units, conv = resolve_event_units(frames, 3.0, 48, 16.0)
    assert units == "frames" and conv == [(0.0, 24 / 16, "a"), (24 / 16, 48 / 16, "b")]
    assert resolve_event_units([(0.0, 60.0, "a")], 3.0, 48, 16.0) is None


def test_parse_face_box_reads_the_undocumented_shapes():
    assert parse_face_box([0.1, 0.2, 0.5, 0.6]) == ((0.1, 0.2, 0.5, 0.6), False, None)
    assert parse_face_box([10, 20, 50, 60]) == ((10.0, 20.0, 50.0, 60.0), True, None)
    assert parse_face_box({"bbox": [10, 20, 50, 60], "frame_idx": 7}) == ((10.0, 20.0, 50.0, 60.0), True, 7)
    big = parse_face_box([[0, 0, 10, 10], {"box": [0, 0, 40, 40]}])
    assert big == ((0.0, 0.0, 40.0, 40.0), True, None)
    assert parse_face_box("rle:abc") is None and parse_face_box([5, 5, 1, 1]) is None


def test_items_of_a_reactid_tree(tmp_path):
    src = ReactIdSource(reactid_tree(tmp_path))
    src.load()
    a, b, c = src.items()
    assert isinstance(a, SampleSpec) and isinstance(b, SampleSpec) and isinstance(c, Reject)
    assert a.caption == "a person waves then sits"  # global_caption wins over the metadata caption
    assert a.events == [(0.0, 1.5, "waves"), (1.5, 3.0, "sits")] and a.events_units == "auto"
    assert a.refs[0].frame == 3 and not a.refs[0].pixels
    assert b.refs[0].pixels
    assert (c.video_id, c.reason) == ("c00_clip.mp4", "missing-video")
    assert src.missing_videos() == ["c00_clip.mp4"]


def test_bad_trees_are_errors_before_any_work(tmp_path):
    with pytest.raises(InputError, match="no Jsons/ folder"):
        ReactIdSource(tmp_path).load()
    root = reactid_tree(tmp_path / "t")
    (root / "Jsons/timeline_annotations/part_001.json").write_text(
        '{"x.mp4": {"events": [{"start": 0, "end": 1, "action": "jump"}]}}'
    )
    with pytest.raises(InputError, match="'x.mp4'.*unknown event field 'action'"):
        ReactIdSource(root).load()
    (root / "Jsons/timeline_annotations/part_001.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="expected an object keyed by video file name"):
        ReactIdSource(root).load()
