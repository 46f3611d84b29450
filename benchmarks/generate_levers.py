"""The speed levers of a real run, each measured on ``tiny-wan`` in one run (used by bench_generate.py).

Each row is seconds per video of ``backend.generate`` (no encoding, no runner bookkeeping), wall and CPU,
median over reps; the two sides of a pair are interleaved (A batch, B batch, A batch, ...) so that load
from other processes hits both alike.

- CFG (guidance 5: conditional + unconditional pass per step) vs ``--guidance 1`` (one pass per step,
  no negative prompt encoded), same steps.
- LoRA unfused vs ``--lora-fuse`` (a rank-4 LoRA on every attention projection, made with peft).
- prompt-embedding cache off (size 0) vs on: every video has the same prompt and Wan's negative prompt
  (Track 1 repeats prompts across identities); with the cache both are T5-encoded once per run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _lora(models_dir: Path, out: Path) -> Path:
    import torch
    from diffusers import WanPipeline, WanTransformer3DModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from ipvgkit.models.tiny import materialise_tiny

    transformer = WanTransformer3DModel.from_pretrained(
        materialise_tiny("tiny-wan", models_dir) / "transformer"
    )
    torch.manual_seed(1)
    config = LoraConfig(
        r=4, lora_alpha=8, init_lora_weights=False, target_modules=["to_q", "to_k", "to_v", "to_out.0"]
    )
    transformer.add_adapter(config)
    WanPipeline.save_lora_weights(out, transformer_lora_layers=get_peft_model_state_dict(transformer))
    return out


def _request(args: argparse.Namespace, i: int, guidance: float):
    from ipvgkit.models.base import GenerationRequest

    return GenerationRequest(
        case_id=f"c{i}", prompt="an astronaut talking", ref_images=[], num_frames=args.frames,
        height=args.height, width=args.width, steps=args.steps, guidance=guidance, seed=args.seed + i,
    )  # fmt: skip


def _backend(models_dir: Path, **kw):
    from ipvgkit.models import ModelOptions, load_backend

    backend = load_backend(
        ModelOptions(model="tiny-wan", models_dir=models_dir, dtype="fp32", device="cpu", **kw)
    )
    backend.load()
    return backend


def _batch(backend, args: argparse.Namespace, guidance: float) -> tuple[float, float]:
    t, c = time.perf_counter(), _cpu()
    for i in range(args.videos):
        backend.generate(_request(args, i, guidance))
    return (time.perf_counter() - t) / args.videos, (_cpu() - c) / args.videos


def _pair(a, b, args: argparse.Namespace, ga: float, gb: float) -> dict:
    _batch(a, args, ga), _batch(b, args, gb)  # warm up both
    runs: dict[str, list] = {"a_wall": [], "a_cpu": [], "b_wall": [], "b_cpu": []}
    for _ in range(args.reps):
        w, c = _batch(a, args, ga)
        runs["a_wall"].append(w)
        runs["a_cpu"].append(c)
        w, c = _batch(b, args, gb)
        runs["b_wall"].append(w)
        runs["b_cpu"].append(c)
    return {k: statistics.median(v) for k, v in runs.items()}


def run_levers(args: argparse.Namespace, models_dir: Path) -> dict:
    """{lever: {a/b wall/cpu seconds per video}} for the three levers (module docstring)."""
    out = {}
    plain = _backend(models_dir)
    out["cfg_vs_guidance_1"] = _pair(plain, plain, args, args.guidance, 1.0)
    with tempfile.TemporaryDirectory(prefix="ipvg-bench-lora-") as tmp:
        lora = _lora(models_dir, Path(tmp))
        unfused = _backend(models_dir, lora=[str(lora)])
        fused = _backend(models_dir, lora=[str(lora)], lora_fuse=True)
        out["lora_unfused_vs_fused"] = _pair(unfused, fused, args, args.guidance, args.guidance)
    uncached = _backend(models_dir)
    uncached.prompt_cache.size = 0
    out["prompt_cache_off_vs_on"] = _pair(uncached, plain, args, args.guidance, args.guidance)
    return out


LABELS = {
    "cfg_vs_guidance_1": ("CFG (guidance {g:g}, 2 passes/step)", "--guidance 1 (1 pass/step)"),
    "lora_unfused_vs_fused": ("LoRA unfused", "LoRA fused (--lora-fuse)"),
    "prompt_cache_off_vs_on": ("prompt-embedding cache off", "prompt-embedding cache on"),
}


def lever_rows(levers: dict, guidance: float) -> list[tuple[str, ...]]:
    """(label, wall, CPU, wall speed-up, CPU speed-up of the second over the first) rows for a table."""
    rows = []
    for key, r in levers.items():
        first, second = LABELS[key]
        rows.append((first.format(g=guidance), f"{r['a_wall']:.3f}", f"{r['a_cpu']:.3f}", "", ""))
        rows.append(
            (second, f"{r['b_wall']:.3f}", f"{r['b_cpu']:.3f}", f"x{r['a_wall'] / r['b_wall']:.2f}",
             f"x{r['a_cpu'] / r['b_cpu']:.2f}")
        )  # fmt: skip
    return rows
