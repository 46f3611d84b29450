"""``ipvg cases`` through typer's CliRunner on real test sets written in tmp_path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ipvgkit.cli.app import app

KEYS = {"case_id", "track", "prompt", "ref_images", "output_name", "timeline", "timeline_units"}


def _run(*args: str):
    return CliRunner().invoke(app, ["cases", *args], env={"COLUMNS": "160"})


@pytest.fixture
def track2(tmp_path, tom_hanks) -> Path:
    root = tmp_path / "track2"
    (root / "imgs").mkdir(parents=True)
    shutil.copyfile(tom_hanks, root / "imgs" / "a.png")
    data = {
        "1": {
            "img_paths": ["/organiser/data/imgs/a.png"],
            "class_label": ["man"],
            "global_prompt": "A man in a kitchen pours coffee and then drinks it slowly by the window.",
            "temporal_captions": [
                {"start": 0, "end": 0.5, "description": "pours coffee"},
                {"start": 0.5, "end": 1, "description": "drinks"},
            ],
        },
        "2": {
            "img_paths": ["imgs/a.png"],
            "class_label": ["man"],
            "global_prompt": "A man.",
            "temporal_captions": [
                {"start": 0, "end": 2, "description": "sits"},
                {"start": 2, "end": 4.5, "description": "stands"},
            ],
        },
    }
    (root / "eval.json").write_text(json.dumps(data), encoding="utf-8")
    return root


@pytest.fixture
def track_a(tmp_path, tom_hanks) -> Path:
    root = tmp_path / "brief"
    (root / "id001").mkdir(parents=True)
    shutil.copyfile(tom_hanks, root / "id001" / "ref.png")
    (root / "id001" / "prompt1.txt").write_text("A man waves.", encoding="utf-8")
    (root / "id001" / "prompt2.txt").write_text("A man. 0-2s: [walks in]; 2-5s: [waves]", encoding="utf-8")
    return root


def test_json_output_has_exactly_the_documented_keys(track2):
    result = _run(str(track2), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [set(d) for d in data] == [KEYS, KEYS]
    one, two = data
    assert one["case_id"] == "1" and one["track"] == 2 and one["output_name"] == "1.mp4"
    assert one["timeline_units"] == "fraction"
    assert one["timeline"] == [
        {"start": 0.0, "end": 0.5, "text": "pours coffee"},
        {"start": 0.5, "end": 1.0, "text": "drinks"},
    ]
    assert Path(one["ref_images"][0]) == (track2 / "imgs" / "a.png").resolve()
    assert two["timeline_units"] == "seconds"


def test_units_and_track_options(track2):
    data = json.loads(_run(str(track2 / "eval.json"), "--json", "--timeline-units", "seconds").stdout)
    assert [d["timeline_units"] for d in data] == ["seconds", "seconds"]
    data = json.loads(_run(str(track2), "--json", "--track", "1").stdout)
    assert [d["track"] for d in data] == [1, 1]


def test_format_a_json_and_table(track_a):
    result = _run(str(track_a), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [(d["case_id"], d["track"], d["timeline"] is None) for d in data] == [
        ("id001/prompt1", 1, True),
        ("id001/prompt2", 2, False),
    ]
    assert data[1]["prompt"] == "A man." and data[1]["timeline_units"] == "seconds"
    table = _run(str(track_a))
    assert table.exit_code == 0, table.output
    for text in ("id001/prompt2", "2 events, 0-5 s", "2 valid case(s), 0 malformed", "format A"):
        assert text in table.stdout


def test_table_truncates_long_prompts(track2):
    result = _run(str(track2))
    assert result.exit_code == 0
    assert "1.mp4" in result.stdout and "0-1 of video" in result.stdout
    assert "slowly by the window" not in result.stdout.replace("\n", " ")


def test_malformed_cases_exit_1_and_are_listed_on_stderr(track2, tom_hanks):
    data = json.loads((track2 / "eval.json").read_text())
    data["3"] = dict(data["2"], temporal_captions=[{"start": 0, "end": 3, "description": "a"}] * 2)
    data["4"] = dict(data["2"], img_paths=["imgs/missing.png"])
    (track2 / "eval.json").write_text(json.dumps(data))
    result = _run(str(track2), "--json")
    assert result.exit_code == 1
    assert [d["case_id"] for d in json.loads(result.stdout)] == ["1", "2"]  # valid cases still listed
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: 2 malformed case(s) in ")
    assert lines[1].strip().startswith("case 3: temporal_captions: event 2 '0-3: a': ")
    assert lines[2].strip().startswith("case 4: reference image not found: 'imgs/missing.png'")
    assert len(lines) == 3


def test_missing_testset_exits_1_with_one_line(tmp_path):
    result = _run(str(tmp_path / "nope"))
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: test set not found: {tmp_path / 'nope'}"


def test_invalid_json_exits_1_naming_file_and_line(tmp_path):
    (tmp_path / "eval.json").write_text('{\n"1": {,}\n}')
    result = _run(str(tmp_path / "eval.json"))
    assert result.exit_code == 1
    assert "eval.json: invalid JSON at line 2" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unrecognised_folder_exits_1(tmp_path):
    result = _run(str(tmp_path))
    assert result.exit_code == 1 and "accepted test sets" in result.stderr


@pytest.mark.parametrize("args", [["--timeline-units", "frames"], ["--track", "3"], ["--track", "two"], []])
def test_usage_errors_exit_2(track2, args):
    argv = [str(track2), *args] if args else []
    result = _run(*argv)
    assert result.exit_code == 2


def test_help_has_examples():
    result = CliRunner().invoke(app, ["cases", "--help"])
    assert result.exit_code == 0
    assert "Examples" in result.stdout and "ipvg cases eval.json" in result.stdout
