"""``ipvg finetune`` end to end: the done-when command, kill + resume, LoRAs loaded by plain diffusers
(a subprocess without ipvgkit) and by ``ipvg generate --lora``, ComfyUI export, usage errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from ipvgkit.cli.app import app
from ipvgkit.stages import finetune_ckpt as ck
from ipvgkit.stages.generate import read_generation_log
from tests.stages.finetune_prep import make_prep
from tests.stages.test_generate import write_testset_b

runner = CliRunner()
SMALL = ["--model", "tiny-wan", "--frames", "9", "--height", "32", "--width", "32", "--quiet"]
SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def prep(tmp_path_factory) -> Path:
    return make_prep(tmp_path_factory.mktemp("prep"))


@pytest.fixture(scope="module")
def run(prep, models_dir, tmp_path_factory) -> Path:
    """The done-when command (+ --export comfy)."""
    out = tmp_path_factory.mktemp("runs") / "run"
    args = [
        "finetune",
        "--data",
        str(prep),
        *SMALL,
        "--out",
        str(out),
        "--max-steps",
        "4",
        "--export",
        "comfy",
    ]
    r = runner.invoke(app, [*args, "--models-dir", str(models_dir), "--set", "lora.rank=4"])
    assert r.exit_code == 0, r.output
    assert "4 steps" in r.output and "last loss" in r.output
    return out


def _cli(args: list[str], models_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "ipvgkit", "finetune", *args, "--models-dir", str(models_dir)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_done_when_run_writes_the_lora_records_and_checkpoint(run):
    assert (run / "final" / "pytorch_lora_weights.safetensors").is_file()
    assert (run / "final" / "comfy_lora.safetensors").is_file()
    assert [r["step"] for r in ck.read_metrics(run)] == [1, 2, 3, 4]
    assert (run / "loss.svg").is_file() and [s for s, _ in ck.list_checkpoints(run)] == [4]


PLAIN_DIFFUSERS = r"""
import sys, torch
from diffusers import WanPipeline
model, lora = sys.argv[1], sys.argv[2]
assert not any(m.startswith("ipvgkit") for m in sys.modules)
pipe = WanPipeline.from_pretrained(model)
x = torch.randn(1, 16, 2, 4, 4, generator=torch.Generator().manual_seed(0))
ctx = torch.randn(1, 8, 32, generator=torch.Generator().manual_seed(1))
def out():
    with torch.no_grad():
        return pipe.transformer(hidden_states=x, timestep=torch.tensor([500.0]), encoder_hidden_states=ctx)[0]
