"""ipvg finetune's trainer on tiny-wan: records, exact resume, cached inputs, bad input."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from ipvgkit.data.manifest import read_manifest, write_manifest
from ipvgkit.errors import InputError, UsageError
from ipvgkit.models.lora_train import read_metadata
from ipvgkit.progress import Recorder
from ipvgkit.stages import finetune_ckpt as ck
from ipvgkit.stages.finetune import finetune
from ipvgkit.stages.finetune_config import FinetuneConfig, LoraSettings

from .finetune_prep import make_prep


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def prep(tmp_path_factory):
    return make_prep(tmp_path_factory.mktemp("prep"))


def cfg(prep: Path, out: Path, models_dir: Path, **kw) -> FinetuneConfig:
    base = dict(data=prep, out=out, model="tiny-wan", models_dir=models_dir, frames=9, height=32, width=32,
                max_steps=4, checkpoint_every=2, lora=LoraSettings(rank=4, alpha=4.0))  # fmt: skip
    base.update(kw)
    return FinetuneConfig(**base)


def lora(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "final" / "pytorch_lora_weights.safetensors"))


def losses(run: Path) -> list[float]:
    return [r["loss"] for r in ck.read_metrics(run)]


def assert_same_lora(a: Path, b: Path) -> None:
    la, lb = lora(a), lora(b)
    assert la.keys() == lb.keys()
    for k in la:
        assert torch.equal(la[k], lb[k]), k


def test_run_writes_records_and_a_diffusers_lora(prep, models_dir, tmp_path):
    rec = Recorder()
    res = finetune(cfg(prep, tmp_path / "run", models_dir), rec)
    run = tmp_path / "run"
    rows = ck.read_metrics(run)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for r in rows:
        assert {"loss", "lr", "grad_norm", "s_per_step", "memory_mb", "samples"} <= set(r)
        assert r["loss"] > 0 and r["grad_norm"] > 0 and r["memory_mb"] > 0
    svg = ET.parse(run / "loss.svg").getroot()
    assert svg.tag.endswith("svg") and any(e.tag.endswith("polyline") for e in svg)
    assert [s for s, _ in ck.list_checkpoints(run)] == [2, 4]
    sd = lora(run)
    assert sd and all(
        k.startswith("transformer.blocks.") and (".lora_A." in k or ".lora_B." in k) for k in sd
    )
    assert any(".lora_B." in k and sd[k].abs().sum() > 0 for k in sd)  # B starts at zero: it trained
    meta = read_metadata(run / "final" / "pytorch_lora_weights.safetensors")
    assert meta["ipvg_identity"] == "reference-concat" and meta["ipvg_base_model"] == "tiny-wan"
    assert json.loads(meta["ipvg_config"])["lora"]["rank"] == 4
    assert json.loads(meta["lora_adapter_metadata"])["transformer.r"] == 4
    info = json.loads((run / "final" / "ipvg_adapter.json").read_text())
    assert info["identity"] == "reference-concat" and info["steps"] == 4
    logs = [e[1] for e in rec.events if e[0] == "log"]
    assert any("encoded on the fly" in m for m in logs) and any("fp32" in m for m in logs)
    assert res.steps == 4 and res.final == run / "final"


@pytest.mark.parametrize("accum", [1, 2])
def test_max_steps_then_resume_equals_one_run(prep, models_dir, tmp_path, accum):
    straight, split = tmp_path / "a", tmp_path / "b"
    finetune(cfg(prep, straight, models_dir, grad_accum=accum, checkpoint_every=100))
    finetune(cfg(prep, split, models_dir, grad_accum=accum, max_steps=2, checkpoint_every=100))
    assert [s for s, _ in ck.list_checkpoints(split)] == [2]  # the end of a run is a checkpoint
    res = finetune(cfg(prep, split, models_dir, grad_accum=accum, checkpoint_every=100, resume="auto"))
    assert res.resumed_from == ck.checkpoint_path(split, 2)
    assert losses(straight) == losses(split)  # bitwise equal floats
    assert_same_lora(straight, split)
    a = load_file(str(ck.checkpoint_path(straight, 4) / ck.ADAPTER_STATE))
    b = load_file(str(ck.checkpoint_path(split, 4) / ck.ADAPTER_STATE))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_another_config_and_a_run_folder_needs_resume(prep, models_dir, tmp_path):
    run = tmp_path / "run"
    finetune(cfg(prep, run, models_dir, max_steps=1))
    with pytest.raises(UsageError, match="already holds a run.*--resume"):
        finetune(cfg(prep, run, models_dir, max_steps=2))
    with pytest.raises(UsageError, match=r"another config: lora.rank \(4 in the checkpoint, 8 now\)"):
        finetune(cfg(prep, run, models_dir, max_steps=2, resume="auto", lora=LoraSettings(rank=8, alpha=4.0)))
    with pytest.raises(UsageError, match="lr schedule cosine spans max_steps"):
        cosine = cfg(prep, tmp_path / "c", models_dir, max_steps=1)
        cosine.optim.lr_schedule = "cosine"
        finetune(cosine)
        cosine.max_steps, cosine.resume = 2, "auto"
        finetune(cosine)
    res = finetune(cfg(prep, run, models_dir, max_steps=2, overwrite=True))
    assert res.resumed_from is None and [r["step"] for r in ck.read_metrics(run)] == [1, 2]


def _write_cache(prep: Path, models_dir: Path, model_name: str = "tiny-wan", size: int = 32) -> None:
    """Cache files as prepare writes them, computed with the model layer's own encoders."""
    from ipvgkit.models import identity
    from ipvgkit.models.resolve import resolve_model
    from ipvgkit.models.wan_train import WanTraining
    from ipvgkit.stages.finetune_data import load_clip

    m = WanTraining(resolve_model("tiny-wan", models_dir), "cpu", torch.float32)
    m.load()
    samples = read_manifest(prep)
    for s in samples:
        clip = torch.from_numpy(load_clip(prep / s.video, s.t_start, 9, 16.0, 32, 32))
        tensors = {
            "latents": m.encode_video(clip[None])[0].contiguous(),
            "prompt_embeds": m.encode_text([s.caption])[0].contiguous(),
            "ref_latents": m.encode_reference([[identity.open_image(prep / s.ref_images[0])]], 32, 32)[
                0
            ].contiguous(),
        }
        rel = f"cache/{s.sample_id}.safetensors"
        (prep / "cache").mkdir(exist_ok=True)
        meta = {"model": model_name, "height": str(size), "width": str(size), "frames": "9"}
        save_file(tensors, str(prep / rel), metadata=meta)
        s.cache = {f"{model_name}/{size}x{size}x9": rel}
    write_manifest(prep, samples)


