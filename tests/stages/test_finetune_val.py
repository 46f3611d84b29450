"""Validation every N steps during ipvg finetune on tiny-wan: videos, scores, jsonl, svg, resume."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
import torch

from ipvgkit.stages import finetune_val as fv
from ipvgkit.stages.finetune import finetune
from ipvgkit.stages.finetune_config import FinetuneConfig, LoraSettings
from ipvgkit.stages.finetune_val import ValidationSettings

from .finetune_prep import make_prep
from .test_generate import write_testset_b


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_validation_every_two_steps(tmp_path):
    prep = make_prep(tmp_path / "prep", n=2)
    cases = write_testset_b(tmp_path / "ts", n=1)
    models = tmp_path / "models"
    val = ValidationSettings(every=2, cases=cases, metrics=["motion_amplitude"], steps=2)
    run = tmp_path / "run"
    c = dict(data=prep, out=run, model="tiny-wan", models_dir=models, frames=9, height=32, width=32,
             max_steps=4, checkpoint_every=2, lora=LoraSettings(rank=4, alpha=4.0), validation=val)  # fmt: skip
    finetune(FinetuneConfig(**c))
    rows = fv.read_rows(run)
    assert [r["step"] for r in rows] == [2, 4]
    for r in rows:
        assert r["cases"] == 1 and r["ok"] == 1
        assert isinstance(r["motion_amplitude"], float) and r["motion_amplitude"] >= 0
        here = fv.step_dir(run, r["step"])
        assert (here / "videos" / "1.mp4").is_file()
        assert (here / "weights" / "pytorch_lora_weights.safetensors").is_file()
        scores = [json.loads(x) for x in (here / "scores" / "scores.jsonl").read_text().splitlines()]
        assert scores[0]["metrics"]["motion_amplitude"] == pytest.approx(r["motion_amplitude"])
        gen = [json.loads(x) for x in (here / "videos" / "generation.jsonl").read_text().splitlines()]
        assert gen[0]["settings"]["identity"] == "reference-concat"
        assert gen[0]["settings"]["lora"] == [str(here / "weights")]
    svg = ET.parse(run / fv.VALIDATION_SVG).getroot()
    assert sum(1 for e in svg if e.tag.endswith("polyline")) == 1
    # a resume from step 2 drops the step-4 record and redoes it with the same weights: same numbers
    import shutil

    from ipvgkit.stages import finetune_ckpt as ck

    shutil.rmtree(run / "final")
    for step, path in ck.list_checkpoints(run):
        if step == 4:
            shutil.rmtree(path)
    finetune(FinetuneConfig(**{**c, "resume": "auto"}))
    again = fv.read_rows(run)
    assert [r["step"] for r in again] == [2, 4]
    assert again[1]["motion_amplitude"] == pytest.approx(rows[1]["motion_amplitude"], abs=1e-6)


def test_settings_are_checked():
    with pytest.raises(ValueError, match="needs validation.cases"):
        ValidationSettings(every=2)
    with pytest.raises(ValueError, match="every must be >= 0"):
        ValidationSettings(every=-1)


def test_validation_of_a_face_adapter_run_from_the_cli(tmp_path):
    pytest.importorskip("dlib")
    from typer.testing import CliRunner

    from ipvgkit.cli.app import app

    prep = make_prep(tmp_path / "prep", n=2, faces=True)
    cases = write_testset_b(tmp_path / "ts", n=1)
    run = tmp_path / "run"
    args = ["finetune", "--data", str(prep), "--model", "tiny-wan", "--frames", "9", "--height", "32",
            "--width", "32", "--quiet", "--out", str(run), "--max-steps", "2", "--method", "face-adapter",
            "--models-dir", str(tmp_path / "models"), "--set", "validation.every=2",
            "--set", f"validation.cases={cases}", "--set", "validation.steps=2"]  # fmt: skip
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    (row,) = fv.read_rows(run)
    assert row["step"] == 2 and row["ok"] == 1 and isinstance(row["motion_amplitude"], float)
    here = fv.step_dir(run, 2)
    gen = json.loads((here / "videos" / "generation.jsonl").read_text().splitlines()[0])
    assert gen["settings"]["identity"] == "face-adapter"
    assert (here / "weights" / "face_adapter.safetensors").is_file()