base = out()
pipe.load_lora_weights(lora)
a = out()
pipe.unload_lora_weights()
pipe.load_lora_weights(lora, weight_name="comfy_lora.safetensors")
b = out()
assert not torch.allclose(a, base), "the LoRA changed nothing"
torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
print("OK", float((a - base).abs().max()))
"""


def test_plain_diffusers_loads_the_lora_and_the_comfy_export(run, models_dir):
    r = subprocess.run(
        [sys.executable, "-c", PLAIN_DIFFUSERS, str(models_dir / "tiny-wan"), str(run / "final")],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr[-2000:]
    comfy = load_file(str(run / "final" / "comfy_lora.safetensors"))
    assert "diffusion_model.blocks.0.self_attn.q.lora_A.weight" in comfy
    assert "diffusion_model.blocks.1.cross_attn.o.alpha" in comfy


def test_generate_with_the_lora_uses_the_trained_identity_method(run, models_dir, tmp_path):
    cases = write_testset_b(tmp_path / "ts", n=1)
    out = tmp_path / "sub"
    args = ["generate", "--track", "1", "--cases", str(cases), *SMALL, "--steps", "2", "--out", str(out)]
    r = runner.invoke(app, [*args, "--lora", str(run / "final"), "--models-dir", str(models_dir)])
    assert r.exit_code == 0, r.output
    (rec,) = read_generation_log(out)
    assert rec["status"] == "ok"
    assert rec["settings"]["identity"] == "reference-concat"  # --identity auto, from RUN/final


def test_kill_then_resume_equals_an_uninterrupted_run(prep, models_dir, tmp_path):
    args = ["--data", str(prep), *SMALL, "--max-steps", "6", "--set", "checkpoint_every=2",
            "--set", "grad_accum=2", "--set", "lora.rank=4"]  # fmt: skip
    straight = _cli([*args, "--out", str(tmp_path / "a")], models_dir)
    assert straight.wait(timeout=600) == 0, straight.stderr.read()[-2000:]
    killed = tmp_path / "b"
    p = _cli([*args, "--out", str(killed)], models_dir)
    deadline = time.time() + 600
    while not ck.list_checkpoints(killed) and time.time() < deadline and p.poll() is None:
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait()
    steps = [s for s, _ in ck.list_checkpoints(killed)]
    assert steps and steps[-1] < 6 and not (killed / "final").exists(), "the kill came too late"
    resumed = _cli([*args, "--out", str(killed), "--resume"], models_dir)
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()[-2000:]
    la = [r["loss"] for r in ck.read_metrics(tmp_path / "a")]
    lb = [r["loss"] for r in ck.read_metrics(killed)]
    assert la == lb and len(la) == 6  # bitwise equal losses, no step lost or repeated
    fa = load_file(str(tmp_path / "a" / "final" / "pytorch_lora_weights.safetensors"))
    fb = load_file(str(killed / "final" / "pytorch_lora_weights.safetensors"))
    assert fa.keys() == fb.keys() and all(torch.equal(fa[k], fb[k]) for k in fa)


def test_usage_errors_are_one_line(prep, models_dir, tmp_path):
    r = runner.invoke(
        app, ["finetune", "--data", str(prep), *SMALL, "--out", str(tmp_path / "r"), "--frames", "10"]
    )
    assert r.exit_code == 2 and "4k+1" in r.output
    r = runner.invoke(
        app, ["finetune", "--data", str(tmp_path / "none"), *SMALL, "--out", str(tmp_path / "r")]
    )
    assert r.exit_code == 1 and "no manifest" in r.output
    r = runner.invoke(app, ["finetune", "--data", str(prep), *SMALL, "--out", str(tmp_path / "r"),
                            "--set", "lora.targets=[nope]", "--models-dir", str(models_dir)])  # fmt: skip
    assert r.exit_code == 2 and "matches no linear layer" in r.output
    assert len([ln for ln in r.output.splitlines() if "error" in ln]) == 1
    r = runner.invoke(app, ["finetune", "--data", str(prep), *SMALL, "--out", str(tmp_path / "r"), "--resume",
                            "--resume-from", str(tmp_path)])  # fmt: skip
    assert r.exit_code == 2 and "exclude each other" in r.output


def test_json_output(run, prep, models_dir):
    r = runner.invoke(app, ["finetune", "--data", str(prep), *SMALL, "--out", str(run), "--max-steps", "4",
                            "--resume", "--json", "--models-dir", str(models_dir), "--set", "lora.rank=4",
                            "--export", "comfy"])  # fmt: skip
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout[r.stdout.index("{") :])
    assert data["steps"] == 4 and data["resumed_from"].endswith("checkpoint-000004")


def test_resume_spellings_map_to_the_flag_and_the_folder():
    from ipvgkit.cli.finetune import resume_args

    assert resume_args(["--resume", "auto", "--quiet"]) == ["--resume", "--quiet"]
    assert resume_args(["--resume", "run/c", "--json"]) == ["--resume-from", "run/c", "--json"]
    assert resume_args(["--resume=auto"]) == ["--resume"]
    assert resume_args(["--resume=run/c"]) == ["--resume-from", "run/c"]
    assert resume_args(["--json", "--resume"]) == ["--json", "--resume"]
    assert resume_args(["--resume", "--json"]) == ["--resume", "--json"]


@pytest.mark.parametrize("spelling", ["auto", "checkpoint"])
def test_resume_auto_and_resume_checkpoint(run, prep, models_dir, spelling):
    value = "auto" if spelling == "auto" else str(ck.list_checkpoints(run)[-1][1])
    r = runner.invoke(app, ["finetune", "--data", str(prep), *SMALL, "--out", str(run), "--max-steps", "4",
                            "--resume", value, "--json", "--models-dir", str(models_dir), "--set",
                            "lora.rank=4", "--export", "comfy"])  # fmt: skip
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout[r.stdout.index("{") :])
    assert data["steps"] == 4 and data["resumed_from"].endswith("checkpoint-000004")
