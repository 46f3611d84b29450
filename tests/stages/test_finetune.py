"""ipvg finetune's trainer on tiny-wan: records, exact resume, cached inputs, bad input."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ipvgkit.data.manifest import read_manifest, write_manifest
from ipvgkit.errors import InputError, UsageError
from ipvgkit.models.lora_train import read_metadata
from ipvgkit.progress import Recorder
from ipvgkit.stages import finetune_ckpt as ck
from ipvgkit.stages.finetune import finetune
from ipvgkit.stages.finetune_config import FinetuneConfig, LoraSettings

from .finetune_prep import make_prep

pytestmark = pytest.mark.usefixtures("one_thread")


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
    assert [r["step"] for r in ck.read_metrics(split)] == [1, 2, 3, 4]
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


def _cache(prep: Path, models_dir: Path, size: int = 32) -> None:
    """``ipvg prepare cache`` on the folder (its own stage), at bucket ``size x size x 9``."""
    from ipvgkit.stages.prepare_cache import CacheConfig, run_cache

    samples = read_manifest(prep)
    for s in samples:
        s.bucket = {"height": size, "width": size, "frames": 9, "fps": 16}
    write_manifest(prep, samples)
    run_cache(CacheConfig(data=prep, model="tiny-wan", models_dir=models_dir, device="cpu"))


@pytest.mark.parametrize("method", ["reference-concat", "none"])
def test_cached_inputs_train_like_encoding_on_the_fly(models_dir, tmp_path, method):
    """prepare's cache (timeline contexts included) gives the losses of encoding on the fly; with it the
    text encoder is never loaded, and without references neither is the VAE."""
    import shutil

    fly = make_prep(tmp_path / "fly_prep", events=True)
    cached = tmp_path / "cached_prep"
    shutil.copytree(fly, cached)
    samples = read_manifest(cached)
    for s in samples:  # the copy's own videos
        s.video = str(cached / Path(s.video).relative_to(fly))
    write_manifest(cached, samples)
    _cache(cached, models_dir)
    for s in read_manifest(cached):
        Path(s.video).unlink()  # cached samples need no video
    rec = Recorder()
    res = finetune(cfg(cached, tmp_path / "cached", models_dir, max_steps=2, method=method), rec)
    finetune(cfg(fly, tmp_path / "fly", models_dir, max_steps=2, method=method))
    assert not any("on the fly" in e[1] for e in rec.events if e[0] == "log")
    assert res.model["loaded"] == (
        ["transformer", "vae"] if method == "reference-concat" else ["transformer"]
    )
    for a, b in zip(losses(tmp_path / "cached"), losses(tmp_path / "fly"), strict=True):
        assert a == pytest.approx(b, rel=1e-5)


def test_cache_of_another_resolution_is_an_error_before_training(prep, models_dir, tmp_path):
    import shutil

    other = tmp_path / "prep"
    shutil.copytree(prep, other)
    _cache(other, models_dir, size=48)
    with pytest.raises(
        InputError,
        match=r"cached tensors do not fit this run \(want tiny-wan@\w+:32x32x9; it has tiny-wan@\w+:48x48x9\)",
    ):
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


def test_metrics_of_a_killed_run_drop_the_torn_line_and_resume_rewrites_later_steps(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    rows = [json.dumps({"step": i, "loss": 1.0 / i}) for i in (1, 2, 3)]
    (run / ck.METRICS).write_text("\n".join(rows) + '\n{"step": 4, "lo')
    assert [r["step"] for r in ck.read_metrics(run)] == [1, 2, 3]
    ck.trim_metrics(run, 2)
    assert (run / ck.METRICS).read_text() == rows[0] + "\n" + rows[1] + "\n"
