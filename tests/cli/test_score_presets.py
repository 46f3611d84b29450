"""``ipvg score --preset vbench`` says which flow and which model files it used, and how the total was made."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from ipvgkit.cli.app import app
from tests.metrics.tiny_models import make_tiny_dino
from tests.stages.test_score import make_submission, make_testset


def test_vbench_prints_flow_weights_and_partial_total(tmp_path, tom_hanks):
    ts = make_testset(tmp_path, tom_hanks, n_ids=1, prompts=2)
    sub = make_submission(tmp_path, ts, tom_hanks)
    models = tmp_path / "models"
    make_tiny_dino(models / "dino-vitb16")
    out = tmp_path / "out"
    args = ["score", str(sub), "--cases", str(ts), "--preset", "vbench", "--models-dir", str(models)]
    r = CliRunner().invoke(app, [*args, "-o", str(out), "-q"], env={"COLUMNS": "160"})
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "dynamic_degree: flow = opencv-farneback" in text
    assert "dynamic_degree: flow_substitution = RAFT-things" in text  # never silent
    assert f"subject_consistency: dino-vitb16 = {models / 'dino-vitb16'}" in text
    assert "partial total: normalise_run_values" in text and "dynamic_degree 0.333" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"]["dynamic_degree"]["recorded"]["flow"] == ["opencv-farneback"]
    assert summary["metrics"]["subject_consistency"]["aggregation"] == "frame_weighted"
    assert summary["total_detail"]["weights"] == {"dynamic_degree": 1 / 3, "subject_consistency": 2 / 3}
    rows = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert all(row["extra"]["dynamic_degree"]["flow"] == "opencv-farneback" for row in rows)
