"""benchmarks/bench_finetune_fullsize.py: the FLOP formula against torch's own count, and the script run
as a real subprocess at a CPU size (its JSON fields)."""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_finetune_fullsize.py"
TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_finetune_fullsize", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def tiny():
    """A 2-layer Wan transformer of tiny widths with LoRA r4 on q/k/v/o, and inputs of 3x8x12 latents
    (72 video tokens, 7 text tokens: the attention terms differ from the linear ones)."""
    from diffusers import WanTransformer3DModel

    from ipvgkit.models.lora_train import inject_lora

    b = _bench()
    cfg = b.transformer_config(2, num_attention_heads=2, attention_head_dim=12, ffn_dim=32, text_dim=32)
    torch.manual_seed(0)
    model = WanTransformer3DModel(**cfg)
    inject_lora(model, 4, 4.0, TARGETS)
    g = torch.Generator().manual_seed(0)
    inputs = (
        torch.randn(1, 16, 3, 8, 12, generator=g),
        torch.tensor([500.0]),
        torch.randn(1, 7, 32, generator=g),
    )
    return b, cfg, model, inputs


def _count(model, inputs, backward: bool) -> int:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    # the math attention is made of bmm's, which the counter counts (the CPU flash kernel it does not)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        out = model(*inputs, return_dict=False)[0]
        if backward:
            out.float().pow(2).mean().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def test_forward_flops_equal_flop_counter(tiny):
    b, cfg, model, inputs = tiny
    tokens = 3 * (8 // 2) * (12 // 2)
    with torch.no_grad():
        counted = _count(model, inputs, backward=False)
    flops = b.forward_flops(cfg, tokens, 7, 4, TARGETS)
    assert counted == flops["forward"]
    assert flops["attention"] > 0 and flops["lora"] > 0  # both terms are in the comparison
    # without the LoRA terms the formula would be off by exactly them
    assert b.forward_flops(cfg, tokens, 7, 0, TARGETS)["forward"] == counted - flops["lora"]


def test_recompute_flops_equal_flop_counter(tiny):
    """Gradient checkpointing costs exactly one more forward of the blocks (with their LoRA)."""
    b, cfg, model, inputs = tiny
    model.train()
    model.disable_gradient_checkpointing()
    plain = _count(model, inputs, backward=True)
    model.enable_gradient_checkpointing()
    ckpt = _count(model, inputs, backward=True)
    model.disable_gradient_checkpointing()
    flops = b.forward_flops(cfg, 72, 7, 4, TARGETS)
    assert ckpt - plain == flops["recompute"]
    assert flops["recompute"] < flops["forward"]  # embedders and proj_out are not recomputed
    assert flops["training_model"] == 3 * flops["forward"]


def test_flop_formula_at_the_real_size():
    """The 480x832x81 figures: 21x30x52 = 32760 tokens; attention over them dominates."""
    b = _bench()
    cfg = b.transformer_config()
    f = b.forward_flops(cfg, 21 * 30 * 52, 512, 32, TARGETS)
    d, n = 1536, 32760
    assert f["attention"] == 30 * (4 * n * n * d + 4 * n * 512 * d)
    assert 2.8e14 < f["forward"] < 3.2e14
    adapted = b.adapted(b.linear_layers(cfg, n, 512), TARGETS)
    assert len(adapted) == 30 * 8  # q/k/v/o of self- and cross-attention in each block


def test_peak_table():
    b = _bench()
    assert b.peak_tflops("NVIDIA H100 80GB HBM3", None) == (989.0, "table (H100)")
    assert b.peak_tflops("NVIDIA A100-SXM4-80GB", None)[0] == 312.0
    assert b.peak_tflops("NVIDIA GeForce RTX 4090", None)[0] == 165.0
    assert b.peak_tflops("NVIDIA H200", 700.0) == (700.0, "--peak-tflops")
    assert b.peak_tflops("Some GPU", None)[0] is None


def _run(tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "res.json"
    cmd = [sys.executable, str(SCRIPT), "--layers", "1", "--frames", "5", "--height", "32", "--width", "32",
           "--steps", "3", "--warmup", "1", "--out-json", str(out), "--model-dir", str(tmp_path / "model"),
           "--json", *extra]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return r, json.loads(out.read_text())


@pytest.mark.slow
def test_script_runs_at_cpu_size(tmp_path):
    r, res = _run(tmp_path, "--set", "optim.lr=2e-4")
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout) == res
    assert res["device"] == "cpu" and res["peak_allocated_gib"] is None and res["peak_rss_mb"] > 0
    assert res["latent_shape"] == [16, 2, 4, 4] and res["video_tokens"] == 2 * 2 * 2
    assert res["rank"] == 32 and res["gradient_checkpointing"] is True
    assert res["steps"] == 3 and len(res["s_per_step_all"]) == 3 and len(res["losses"]) == 3
    assert res["s_per_step"] == pytest.approx(statistics.median(res["s_per_step_all"][1:]), abs=1e-4)
    assert res["loaded"] == ["transformer"]  # cached latents and text: no VAE, no text encoder
    assert "training on CPU: fp32 instead of mixed precision bf16" in res["trainer_notes"]
    assert res["weight_dtype"] == "float32" and "mfu" not in res  # no peak FLOP/s for a CPU
    # the transformer's parameters: the real widths, one block
    assert 60e6 < res["transformer_params"] < 80e6
    b = _bench()
    want = b.forward_flops(b.transformer_config(1), 8, 512, 32, TARGETS)
    assert res["flops"] == want
    assert res["set"] == ["optim.lr=2e-4"]
    assert res["memory_levers"] == {} and res["memory_levers_noted"] is None
    # a given peak gives MFU and HFU from the same s/step and FLOPs
    r2, res2 = _run(tmp_path, "--peak-tflops", "1.0", "--no-gradient-checkpointing")
    assert r2.returncode == 0, r2.stderr[-2000:]
    assert res2["build_model_s"] is None  # the model folder was reused
    assert res2["mfu"] == pytest.approx(res2["flops"]["training_model"] / res2["s_per_step"] / 1e12)
    assert res2["hfu"] == res2["mfu"]  # nothing recomputed without checkpointing


@pytest.mark.slow
def test_script_reports_a_failure_as_json(tmp_path):
    r, res = _run(tmp_path, "--set", "lora.targets=[no_such_layer]")
    assert r.returncode == 1
    assert "no_such_layer" in res["error"] and "matches no linear layer" in res["error"]


def test_options_and_set_build_the_trainer_config(tmp_path):
    """The memory levers are the trainer's own config keys; ``--set`` wins over the script's options."""
    b = _bench()
    args = b.parse_args(["--block-swap", "3", "--quantize", "fp8", "--rank", "8", "--set", "memory.quantize=int8",
                         "--set", "optim.lr=3e-4"])  # fmt: skip
    cfg = b.finetune_config(args, tmp_path / "prep", tmp_path / "model", tmp_path / "run")
    assert (cfg.memory.block_swap, cfg.memory.quantize) == (3, "int8")
    assert (cfg.lora.rank, cfg.lora.alpha, cfg.optim.lr, cfg.optim.optimizer) == (8, 8.0, 3e-4, "adamw")
    assert cfg.gradient_checkpointing and cfg.mixed_precision == "bf16" and cfg.method == "none"
    assert (cfg.frames, cfg.height, cfg.width) == (81, 480, 832)
    plain = b.finetune_config(b.parse_args([]), tmp_path / "p", tmp_path / "m", tmp_path / "r")
    assert (plain.memory.block_swap, plain.memory.quantize) == (0, "none")  # the trainer's defaults
    with pytest.raises(SystemExit):
        b.parse_args(["--quantize", "int4"])
    with pytest.raises(SystemExit):
        b.parse_args(["--steps", "2", "--warmup", "2"])
