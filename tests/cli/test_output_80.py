"""Output that reads in an 80-column log, and progress on long silent steps (issue 8 item 10)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from ipvgkit.progress import Recorder
from ipvgkit.stages.demo import DemoReport, _step
from ipvgkit.stages.doctor import run_checks
from tests.stages.test_generate import write_testset_c


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="80")
    return subprocess.run([sys.executable, "-m", "ipvgkit", *args], capture_output=True, text=True, env=env)


def test_doctor_table_fits_80_columns_and_keeps_names_whole():
    r = _run("doctor")
    lines = r.stdout.splitlines()
    assert lines and max(len(line) for line in lines) <= 80, r.stdout
    assert any("face-recognition-models" in line for line in lines)  # folded by column, not mid-word
    assert any("│ ok " in line for line in lines)


def test_cases_table_fits_80_columns(tmp_path):
    cases = write_testset_c(tmp_path / "ts", n=2)
    r = _run("cases", str(cases))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    rows = [line for line in lines if line[:1] in "┏┃┡│└"]  # the title is a path, left whole
    assert rows and max(len(line) for line in rows) <= 80
    assert any("a man number 1" in line for line in lines)


def test_doctor_reports_each_check_as_progress():
    rec = Recorder()
    checks = run_checks(progress=rec)
    assert rec.events[0] == ("phase", "checking", len(checks))
    assert rec.count("advance") == len(checks) and rec.count("status") == len(checks)
    assert json.dumps([c.to_dict() for c in checks])


def test_each_demo_step_is_a_progress_phase():
    rec = Recorder()
    report = DemoReport(out=__import__("pathlib").Path("x"))
    assert _step(report, "test sets", rec, lambda: ("written", "x"))
    assert ("phase", "test sets", 1) in rec.events and rec.count("advance") == 1
    assert report.steps[0].ok and report.steps[0].detail == "written"


def test_demo_table_keeps_step_names_whole_in_80_columns(monkeypatch, capsys):
    from pathlib import Path

    from ipvgkit.cli.demo import _print_report
    from ipvgkit.stages.demo import DemoStep

    monkeypatch.setenv("COLUMNS", "80")
    report = DemoReport(out=Path("/tmp/x"))
    report.steps = [
        DemoStep("pack sequential_action_results.zip", True, "2 videos, checked again from the zip " * 3),
        DemoStep("score generated Track 1 (offline preset)", True, "facesim_dlib=0.000, motion=0.004"),
    ]
    _print_report(report)
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert any("sequential_action_results.zip" in line for line in lines)  # not cut mid-word
