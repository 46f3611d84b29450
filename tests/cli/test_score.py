"""``ipvg score`` through typer's CliRunner: exit codes, messages, --json, --select."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ipvgkit.cli.app import app
from tests.stages.test_score import make_submission, make_testset

MOTION = "motion_amplitude,dynamic_degree"


def _run(*args: str):
    return CliRunner().invoke(app, ["score", *args], env={"COLUMNS": "160"})


@pytest.fixture
def data(tmp_path, tom_hanks):
    ts = make_testset(tmp_path, tom_hanks, n_ids=1, prompts=2)
    sub = make_submission(tmp_path, ts, tom_hanks)
    return ts, sub


def test_complete_submission_exits_0_with_a_table(tmp_path, data):
    ts, sub = data
    r = _run(str(sub), "--cases", str(ts), "--metrics", MOTION, "-o", str(tmp_path / "out"), "-q")
    assert r.exit_code == 0, r.output
    assert "motion_amplitude" in r.output and "total" in r.output
    assert (tmp_path / "out" / "report.html").is_file()


def test_json_output(tmp_path, data):
    ts, sub = data
    r = _run(str(sub), "--cases", str(ts), "--metrics", MOTION, "-o", str(tmp_path / "out"), "--json", "-q")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["scored"] == 2 and data["problems"] == []
    assert set(data["summary"]["metrics"]) == {"motion_amplitude", "dynamic_degree"}
    again = json.loads(
        _run(
            str(sub), "--cases", str(ts), "--metrics", MOTION, "-o", str(tmp_path / "out"), "--json", "-q"
        ).stdout
    )
    assert (again["scored"], again["reused"]) == (0, 2)


def test_missing_video_exits_1_naming_it(tmp_path, data):
    ts, sub = data
    (sub / "id001" / "prompt2.mp4").unlink()
    r = _run(str(sub), "--cases", str(ts), "--metrics", MOTION, "-o", str(tmp_path / "out"), "-q")
    assert r.exit_code == 1
    assert "id001/prompt2.mp4: missing video" in r.output
    rows = [json.loads(x) for x in (tmp_path / "out" / "scores.jsonl").read_text().splitlines()]
    assert rows[1]["errors"]["motion_amplitude"] == "missing video"


def test_usage_errors_exit_2(tmp_path, data):
    ts, sub = data
    out = str(tmp_path / "out")
    r = _run(str(sub), "--cases", str(ts), "--metrics", "nope", "-o", out)
    assert r.exit_code == 2 and "unknown metric 'nope'" in r.output
    r = _run(str(sub), "--cases", str(ts), "--preset", "nope", "-o", out)
    assert r.exit_code == 2 and "unknown preset" in r.output
    r = _run(str(sub), "--cases", str(ts), "--preset", "offline", "--metrics", MOTION, "-o", out)
    assert r.exit_code == 2 and "not both" in r.output
    r = _run(str(sub), str(sub), "--cases", str(ts), "--metrics", MOTION, "-o", out)
    assert r.exit_code == 2 and "--select" in r.output
    r = _run(str(sub), "--cases", str(ts), "--metrics", MOTION)
    assert r.exit_code == 2 and "-o OUTDIR" in r.output


def test_missing_weights_exit_1_with_the_file_and_source(tmp_path, data):
    ts, sub = data
    r = _run(
        str(sub), "--cases", str(ts), "--preset", "vbench", "--models-dir", str(tmp_path / "none"),
        "-o", str(tmp_path / "out"),
    )  # fmt: skip
    assert r.exit_code == 1
    assert "dino-vitb16" in r.output and "facebook/dino-vitb16" in r.output


def test_select_best_of_n(tmp_path, tom_hanks):
    ts = make_testset(tmp_path, tom_hanks, n_ids=1, prompts=1)
    a = make_submission(tmp_path / "a", ts, tom_hanks, shift=0).rename(tmp_path / "still")
    b = make_submission(tmp_path / "b", ts, tom_hanks, shift=6).rename(tmp_path / "moving")
    best = tmp_path / "best"
    args = [str(a), str(b), "--cases", str(ts), "--metrics", MOTION, "--select", str(best)]
    r = _run(*args, "-o", str(tmp_path / "scores"), "--json", "-q")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["copied"] == 1 and out["cases"]["id001/prompt1.mp4"]["chosen"] == "moving"
    sel = json.loads((tmp_path / "scores" / "selection.json").read_text())
    totals = sel["cases"]["id001/prompt1.mp4"]["totals"]
    assert sel["cases"]["id001/prompt1.mp4"]["chosen"] == "moving" and totals["moving"] > totals["still"]
    assert (best / "id001" / "prompt1.mp4").read_bytes() == (b / "id001" / "prompt1.mp4").read_bytes()
    assert (tmp_path / "scores" / "still" / "summary.json").is_file()


def test_help_has_examples():
    r = CliRunner().invoke(app, ["score", "--help"], env={"COLUMNS": "160"})
    assert r.exit_code == 0 and "--select" in r.output and "Examples" in r.output