def test_cached_inputs_train_like_encoding_on_the_fly_without_text_encoder_or_vae(prep, models_dir, tmp_path):
    import shutil

    cached = tmp_path / "prep"
    shutil.copytree(prep, cached)
    _write_cache(cached, models_dir)
    (cached / "videos" / "v0.mp4").unlink()  # cached samples need no video
    rec = Recorder()
    finetune(cfg(cached, tmp_path / "cached", models_dir, max_steps=2), rec)
    finetune(cfg(prep, tmp_path / "fly", models_dir, max_steps=2))
    assert not any("on the fly" in e[1] for e in rec.events if e[0] == "log")
    for a, b in zip(losses(tmp_path / "cached"), losses(tmp_path / "fly"), strict=True):
        assert a == pytest.approx(b, rel=1e-5)
    state = ck.read_state(ck.checkpoint_path(tmp_path / "cached", 2))
    assert state["step"] == 2


def test_cache_of_another_resolution_is_an_error_before_training(prep, models_dir, tmp_path):
    import shutil

    other = tmp_path / "prep"
    shutil.copytree(prep, other)
    _write_cache(other, models_dir, size=48)
    with pytest.raises(InputError, match="cached tensors do not fit this run .*at 48x48x9"):
        finetune(cfg(other, tmp_path / "run", models_dir))
    assert not (tmp_path / "run").exists()


def test_bad_inputs_fail_before_training(prep, models_dir, tmp_path):
    empty = tmp_path / "empty"
    write_manifest(empty, [])
    with pytest.raises(InputError, match="no samples"):
        finetune(cfg(empty, tmp_path / "r1", models_dir))
    old = tmp_path / "old"
    old.mkdir()
    line = json.loads((prep / "manifest.jsonl").read_text().splitlines()[0])
    (old / "manifest.jsonl").write_text(json.dumps({**line, "schema": 0}) + "\n")
    with pytest.raises(InputError, match="schema 0"):
        finetune(cfg(old, tmp_path / "r2", models_dir))
    with pytest.raises(UsageError, match="'to_z' matches no linear layer"):
        finetune(cfg(prep, tmp_path / "r3", models_dir, lora=LoraSettings(targets=["to_z"])))
    assert not any((tmp_path / r).exists() for r in ("r1", "r2", "r3"))


def test_too_short_clips_are_skipped_with_a_reason(prep, models_dir, tmp_path):
    rec = Recorder()
    with pytest.raises(InputError, match="no usable sample"):
        finetune(cfg(prep, tmp_path / "run", models_dir, frames=33), rec)
    assert any("need 2.00s" in e[1] for e in rec.events if e[0] == "log")
