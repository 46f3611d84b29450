"""Validation every N steps during ipvg finetune on tiny-wan: videos, scores, jsonl, svg, resume; the
live training model generates them (no second copy), exactly as the written weights do from disk, and
training is the same with or without validation."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
import torch

from ipvgkit.stages import finetune_val as fv
from ipvgkit.stages.finetune import finetune
from ipvgkit.stages.finetune_config import FinetuneConfig, LoraSettings, OptimSettings
from ipvgkit.stages.finetune_val import ValidationSettings

from .finetune_prep import make_prep
from .test_generate import write_testset_b

TINY = dict(model="tiny-wan", frames=9, height=32, width=32)

pytestmark = pytest.mark.usefixtures("one_thread")


def generate_from_disk(cases, out, models, weights, identity, adapter=False) -> dict[str, bytes]:
    """``ipvg generate --lora/--adapter WEIGHTS`` in its own run (the validation's settings): the
    decoded frames of each video."""
    from typer.testing import CliRunner

    from ipvgkit.cli.app import app

    args = ["generate", "--cases", str(cases), "--out", str(out), "--model", "tiny-wan", "--models-dir",
            str(models), "--identity", identity, "--steps", "2", "--guidance", "5.0", "--frames", "9",
            "--height", "32", "--width", "32", "--fps", "16", "--seed", "0", "--dtype", "fp32",
            "--device", "cpu", "--quiet"]  # fmt: skip
    args += ["--adapter", str(weights)] if adapter else []
    args += ["--lora", str(weights)] if (weights / "pytorch_lora_weights.safetensors").is_file() else []
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    return frames_of(out)


def frames_of(folder) -> dict[str, bytes]:
    from ipvgkit.media import read_video

    return {p.name: read_video(p).tobytes() for p in sorted(folder.glob("*.mp4"))}


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


def test_validation_uses_the_live_model_and_leaves_training_alone(tmp_path):
    """(1) the validation videos are the ones ``ipvg generate --lora step-N/weights`` makes from disk,
    bitwise (fp32 on CPU: the same LoRA tensors, the same scaling alpha / rank, the same seeds, so the
    same frames and the same H.264 bytes to decode); (3) the losses, grad norms and final LoRA of a run
    are bitwise the same with and without validation; the run says what validation loaded."""
    from safetensors.torch import load_file

    prep = make_prep(tmp_path / "prep", n=2)
    cases = write_testset_b(tmp_path / "ts", n=1)
    models = tmp_path / "models"
    c = dict(
        data=prep,
        models_dir=models,
        max_steps=4,
        checkpoint_every=4,
        lora=LoraSettings(rank=4, alpha=8.0),
        optim=OptimSettings(lr=0.05),
        **TINY,
    )  # fmt: skip (a large lr: the LoRA shows in the frames)
    val = ValidationSettings(every=2, cases=cases, metrics=["motion_amplitude"], steps=2)
    with_val = finetune(FinetuneConfig(**c, out=tmp_path / "a", validation=val))
    without = finetune(FinetuneConfig(**c, out=tmp_path / "b"))

    def numbers(run):
        rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        return [(r["step"], r["loss"], r["grad_norm"], r["lr"]) for r in rows]

    assert numbers(tmp_path / "a") == numbers(tmp_path / "b")
    a = load_file(str(with_val.final / "pytorch_lora_weights.safetensors"))
    b = load_file(str(without.final / "pytorch_lora_weights.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["step"] for r in fv.read_rows(tmp_path / "a")] == [2, 4]
    (note,) = [n for n in with_val.notes if n.startswith("validation generates")]
    assert (
        "training transformer itself" in note
        and "shared with training: text_encoder, tokenizer, transformer, vae" in note
    )
    for step in (2, 4):
        here = fv.step_dir(tmp_path / "a", step)
        gen = json.loads((here / "videos" / "generation.jsonl").read_text().splitlines()[0])
        assert gen["backend"]["given_components"] == ["text_encoder", "tokenizer", "transformer", "vae"]
        disk = generate_from_disk(
            cases, tmp_path / f"disk{step}", models, here / "weights", "reference-concat"
        )
        assert disk == frames_of(here / "videos") and disk
    # the LoRA changed between the validations, so did the videos: the comparison can fail
    assert frames_of(fv.step_dir(tmp_path / "a", 2) / "videos") != frames_of(
        fv.step_dir(tmp_path / "a", 4) / "videos"
    )


def test_validator_keeps_the_training_tensors(tmp_path):
    """(2) the validation pipeline's transformer and VAE are the training model's own objects, and what
    training did not load (the text encoder) is loaded once for the run; (4) bf16 base weights with
    fp32 LoRA tensors (as on a GPU): after validation every parameter is the same object with the same
    dtype, storage, value and requires_grad, every module back in train mode, the processors restored."""
    from ipvgkit.models import lora_train
    from ipvgkit.models.resolve import resolve_model
    from ipvgkit.models.wan_train import WanTraining
    from ipvgkit.progress import Recorder
    from ipvgkit.stages.finetune_setup import final_states, write_final

    cases = write_testset_b(tmp_path / "ts", n=1)
    models = tmp_path / "models"
    val = ValidationSettings(every=1, cases=cases, metrics=["motion_amplitude"], steps=2)
    cfg = FinetuneConfig(models_dir=models, lora=LoraSettings(rank=4, alpha=4.0), validation=val, **TINY)
    model = WanTraining(resolve_model("tiny-wan", models), "cpu", torch.bfloat16)
    model.load(text=False, vae=True)
    layers = lora_train.inject_lora(model.trainable(), 4, 4.0, cfg.lora.targets)
    with torch.no_grad():  # a LoRA that changes the output (B starts at zero)
        for n, p in model.trainable().named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05, generator=torch.Generator().manual_seed(len(n)))
    model.trainable().train()
    tr = model.trainable()
    params = {
        n: (p, p.dtype, p.data_ptr(), p.requires_grad, p.detach().clone()) for n, p in tr.named_parameters()
    }
    assert {v[1] for k, v in params.items() if "lora" in k} == {torch.float32}
    assert torch.bfloat16 in {v[1] for k, v in params.items() if "lora" not in k}
    processors = dict(tr.attn_processors)
    validator = fv.Validator(model, cfg, "cpu")
    texts = []
    for step in (1, 2):
        weights = fv.step_dir(tmp_path / "run", step) / "weights"
        state, face = final_states(tr, None, cfg, layers, step)
        write_final(weights, state, cfg, layers, {}, step, face)
        row = fv.validate(tmp_path / "run", step, cfg, weights, validator, Recorder())
        assert row["ok"] == 1
        pipe = validator.backend.pipeline()
        assert pipe.transformer is model.transformer and pipe.vae is model.vae
        texts.append(pipe.text_encoder)
    assert texts[0] is texts[1] and validator.loaded == ["text_encoder", "tokenizer"]
    # on a GPU a text encoder the training did not load waits on the CPU between encodings
    assert validator.options(weights).text_encoder == "device"
    assert fv.Validator(model, cfg, "cuda").options(weights).text_encoder == "offload"
    assert "loaded for validation (once, kept for the run): text_encoder, tokenizer" in validator.note
    for n, p in tr.named_parameters():
        obj, dtype, ptr, grad, value = params[n]
        assert p is obj and p.dtype == dtype and p.data_ptr() == ptr and p.requires_grad == grad, n
        assert torch.equal(p.detach(), value) and p.grad is None, n
    assert all(m.training for m in tr.modules())
    assert all(tr.attn_processors[k] is v for k, v in processors.items())


def test_a_given_transformer_is_used_as_it_is(tmp_path):
    """Options that would change a given transformer for its owner are refused before anything loads."""
    from ipvgkit.errors import UsageError
    from ipvgkit.models.base import ModelOptions
    from ipvgkit.models.resolve import resolve_model
    from ipvgkit.models.wan import WanBackend

    resolved = resolve_model("tiny-wan", tmp_path / "models")
    for bad in (dict(compile=True), dict(offload="model"), dict(lora_fuse=True), dict(cache="first-block"),
                dict(lora_scale=0.5)):  # fmt: skip
        options = ModelOptions(model="tiny-wan", device="cpu", **bad)
        with pytest.raises(UsageError, match="not available"):
            WanBackend.with_components(options, resolved, transformer=torch.nn.Linear(1, 1))
    with pytest.raises(UsageError, match="unknown component"):
        WanBackend.with_components(ModelOptions(model="tiny-wan", device="cpu"), resolved, scheduler=None)


def test_face_adapter_validation_uses_the_live_adapter(tmp_path):
    """(5) a face-adapter run's validation generates with the transformer's own ``ipvg_face_adapter``
    module (not a copy read back from the file), and its video is the one ``ipvg generate --adapter
    step-N/weights`` makes from disk, bitwise; without the adapter the video differs (it matters)."""
    pytest.importorskip("dlib")
    from ipvgkit.models.resolve import resolve_model
    from ipvgkit.models.wan_train import WanTraining
    from ipvgkit.progress import Recorder
    from ipvgkit.stages.finetune_config import FaceAdapterSettings
    from ipvgkit.stages.finetune_setup import final_states, write_final

    cases = write_testset_b(tmp_path / "ts", n=1)
    models = tmp_path / "models"
    val = ValidationSettings(every=1, cases=cases, metrics=["motion_amplitude"], steps=2)
    cfg = FinetuneConfig(models_dir=models, method="face-adapter", face_adapter=FaceAdapterSettings(),
                         validation=val, **TINY)  # fmt: skip
    model = WanTraining(resolve_model("tiny-wan", models), "cpu", torch.float32)
    model.load(text=True, vae=True)
    adapter = model.attach_face_adapter(128, num_tokens=4, depth=1, heads=2)
    with torch.no_grad():
        adapter.scale.fill_(2.0)  # a trained-looking adapter (it starts at zero: no effect)
    model.trainable().train()
    weights = fv.step_dir(tmp_path / "run", 1) / "weights"
    state, face = final_states(model.trainable(), None, cfg, [], 1)
    write_final(weights, state, cfg, [], {}, 1, face)
    validator = fv.Validator(model, cfg, "cpu")
    assert fv.validate(tmp_path / "run", 1, cfg, weights, validator, Recorder())["ok"] == 1
    assert validator.backend.face.adapter is model.face_adapter and validator.loaded == []
    assert adapter.training and adapter.scale.requires_grad and adapter.scale.grad is None
    live = frames_of(fv.step_dir(tmp_path / "run", 1) / "videos")
    disk = generate_from_disk(cases, tmp_path / "disk", models, weights, "face-adapter", adapter=True)
    assert live == disk and live
    assert generate_from_disk(cases, tmp_path / "plain", models, weights, "none") != live


@pytest.mark.slow
def test_validation_under_two_ranks(tmp_path):
    """DDP (gloo, torchrun, 2 CPU ranks): rank 0 validates with the unwrapped live transformer while
    rank 1 waits; both ranks still hold identical LoRA weights after it, and the validation video is
    the one ``ipvg generate`` makes from the written weights."""
    import os
    import subprocess
    import sys

    from ipvgkit.stages import finetune_ckpt as ck

    from .test_finetune_ddp import ROOT, _free_port

    prep = make_prep(tmp_path / "prep", n=4)
    cases = write_testset_b(tmp_path / "ts", n=1)
    models = tmp_path / "models"
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           "-m", "ipvgkit", "finetune", "--data", str(prep), "--model", "tiny-wan", "--out", str(out),
           "--max-steps", "4", "--frames", "9", "--height", "32", "--width", "32", "--device", "cpu", "--quiet",
           "--models-dir", str(models), "--set", "checkpoint_every=2", "--set", "lora.rank=4",
           "--set", "optim.lr=0.05", "--set", "validation.every=2", "--set", f"validation.cases={cases}",
           "--set", "validation.steps=2"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "validation generates with the training transformer itself" in r.stderr
    for step, path in ck.list_checkpoints(out):
        digests = json.loads((path / ck.STATE_FILE).read_text())["adapter_sha256_per_rank"]
        assert len(digests) == 2 and digests[0] == digests[1], step
    assert [row["step"] for row in fv.read_rows(out)] == [2, 4]
    here = fv.step_dir(out, 4)
    torch.set_num_threads(1)  # the ranks' OMP_NUM_THREADS
    disk = generate_from_disk(cases, tmp_path / "disk", models, here / "weights", "reference-concat")
    assert disk == frames_of(here / "videos") and disk
