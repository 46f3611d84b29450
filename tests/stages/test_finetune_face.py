"""ipvg finetune --method face-adapter on tiny-wan: only the adapter trains, exact resume, its files,
samples without face embeddings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ipvgkit.data.manifest import read_manifest, write_manifest
from ipvgkit.errors import InputError
from ipvgkit.models import face_adapter as fa
from ipvgkit.progress import Recorder
from ipvgkit.stages.finetune import finetune
from ipvgkit.stages.finetune_config import FaceAdapterSettings, FinetuneConfig, LoraSettings

from .finetune_prep import make_prep

pytest.importorskip("dlib")

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def prep(tmp_path_factory):
    return make_prep(tmp_path_factory.mktemp("prep"), events=True, faces=True)


def cfg(prep: Path, out: Path, models_dir: Path, **kw) -> FinetuneConfig:
    base = dict(data=prep, out=out, model="tiny-wan", models_dir=models_dir, frames=9, height=32, width=32,
                max_steps=4, checkpoint_every=2, method="face-adapter", lora=LoraSettings(rank=4, alpha=4.0),
                optim={"lr": 1e-2})  # fmt: skip
    base.update(kw)
    c = FinetuneConfig(**{k: v for k, v in base.items() if k != "optim"})
    c.optim.lr = base["optim"]["lr"]
    return c


def adapter_state(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "final" / fa.WEIGHTS_FILE))


def test_training_changes_only_the_adapter_and_writes_its_files(prep, models_dir, tmp_path):
    rec = Recorder()
    run = tmp_path / "run"
    res = finetune(cfg(prep, run, models_dir), rec)
    assert any("face adapter: 128-d face embeddings -> 4 tokens (no LoRA" in n for n in res.notes)
    final = run / "final"
    assert not (final / "pytorch_lora_weights.safetensors").exists()
    info = json.loads((final / "ipvg_adapter.json").read_text())
    assert info["identity"] == "face-adapter" and info["lora"] is None
    assert info["face_adapter"] == fa.WEIGHTS_FILE
    conf = json.loads((final / fa.CONFIG_FILE).read_text())
    assert conf["embed_dim"] == 128 and conf["dim"] == 24 and conf["base_model"] == "tiny-wan"
    assert conf["steps"] == 4
    trained = fa.load_adapter(final)
    torch.manual_seed(0)
    from ipvgkit.models.tiny import build_tiny_pipeline

    fresh = fa.build_adapter(build_tiny_pipeline("tiny-wan").transformer, 128)
    assert trained.scale.abs().sum() > 0  # the zero-initialised scale moved
    changed = [k for k, v in trained.state_dict().items() if not torch.equal(v, fresh.state_dict()[k])]
    assert "to_k_ip.0.weight" in changed and "to_v_ip.1.weight" in changed and "proj_in.weight" in changed
    # the checkpoints hold the adapter tensors only (the frozen transformer is not trainable)
    ckpt = sorted((run / "checkpoints").iterdir())[-1]
    keys = load_file(str(ckpt / "adapter_state.safetensors")).keys()
    assert keys and all(k.startswith("ipvg_face_adapter.") for k in keys)


def test_with_lora_both_train(prep, models_dir, tmp_path):
    run = tmp_path / "run"
    finetune(cfg(prep, run, models_dir, max_steps=2, face_adapter=FaceAdapterSettings(lora=True)))
    lora = load_file(str(run / "final" / "pytorch_lora_weights.safetensors"))
    assert any(".lora_B." in k and v.abs().sum() > 0 for k, v in lora.items())
    assert adapter_state(run)["scale"].abs().sum() > 0


def test_max_steps_then_resume_equals_one_run(prep, models_dir, tmp_path):
    finetune(cfg(prep, tmp_path / "a", models_dir))
    finetune(cfg(prep, tmp_path / "b", models_dir, max_steps=2))
    finetune(cfg(prep, tmp_path / "b", models_dir, resume="auto"))
    a, b = adapter_state(tmp_path / "a"), adapter_state(tmp_path / "b")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_samples_without_face_embeddings(prep, models_dir, tmp_path):
    samples = read_manifest(prep)
    part = tmp_path / "part"
    part.mkdir()
    for name in ("videos", "refs", "faces"):
        (part / name).symlink_to(prep / name)
    samples[0].face_embedding = None
    write_manifest(part, samples)
    rec = Recorder()
    res = finetune(cfg(part, tmp_path / "run", models_dir, max_steps=1), rec)
    assert res.skipped == [{"sample_id": samples[0].sample_id,
                            "reason": "no face embedding (run ipvg prepare with the face extras installed)"}]  # fmt: skip
    none = tmp_path / "none"
    none.mkdir()
    for s in samples:
        s.face_embedding = None
    write_manifest(none, samples)
    with pytest.raises(InputError, match="no usable sample .* no face embedding"):
        finetune(cfg(none, tmp_path / "run2", models_dir, max_steps=1))


@pytest.mark.parametrize("method", ["reference-concat", "face-adapter"])
def test_gradient_checkpointing_with_timeline_and_face_trains_alike(prep, models_dir, tmp_path, method):
    """The blocks are recomputed in the backward pass with the timeline / face processors still on (they
    stay installed until the step's backward is done): same losses and gradient norms."""
    from ipvgkit.stages import finetune_ckpt as ck

    got = []
    for gc in (False, True):
        run = tmp_path / f"gc-{gc}"
        finetune(cfg(prep, run, models_dir, max_steps=2, method=method, gradient_checkpointing=gc))
        got.append([(r["loss"], r["grad_norm"]) for r in ck.read_metrics(run)])
    assert got[0] == got[1]
