"""ipvg finetune with memory.quantize (int8 frozen base weights) on tiny-wan: trains like the
unquantised run, writes the usual diffusers LoRA, and refuses what it cannot do."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ipvgkit.errors import UsageError
from ipvgkit.stages import finetune_ckpt as ck
from ipvgkit.stages.finetune import finetune
from ipvgkit.stages.finetune_config import MemorySettings

from .finetune_prep import make_prep
from .test_finetune import cfg, lora, losses

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.usefixtures("one_thread")


def test_int8_trains_close_to_the_unquantised_run_and_writes_the_usual_lora(prep, models_dir, tmp_path):
    plain, q8 = tmp_path / "plain", tmp_path / "int8"
    finetune(cfg(prep, plain, models_dir, max_steps=2))
    res = finetune(cfg(prep, q8, models_dir, max_steps=2, memory=MemorySettings(quantize="int8")))
    note = [n for n in res.notes if n.startswith("memory.quantize int8:")]
    assert len(note) == 1 and "20 frozen linear weights" in note[0], res.notes
    lp, lq = losses(plain), losses(q8)
    assert len(lq) == 2 and all(math.isfinite(x) for x in lq)
    assert lp != lq and all(abs(a - b) < 0.02 * abs(b) for a, b in zip(lp, lq, strict=True))
    rows = ck.read_metrics(q8)
    assert all(r["grad_norm"] > 0 for r in rows)
    sd_p, sd_q = lora(plain), lora(q8)
    assert sd_q.keys() == sd_p.keys()  # the same diffusers layout, plain float32 tensors
    for k, v in sd_q.items():
        assert type(v) is torch.Tensor and v.dtype == torch.float32, k
    b = [k for k in sd_q if ".lora_B." in k]
    assert b and all(sd_q[k].abs().sum() > 0 for k in b)  # B starts at zero: the LoRA changed
    assert any(not torch.equal(sd_q[k], sd_p[k]) for k in b)
    saved = json.loads((q8 / "final" / "ipvg_adapter.json").read_text())
    assert saved["config"]["memory"]["quantize"] == "int8"  # the run's config travels with the LoRA


def test_int8_with_gradient_checkpointing_trains_the_same(prep, models_dir, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    q = MemorySettings(quantize="int8")
    finetune(cfg(prep, a, models_dir, max_steps=2, memory=q))
    finetune(cfg(prep, b, models_dir, max_steps=2, memory=MemorySettings(quantize="int8"),
                 gradient_checkpointing=True))  # fmt: skip
    assert losses(a) == pytest.approx(losses(b), rel=1e-5)
    la, lb = lora(a), lora(b)
    assert all(torch.allclose(la[k], lb[k], atol=1e-6) for k in la)


def test_resume_with_another_quantize_value_and_fp8_on_cpu_are_errors(prep, models_dir, tmp_path):
    run = tmp_path / "run"
    finetune(cfg(prep, run, models_dir, max_steps=1, memory=MemorySettings(quantize="int8")))
    with pytest.raises(
        UsageError, match=r"another config: memory.quantize \('int8' in the checkpoint, 'none' now"
    ):
        finetune(cfg(prep, run, models_dir, max_steps=2, resume="auto"))
    fp8 = tmp_path / "fp8"
    with pytest.raises(UsageError, match=r"fp8 needs a CUDA GPU of compute capability >= 8.9.*device is cpu"):
        finetune(cfg(prep, fp8, models_dir, max_steps=1, memory=MemorySettings(quantize="fp8")))
    assert not fp8.exists()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_ddp_ranks_train_int8_to_identical_loras(tmp_path):
    """DDP does not broadcast the quantised weights (torchao tensors cannot be): each rank loads and
    quantises the same ones; the CLI's stderr carries no torchao import noise."""
    prep = make_prep(tmp_path / "prep", n=4)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           "-m", "ipvgkit", "finetune", "--data", str(prep), "--model", "tiny-wan", "--out", str(out),
           "--max-steps", "2", "--frames", "9", "--height", "32", "--width", "32", "--device", "cpu", "--quiet",
           "--models-dir", str(tmp_path / "models"), "--set", "lora.rank=4", "--set", "memory.quantize=int8"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    state = json.loads((ck.checkpoint_path(out, 2) / ck.STATE_FILE).read_text())
    digests = state["adapter_sha256_per_rank"]
    assert state["world_size"] == 2 and len(digests) == 2 and digests[0] == digests[1]
    assert (out / "final" / "pytorch_lora_weights.safetensors").is_file()
    for noise in ("Failed to load", "register_constant", "Unable to import `torchao`"):
        assert noise not in r.stderr + r.stdout, noise


def test_validation_generates_with_the_quantised_live_model(prep, models_dir, tmp_path):
    """Validation generates with the training transformer itself, its block weights int8."""
    from ipvgkit.stages import finetune_val as fv
    from ipvgkit.stages.finetune_val import ValidationSettings

    from .test_generate import write_testset_b

    cases = write_testset_b(tmp_path / "ts", n=1)
    val = ValidationSettings(every=2, cases=cases, metrics=["motion_amplitude"], steps=2)
    run = tmp_path / "run"
    finetune(cfg(prep, run, models_dir, max_steps=2, memory=MemorySettings(quantize="int8"), validation=val))
    rows = fv.read_rows(run)
    assert [(r["step"], r["cases"], r["ok"]) for r in rows] == [(2, 1, 1)]
    assert (fv.step_dir(run, 2) / "videos" / "1.mp4").is_file()
    assert len(losses(run)) == 2 and all(math.isfinite(x) for x in losses(run))


def test_int8_with_block_swap_trains_the_same_as_without(prep, models_dir, tmp_path):
    """Block swap moves the quantised weights as they are: the numbers of int8 + checkpointing."""
    a, b = tmp_path / "a", tmp_path / "b"
    base = dict(max_steps=2, gradient_checkpointing=True)
    finetune(cfg(prep, a, models_dir, memory=MemorySettings(quantize="int8"), **base))
    res = finetune(cfg(prep, b, models_dir, memory=MemorySettings(quantize="int8", block_swap=2), **base))
    assert res.model["block_swap"] == 2
    assert losses(a) == losses(b)
    la, lb = lora(a), lora(b)
    assert la.keys() == lb.keys() and all(torch.equal(la[k], lb[k]) for k in la)
