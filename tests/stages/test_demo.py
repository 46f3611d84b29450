"""The demo chain end to end: real test sets, tiny-wan generation, real zips, offline scores."""

from __future__ import annotations

import json
import zipfile

import pytest

from ipvgkit.stages.demo import DemoConfig, run_demo


@pytest.mark.slow
def test_demo_runs_the_whole_chain_and_resumes(tmp_path):
    cfg = DemoConfig(
        out=tmp_path / "d",
        frames=5,
        height=32,
        width=32,
        steps=2,
        pan_frames=9,
        pan_size=128,
        models_dir=tmp_path / "models",
    )
    report = run_demo(cfg)
    failed = [(s.name, s.detail) for s in report.steps if not s.ok]
    assert not failed, failed
    assert set(report.zips) == {
        "reference_facial_results.zip",
        "facial_results.zip",
        "sequential_action_results.zip",
    }

    def files(zip_path):
        with zipfile.ZipFile(zip_path) as zf:
            return sorted(n for n in zf.namelist() if not n.endswith("/"))

    assert files(report.zips["facial_results.zip"]) == [
        "submission/1.mp4",
        "submission/2.mp4",
        "submission/3.mp4",
    ]
    assert files(report.zips["sequential_action_results.zip"]) == ["submission/1.mp4", "submission/2.mp4"]

    # A few LoRA steps on the prepared demo data; generation used the LoRA with its trained method.
    assert (tmp_path / "d/finetune/final/pytorch_lora_weights.safetensors").is_file()
    from ipvgkit.stages.generate import read_generation_log

    rec = read_generation_log(tmp_path / "d/generated/track1")[0]
    assert rec["settings"]["lora"] == [str(tmp_path / "d/finetune/final")]
    assert rec["settings"]["identity"] == "reference-concat"

    # The reference pans keep the identity; tiny-wan's noise does not.
    ref = json.loads((tmp_path / "d/scores/reference-track1/summary.json").read_text())
    gen = json.loads((tmp_path / "d/scores/generated-track1/summary.json").read_text())
    assert ref["metrics"]["facesim_dlib"]["mean"] > 0.5
    assert ref["metrics"]["facesim_dlib"]["mean"] > gen["metrics"]["facesim_dlib"]["mean"]
    assert (tmp_path / "d/scores/reference-track1/report.html").is_file()

    # Rerun: everything is reused, nothing regenerated.
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "d/generated").rglob("*.mp4")}
    again = run_demo(cfg)
    assert again.ok
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    gen_steps = [s for s in again.steps if s.name.startswith("generate")]
    assert all("0 generated" in s.detail for s in gen_steps)
