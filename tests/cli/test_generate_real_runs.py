"""``ipvg generate`` with the real-run options (flow shift, LoRA specs and fusing, cache hooks, no-CFG,
text-encoder placement, VAE tiling) on tiny-wan: what was used is in generation.jsonl."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ipvgkit.cli.app import app
from ipvgkit.stages.generate import read_generation_log
from tests.models.conftest import save_tiny_lora
from tests.stages.test_generate import write_testset_c

runner = CliRunner()
SMALL = ["--model", "tiny-wan", "--identity", "none", "--frames", "9", "--height", "32", "--width", "32"]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


def invoke(args: list[str], models_dir: Path):
    return runner.invoke(app, ["generate", *args, "--models-dir", str(models_dir), "--quiet"])


def test_real_run_options_are_used_and_recorded(tmp_path, models_dir):
    lora = save_tiny_lora(models_dir, tmp_path / "lora")
    cases = write_testset_c(tmp_path / "ts", n=1)
    out = tmp_path / "out"
    args = [
        "--track", "2", "--cases", str(cases), *SMALL, "--out", str(out), "--steps", "4", "--guidance", "1",
        "--identity", "none", "--flow-shift", "5", "--lora", f"{lora}:0.5", "--lora-fuse",
        "--cache", "taylorseer", "--text-encoder", "offload", "--no-vae-tiling",
    ]  # fmt: skip
    r = invoke(args, models_dir)
    assert r.exit_code == 0, r.output
    assert (out / "1.mp4").is_file()
    (rec,) = read_generation_log(out)
    b = rec["backend"]
    assert b["flow_shift"] == 5.0 and b["flow_shift_source"] == "given (--flow-shift)"
    assert b["loras"] == [
        {"path": str(lora / "pytorch_lora_weights.safetensors"), "scale": 0.5, "experts": "both"}
    ]
    assert b["lora_fuse"] is True and b["cache"] == "taylorseer" and b["text_encoder"] == "offload"
    assert b["cfg"] is False and b["negative_prompt_used"] is None
    assert b["vae_tiling_used"] is False and b["vae_tiling_source"] == "given (--no-vae-tiling)"


def test_defaults_are_recorded_with_how_they_were_chosen(tmp_path, models_dir):
    cases = write_testset_c(tmp_path / "ts", n=1)
    out = tmp_path / "out"
    r = invoke(
        ["--cases", str(cases), *SMALL, "--steps", "2", "--identity", "none", "--out", str(out)], models_dir
    )
    assert r.exit_code == 0, r.output
    said = " ".join(r.stdout.split())
    assert "default: flow shift 3: derived from the size 32x32" in said
    assert "default: VAE tiling off: off by default below 720p" in said
    assert "default: negative prompt: Wan's default negative prompt" in said
    (rec,) = read_generation_log(out)
    b = rec["backend"]
    assert b["flow_shift"] == 3.0 and "derived from the size 32x32" in b["flow_shift_source"]
    assert b["negative_prompt_used"].startswith("色调艳丽") and "Wan's default" in b["negative_prompt_source"]
    assert b["vae_tiling_used"] is False and "below 720p" in b["vae_tiling_source"]


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--lora", "x.safetensors:hihg"], "neither a scale"),
        (["--set", "model_options.cache=mag"], "needs per-checkpoint magnitude ratios"),
        (["--flow-shift", "0"], "flow_shift must be > 0"),
        (["--text-encoder", "cpu", "--offload", "model"], "cannot be combined"),
    ],
)
def test_bad_real_run_options_exit_2(tmp_path, models_dir, extra, match):
    cases = write_testset_c(tmp_path / "ts", n=1)
    out = tmp_path / "out"
    r = invoke(["--cases", str(cases), *SMALL, "--steps", "2", "--out", str(out), *extra], models_dir)
    assert r.exit_code == 2, r.output
    assert match in " ".join(r.output.split())
    assert not (out / "1.mp4").exists()
