"""Test-set loaders (SPEC §1 formats A, B, C) on real files written in tmp_path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from ipvgkit.data.cases import Event
from ipvgkit.data.testsets import TestSet, load_cases, load_testset
from ipvgkit.errors import CaseError, InputError, UsageError


def _img(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def _webp(dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 12), (200, 120, 40)).save(dst, "WEBP")
    return dst


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _json(path: Path, data) -> Path:
    return _write(path, json.dumps(data, indent=2))


def _problems(ts: TestSet) -> dict[str, str]:
    return {e.case_key: e.detail for e in ts.errors}


# ---------------------------------------------------------------------------------------------- format A


@pytest.fixture
def format_a(tmp_path, tom_hanks, group_photo) -> Path:
    root = tmp_path / "testset"
    _img(tom_hanks, root / "id001" / "face.png")
    _img(group_photo, root / "id001" / "extra.jpg")
    _write(root / "id001" / "prompt1.txt", "A man walks in a park.\n")
    _write(root / "id001" / "prompt2.txt", "A man reads. 0-2s: [opens the book]; 2-5s: [turns a page]")
    _write(root / "id001" / "prompt10.txt", "A man sits.")
    _webp(root / "id002" / "ref.webp")
    _write(root / "id002" / "prompt1.txt", "\ufeffA woman sings.")
    _write(root / "id002" / "prompt2.txt", "A woman. 0-0.5: [stands]; 0.5-1: [sits]")
    (root / ".cache").mkdir()
    _write(root / ".cache" / "prompt1.txt", "ignored")
    (root / "notes").mkdir()
    _write(root / "README.txt", "not a case")
    return root


def test_format_a_cases(format_a, tom_hanks):
    ts = load_testset(format_a)
    assert ts.format == "A" and ts.path == format_a and not ts.errors
    ids = [c.case_id for c in ts.cases]
    assert ids == ["id001/prompt1", "id001/prompt2", "id001/prompt10", "id002/prompt1", "id002/prompt2"]
    assert ts.expected_outputs() == [f"{i}.mp4" for i in ids]
    first = ts.cases[0]
    assert first.track == 1 and first.prompt == "A man walks in a park." and first.timeline is None
    assert [p.name for p in first.ref_images] == ["extra.jpg", "face.png"]
    assert all(p.is_absolute() and p.is_file() for p in first.ref_images)
    assert first.to_dict()["timeline_units"] is None
    timed = ts.cases[1]
    assert timed.track == 2 and timed.prompt == "A man reads." and timed.timeline_units == "seconds"
    assert timed.timeline == [Event(0, 2, "opens the book"), Event(2, 5, "turns a page")]
    assert ts.cases[3].prompt == "A woman sings."  # BOM stripped
    assert ts.cases[3].ref_images[0].suffix == ".webp"
    assert ts.cases[4].timeline_units == "fraction"  # no "s" and all within [0, 1]


def test_format_a_units_and_track_overrides(format_a):
    ts = load_testset(format_a, timeline_units="seconds", track=2)
    assert {c.track for c in ts.cases} == {2}
    assert ts.cases[4].timeline_units == "seconds"
    ts = load_testset(format_a, track=1)
    assert ts.cases[1].track == 1 and ts.cases[1].timeline is not None
    _write(format_a / "id001" / "prompt2.txt", "A man. 0-2s: [a]; 2-5s: [b]")
    with pytest.raises(
        CaseError, match=r"case id001/prompt2: prompt2.txt: event 1 .0-2: a.: .*within \[0, 1\]"
    ):
        load_cases(format_a, timeline_units="fraction")


def test_format_a_malformed_cases(format_a, tmp_path):
    _write(format_a / "id003" / "prompt1.txt", "No image here.")
    _write(format_a / "id003" / "prompt2.txt", "Nor here.")
    _img(Path(format_a / "id001" / "face.png"), format_a / "id004" / "face.png")
    _write(format_a / "id004" / "prompt1.txt", "   \n")
    _write(format_a / "id004" / "prompt2.txt", "A man. 0-3s: [walks in]; 2-5s: [waves]")
    (format_a / "id004" / "prompt3.txt").write_bytes(b"caf\xe9 \xff")
    _img(Path(format_a / "id001" / "face.png"), format_a / "id005" / "face.png")  # no prompt file
    _write(format_a / "id006" / "ref.png", "this is not a PNG")
    _write(format_a / "id006" / "prompt1.txt", "A fake image.")
    ts = load_testset(format_a)
    problems = _problems(ts)
    assert len(ts.cases) == 5
    assert set(problems) == {
        "id003/prompt1",
        "id003/prompt2",
        "id004/prompt1",
        "id004/prompt2",
        "id004/prompt3",
        "id005",
        "id006/prompt1",
    }
    assert "no reference image" in problems["id003/prompt1"]
    assert "empty prompt" in problems["id004/prompt1"]
    assert "event 2 '2-5: waves': overlaps with event 1" in problems["id004/prompt2"]
    assert "not UTF-8" in problems["id004/prompt3"]
    assert "no prompt1.txt" in problems["id005"]
    assert "not a readable image" in problems["id006/prompt1"] and "ref.png" in problems["id006/prompt1"]
    outs = ts.expected_outputs()
    assert "id003/prompt2.mp4" in outs and "id006/prompt1.mp4" in outs and len(outs) == 11
    with pytest.raises(CaseError) as info:
        load_cases(format_a)
    assert info.value.case_key == "id003/prompt1"
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------------- format B


@pytest.fixture
def format_b(tmp_path, tom_hanks, group_photo) -> Path:
    root = tmp_path / "track1"
    _img(tom_hanks, root / "images" / "id001.png")
    _img(group_photo, root / "images" / "id002.jpg")
    _webp(root / "images" / "id003.webp")
    return _json(
        root / "eval.json",
        [
            {"img": "images/id001.png", "prompt": "A man smiles."},
            {"img": "images/id002.jpg", "prompt": " People talk. ", "seed": 7},
            {"img": "./images/id003.webp", "prompt": "A color patch."},
        ],
    )


def test_format_b_cases(format_b):
    ts = load_testset(format_b)
    assert ts.format == "B" and not ts.errors
    assert [c.case_id for c in ts.cases] == ["1", "2", "3"]
    assert ts.expected_outputs() == ["1.mp4", "2.mp4", "3.mp4"]
    assert [c.track for c in ts.cases] == [1, 1, 1]
    assert ts.cases[1].prompt == "People talk." and ts.cases[1].extra == {"seed": 7}
    assert ts.cases[0].ref_images == [(format_b.parent / "images" / "id001.png").resolve()]
    assert ts.cases[2].ref_images[0].name == "id003.webp"
    assert ts.cases[0].source.endswith("eval.json#1")
    assert load_testset(format_b, track=2).cases[0].track == 2


def test_folder_holding_eval_json_uses_the_json(format_b):
    # even with an id/prompt folder beside it, the eval.json wins
    _img(format_b.parent / "images" / "id001.png", format_b.parent / "id001" / "a.png")
    _write(format_b.parent / "id001" / "prompt1.txt", "x")
    ts = load_testset(format_b.parent)
    assert ts.format == "B" and ts.path == format_b and len(ts.cases) == 3


@pytest.mark.parametrize(
    "raw",
    [
        "images/id001.png",  # relative to the json's folder
        "./images/id001.png",
        "../images/id001.png",  # written for a json one folder lower
        "../../data/track1/images/id001.png",
        "/home/organiser/track1/images/id001.png",  # absolute path of another machine
        "/mnt/x/images/id001.png",
        "id001.png",  # basename only: images/<basename>
        "C:\\Users\\org\\track1\\images\\id001.png",  # Windows path
        "file:///srv/images/id001.png",
        "refs/people/id001.png",  # basename found in the json's folder tree (unique)
    ],
)
def test_format_b_path_variants(tmp_path, tom_hanks, raw):
    root = tmp_path / "track1"
    target = _img(tom_hanks, root / "images" / "id001.png")
    if raw.startswith("refs/"):
        target.unlink()
        target = _img(tom_hanks, root / "deep" / "er" / "id001.png")
    path = _json(root / "eval.json", [{"img": raw, "prompt": "A man."}])
    case = load_cases(path)[0]
    assert case.ref_images == [target.resolve()]


def test_absolute_and_real_parent_paths_that_exist_are_used_as_given(tmp_path, tom_hanks):
    outside = _img(tom_hanks, tmp_path / "shared" / "face.png")
    path = _json(
        tmp_path / "sets" / "t1" / "eval.json",
        [{"img": str(outside), "prompt": "a"}, {"img": "../../shared/face.png", "prompt": "b"}],
    )
    cases = load_cases(path)
    assert [c.ref_images for c in cases] == [[outside.resolve()], [outside.resolve()]]


def test_ambiguous_basename_is_an_error(tmp_path, tom_hanks):
    root = tmp_path / "t"
    _img(tom_hanks, root / "a" / "face.png")
    _img(tom_hanks, root / "b" / "face.png")
    ts = load_testset(_json(root / "eval.json", [{"img": "/elsewhere/face.png", "prompt": "x"}]))
    assert "ambiguous" in _problems(ts)["1"] and "/elsewhere/face.png" in _problems(ts)["1"]


def test_format_b_malformed_cases(tmp_path, tom_hanks):
    root = tmp_path / "t"
    _img(tom_hanks, root / "images" / "ok.png")
    path = _json(
        root / "eval.json",
        [
            {"img": "images/ok.png", "prompt": "fine"},
            {"img": "images/missing.png", "prompt": "no file"},
            {"prompt": "no img"},
            {"img": "images/ok.png", "prompt": "  "},
            {"img": "images/ok.png", "prompt": 42},
            "just a string",
            {"img": [], "prompt": "empty list"},
        ],
    )
    ts = load_testset(path)
    assert [c.case_id for c in ts.cases] == ["1"]
    p = _problems(ts)
    assert "reference image not found: 'images/missing.png'" in p["2"]
    assert "missing 'img'" in p["3"]
    assert "empty 'prompt'" in p["4"]
    assert "'prompt' must be text" in p["5"]
    assert "must be a JSON object" in p["6"]
    assert "non-empty list of paths" in p["7"]
    assert ts.expected_outputs() == [f"{i}.mp4" for i in range(1, 8)]
    with pytest.raises(CaseError, match=r"^case 2: reference image not found"):
        load_cases(path)


# ---------------------------------------------------------------------------------------------- format C


def _c_entry(img: str, captions, labels=("man",), prompt="A man in a kitchen."):
    return {
        "img_paths": [img],
        "class_label": list(labels),
        "global_prompt": prompt,
        "temporal_captions": captions,
    }


FRACTION = [
    {"start": 0.0, "end": 0.4, "description": "picks up a cup"},
    {"start": 0.4, "end": 1.0, "description": "drinks"},
]
SECONDS = [
    {"start": 0, "end": 2, "description": "opens the fridge"},
    {"start": 2, "end": 5, "description": "takes out milk"},
]


@pytest.fixture
def c_root(tmp_path, tom_hanks, astronaut) -> Path:
    root = tmp_path / "track2"
    _img(tom_hanks, root / "imgs" / "a.png")
    _img(astronaut, root / "imgs" / "b.png")
    return root


def test_format_c_dict(c_root):
    data = {
        "2": _c_entry("imgs/b.png", SECONDS, labels=("woman", "cup")),
        "10": _c_entry("imgs/a.png", []),
        "1": _c_entry("imgs/a.png", FRACTION) | {"img_paths": ["imgs/a.png", "imgs/b.png"], "style": "x"},
    }
    ts = load_testset(_json(c_root / "eval.json", data))
    assert ts.format == "C" and not ts.errors
    assert [c.case_id for c in ts.cases] == ["1", "2", "10"]  # numeric keys in numeric order
    assert ts.expected_outputs() == ["1.mp4", "2.mp4", "10.mp4"]
    one, two, ten = ts.cases
    assert {c.track for c in ts.cases} == {2}
    assert one.timeline_units == "fraction" and one.timeline[0] == Event(0.0, 0.4, "picks up a cup")
    assert len(one.ref_images) == 2 and one.extra == {"style": "x"}
    assert two.timeline_units == "seconds" and two.class_labels == ["woman", "cup"]
    assert ten.timeline is None and ten.timeline_units is None
    assert one.prompt == "A man in a kitchen."
    assert set(one.to_dict()) == {
        "case_id",
        "track",
        "prompt",
        "ref_images",
        "output_name",
        "timeline",
        "timeline_units",
    }
    assert one.to_full_dict()["class_labels"] == ["man"]


def test_format_c_list_and_units_override(c_root):
    path = _json(c_root / "eval.json", [_c_entry("imgs/a.png", FRACTION), _c_entry("imgs/b.png", SECONDS)])
    ts = load_testset(path)
    assert [c.case_id for c in ts.cases] == ["1", "2"] and ts.expected_outputs() == ["1.mp4", "2.mp4"]
    assert [c.timeline_units for c in ts.cases] == ["fraction", "seconds"]
    forced = load_testset(path, timeline_units="seconds")
    assert [c.timeline_units for c in forced.cases] == ["seconds", "seconds"]
    assert forced.cases[0].timeline[1].end == 1.0
    frac = load_testset(path, timeline_units="fraction")
    assert [c.case_id for c in frac.cases] == ["1"]
    assert "event 1 '0-2: opens the fridge'" in _problems(frac)["2"]
    assert load_testset(path, track=1).cases[0].track == 1


def test_format_c_malformed_cases(c_root):
    data = {
        "1": _c_entry("imgs/a.png", [{"start": 0, "end": 3, "description": "a"}, SECONDS[1]]),
        "2": _c_entry("imgs/a.png", [{"start": 0, "end": 1}]),
        "3": _c_entry("imgs/nope.png", SECONDS),
        "4": {"img_paths": ["imgs/a.png"], "temporal_captions": SECONDS},
        "5": _c_entry("imgs/a.png", SECONDS, labels=(1,)),
        "6": _c_entry("imgs/a.png", "0-2s: a"),
        "../evil": _c_entry("imgs/a.png", SECONDS),
        "7": _c_entry("imgs/a.png", SECONDS),
    }
    ts = load_testset(_json(c_root / "eval.json", data))
    p = _problems(ts)
    assert [c.case_id for c in ts.cases] == ["7"]
    assert "event 2 '2-5: takes out milk': overlaps with event 1 '0-3: a'" in p["1"]
    assert "event 1" in p["2"] and "missing description" in p["2"]
    assert "imgs/nope.png" in p["3"]
    assert "missing 'global_prompt'" in p["4"]
    assert "'class_label' must be a list of text labels" in p["5"]
    assert "temporal_captions must be a list" in p["6"]
    assert "file name" in p["../evil"]
    assert "../evil.mp4" not in ts.expected_outputs() and "6.mp4" in ts.expected_outputs()
    assert all(str(e).startswith(f"case {e.case_key}: ") for e in ts.errors)


# ------------------------------------------------------------------------------------ unrecognised inputs


def test_missing_path(tmp_path):
    with pytest.raises(InputError, match="test set not found"):
        load_testset(tmp_path / "nope")


def test_invalid_json_names_file_and_line(tmp_path):
    path = _write(tmp_path / "eval.json", '[\n  {"img": "a.png",\n   "prompt": "x",,}\n]')
    with pytest.raises(InputError, match=r"eval\.json: invalid JSON at line 3"):
        load_testset(path)
    with pytest.raises(InputError, match="invalid JSON at line 3"):
        load_testset(tmp_path)  # a folder holding it


@pytest.mark.parametrize(
    "data",
    [[], {}, 42, "text", [1, 2], [{"foo": 1}], {"img": "a.png", "prompt": "single object"}],
)
def test_unrecognised_json_lists_accepted_formats(tmp_path, data):
    with pytest.raises(InputError) as info:
        load_testset(_json(tmp_path / "x.json", data))
    msg = str(info.value)
    assert "accepted test sets" in msg and "(A)" in msg and "(C)" in msg and "\n" not in msg


def test_unrecognised_folder_and_file(tmp_path, tom_hanks):
    folder = tmp_path / "stuff"
    _img(tom_hanks, folder / "id001" / "a.png")  # images but no prompt files anywhere
    _json(folder / "cases.json", [])
    with pytest.raises(InputError, match=r"not a test set \(it holds cases\.json: pass the file itself\)"):
        load_testset(folder)
    with pytest.raises(InputError, match="accepted test sets"):
        load_testset(_write(tmp_path / "cases.csv", "img,prompt\n"))
    bad = tmp_path / "latin1.json"
    bad.write_bytes(b'[{"img": "a.png", "prompt": "caf\xe9"}]')
    with pytest.raises(InputError, match="not UTF-8"):
        load_testset(bad)


def test_duplicate_top_level_keys_are_an_error(tmp_path):
    text = '{"1": {"img_paths": ["a.png"], "global_prompt": "x", "dup": 1, "dup": 2},\n "1": {}, "2": {}}'
    with pytest.raises(InputError, match=r"eval\.json: duplicate case key\(s\) '1'; keys must be unique"):
        load_testset(_write(tmp_path / "eval.json", text))


def test_single_id_folder_hint(format_a):
    with pytest.raises(InputError, match="looks like one id folder: pass its parent"):
        load_testset(format_a / "id001")


def test_format_b_as_a_keyed_dict(format_b):
    entries = json.loads(format_b.read_text())
    path = _json(
        format_b.parent / "keyed.json",
        {"a7": entries[0], "b2": entries[1] | {"img": ["images/id001.png", "images/id002.jpg"]}},
    )
    ts = load_testset(path)
    assert ts.format == "B" and [c.case_id for c in ts.cases] == ["a7", "b2"]
    assert ts.expected_outputs() == ["a7.mp4", "b2.mp4"] and len(ts.cases[1].ref_images) == 2


def test_prompt_timeline_false_positive_is_documented(tmp_path, tom_hanks):
    root = tmp_path / "s"
    _img(tom_hanks, root / "id001" / "a.png")
    _write(root / "id001" / "prompt1.txt", "A 3-4 year old child plays.")
    _write(root / "id001" / "prompt2.txt", "Ages 3-4: children play.")
    one, two = load_cases(root)
    assert one.timeline is None and one.track == 1
    assert two.timeline == [Event(3, 4, "children play.")] and two.prompt == "Ages"


def test_bad_options_are_usage_errors(format_b):
    with pytest.raises(UsageError, match="--timeline-units"):
        load_testset(format_b, timeline_units="frames")
    with pytest.raises(UsageError, match="--track"):
        load_testset(format_b, track=3)
