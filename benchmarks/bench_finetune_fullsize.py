"""``ipvg finetune`` at full size: the Wan2.1-T2V-1.3B transformer from its published config, random
weights, LoRA, 480x832x81, through the trainer itself: s/step, peak memory, MFU.

Nothing is downloaded. The script writes a diffusers model folder (``model_index.json``, the
transformer with random weights in bf16, Wan's scheduler config; with ``--method reference-concat``
also Wan2.1's VAE from its default config, random weights) and a prepare folder whose samples carry
random cached latents ``(16, f, H/8, W/8)`` and random text embeddings ``(512, 4096)`` under the cache
key of that folder, so the run loads neither T5 nor (with ``--method none``) the VAE. It then runs
:func:`ipvgkit.stages.finetune.finetune` in this process: the trainer's own data loading, LoRA
injection (:func:`ipvgkit.models.lora_train.inject_lora`), ``WanTraining.predict`` (the generation
loop's transformer call) and ``flow_loss``, AdamW, accelerate's bf16 autocast, gradient checkpointing.
``--block-swap N`` / ``--quantize int8|fp8`` set the config's ``memory.block_swap`` / ``memory.quantize``
and any other config key goes to the trainer as ``--set key=value``; the trainer's notes are part of
the output (and ``memory_levers_noted`` says whether they mention a lever that was set), so whether a
lever took effect is written down.
Speed does not depend on the weight values, so random weights time exactly what real ones would.

s/step is the median of the trainer's ``s_per_step`` (``metrics.jsonl``) after ``--warmup`` steps;
memory is ``torch.cuda.max_memory_allocated`` / ``max_memory_reserved`` over the run (peak RSS on a CPU).

FLOPs (:func:`forward_flops`, matrix products only, ``2 m n k`` each; batch ``B``; ``N`` video tokens
``= f (H/16) (W/16)`` (plus ``n_ref`` reference frames' tokens with reference-concat), ``L`` text
tokens, ``d`` = heads x head_dim, ``F`` = ffn_dim, ``T`` = text_dim, ``P`` = in_channels x prod(patch),
``Fq`` = freq_dim, ``r`` the LoRA rank)::

    embed  = 2 N d P                                   patch embedding (Conv3d)
           + 2 (Fq d + d d + 6 d d)                    time embedder + time_proj (per sample)
           + 2 L (T d + d d)                           text embedder
    block  = 4 (2 N d d) + 4 N N d                     self-attention q k v o; Q K^T and A V
           + 2 (2 N d d) + 2 (2 L d d) + 4 N L d       cross-attention q o (video), k v (text); attention
           + 2 (2 N d F)                               FFN
    head   = 2 N d P_out                               proj_out (P_out = out_channels x prod(patch))
    lora   = sum over adapted linears 2 M r (d_in + d_out)   (M: the tokens the linear sees)
    forward = B (embed + layers x block + head + lora)

    training (model FLOPs, the MFU convention) = 3 x forward   (backward = 2 x forward)
    recompute (gradient checkpointing)         = B (layers x block + lora in blocks)
    MFU = 3 x forward / (s/step x peak);  HFU = (3 x forward + recompute) / (s/step x peak)

With the base weights frozen the backward does not compute their weight gradients, so the hardware
executes less than 3 x forward: the MFU here is the conventional figure (what published MFUs use), not
a count of executed operations. tests/benchmarks checks ``forward`` and ``recompute`` against
``torch.utils.flop_counter.FlopCounterMode`` on a tiny config. Peak bf16 dense FLOP/s: :data:`PEAK_TFLOPS`
by ``torch.cuda.get_device_name`` or ``--peak-tflops``.

    python benchmarks/bench_finetune_fullsize.py --json                       # on a GPU: the real row
    python benchmarks/bench_finetune_fullsize.py --layers 2 --frames 5 --height 64 --width 64 \\
        --steps 3 --warmup 1 --json                                          # CPU smoke size
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Wan-AI/Wan2.1-T2V-1.3B-Diffusers transformer/config.json (the published values)
WAN21_T2V_1_3B = dict(
    patch_size=[1, 2, 2], num_attention_heads=12, attention_head_dim=128, in_channels=16, out_channels=16,
    text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
    qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=None, added_kv_proj_dim=None, rope_max_seq_len=1024,
)  # fmt: skip
TEXT_LEN = 512  # Wan's max_sequence_length: the T5 context is padded to 512 tokens
FLOW_SHIFT = 3.0  # the scheduler config's flow_shift of Wan2.1-T2V-1.3B-Diffusers
# dense bf16 tensor FLOP/s (no sparsity), TFLOP/s; matched as a substring of get_device_name
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "RTX 4090": 165.0}
METHODS = ("none", "reference-concat")


def transformer_config(layers: int | None = None, **over: Any) -> dict:
    """The published config, with ``layers`` / any key replaced (tiny CPU runs and tests)."""
    cfg = {**WAN21_T2V_1_3B, **over}
    if layers is not None:
        cfg["num_layers"] = layers
    return cfg


def linear_layers(cfg: dict, n: int, text_len: int, batch: int = 1) -> dict[str, tuple[int, int, int]]:
    """Every ``nn.Linear`` of the transformer: name -> (d_in, d_out, rows it multiplies) for ``n`` tokens."""
    d = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    f, t, fq = cfg["ffn_dim"], cfg["text_dim"], cfg["freq_dim"]
    p_out = cfg["out_channels"] * _prod(cfg["patch_size"])
    ce = "condition_embedder."
    out = {
        ce + "time_embedder.linear_1": (fq, d, batch), ce + "time_embedder.linear_2": (d, d, batch),
        ce + "time_proj": (d, 6 * d, batch), ce + "text_embedder.linear_1": (t, d, batch * text_len),
        ce + "text_embedder.linear_2": (d, d, batch * text_len), "proj_out": (d, p_out, batch * n),
    }  # fmt: skip
    for i in range(cfg["num_layers"]):
        b = f"blocks.{i}."
        for name in (
            "attn1.to_q",
            "attn1.to_k",
            "attn1.to_v",
            "attn1.to_out.0",
            "attn2.to_q",
            "attn2.to_out.0",
        ):
            out[b + name] = (d, d, batch * n)
        out[b + "attn2.to_k"] = out[b + "attn2.to_v"] = (d, d, batch * text_len)
        out[b + "ffn.net.0.proj"] = (d, f, batch * n)
        out[b + "ffn.net.2"] = (f, d, batch * n)
    return out


def _prod(xs) -> int:
    p = 1
    for x in xs:
        p *= int(x)
    return p


def adapted(names, targets) -> list[str]:
    """The linear layers LoRA targets name (exact name or dotted suffix, as ``match_targets``)."""
    return [n for n in names if any(n == t or n.endswith("." + t) for t in targets)]


def forward_flops(cfg: dict, n: int, text_len: int, rank: int, targets, batch: int = 1) -> dict[str, int]:
    """Forward matmul FLOPs (module docstring) for ``n`` video tokens, split into parts."""
    d = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    lin = linear_layers(cfg, n, text_len, batch)
    mm = {k: 2 * m * a * b for k, (a, b, m) in lin.items()}
    in_blocks = [k for k in lin if k.startswith("blocks.")]
    attn = cfg["num_layers"] * batch * (4 * n * n * d + 4 * n * text_len * d)
    lora = {k: 2 * lin[k][2] * rank * (lin[k][0] + lin[k][1]) for k in adapted(lin, targets)} if rank else {}
    parts = {
        "patch_embedding": 2 * batch * n * d * cfg["in_channels"] * _prod(cfg["patch_size"]),
        "embedders_and_head": sum(v for k, v in mm.items() if not k.startswith("blocks.")),
        "block_linears": sum(mm[k] for k in in_blocks),
        "attention": attn,
        "lora": sum(lora.values()),
    }
    parts["forward"] = sum(parts.values())
    parts["recompute"] = (
        parts["block_linears"] + attn + sum(v for k, v in lora.items() if k.startswith("blocks."))
    )
    parts["training_model"] = 3 * parts["forward"]
    return parts


def peak_tflops(device_name: str | None, override: float | None) -> tuple[float | None, str]:
    """(peak dense bf16 TFLOP/s, where it came from) for the GPU name, or the ``--peak-tflops`` value."""
    if override is not None:
        return override, "--peak-tflops"
    for key, value in PEAK_TFLOPS.items():
        if device_name and key in device_name:
            return value, f"table ({key})"
    return None, f"unknown device {device_name!r}: pass --peak-tflops"


def write_model(folder: Path, tcfg: dict, vae: bool, device: str) -> float | None:
    """The diffusers folder of a random-weight Wan2.1 T2V model (module docstring), or the parts of it
    that are missing (``model_index.json`` is written last); seconds it took, None if it was complete."""
    import diffusers
    import torch

    complete = (folder / "model_index.json").is_file()
    if complete and (not vae or (folder / "vae" / "config.json").is_file()):
        return None
    t0 = time.perf_counter()
    if not complete:
        from diffusers import UniPCMultistepScheduler, WanTransformer3DModel

        folder.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        level = diffusers.utils.logging.get_verbosity()
        diffusers.utils.logging.set_verbosity_error()  # from_pretrained upcasts the fp32 modules again
        with torch.device(device):
            model = WanTransformer3DModel(**tcfg).to(torch.bfloat16)
        diffusers.utils.logging.set_verbosity(level)
        model.save_pretrained(folder / "transformer")
        del model
        UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                flow_shift=FLOW_SHIFT).save_pretrained(folder / "scheduler")  # fmt: skip
    if vae:  # reference-concat VAE-encodes the references every step: Wan2.1's VAE (its defaults)
        from diffusers import AutoencoderKLWan

        AutoencoderKLWan().save_pretrained(folder / "vae")
    index = {"_class_name": "WanPipeline", "_diffusers_version": diffusers.__version__,
             "transformer": ["diffusers", "WanTransformer3DModel"],
             "scheduler": ["diffusers", "UniPCMultistepScheduler"],
             "vae": ["diffusers", "AutoencoderKLWan"], "text_encoder": ["transformers", "UMT5EncoderModel"],
             "tokenizer": ["transformers", "T5TokenizerFast"]}  # fmt: skip
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return time.perf_counter() - t0


def write_data(prep: Path, model: str, cfg, tcfg: dict, samples: int) -> None:
    """A prepare folder of ``samples`` samples with random cached latents and text embeddings."""
    import numpy as np
    import torch
    from PIL import Image
    from safetensors.torch import save_file

    from ipvgkit.data.manifest import Sample, sample_id, write_manifest
    from ipvgkit.models.resolve import resolve_model
    from ipvgkit.stages.prepare_cache import cache_key, model_revision

    bucket = {"height": cfg.height, "width": cfg.width, "frames": cfg.frames, "fps": int(cfg.fps)}
    key = cache_key(model, model_revision(resolve_model(model)), bucket)
    shape = (1, tcfg["in_channels"], (cfg.frames - 1) // 4 + 1, cfg.height // 8, cfg.width // 8)
    g = torch.Generator().manual_seed(1)
    rng = np.random.default_rng(1)
    (prep / "cache").mkdir(parents=True, exist_ok=True)
    (prep / "refs").mkdir(exist_ok=True)
    rows = []
    seconds = cfg.frames / cfg.fps + 0.5
    for i in range(samples):
        sid = sample_id("bench", f"v{i}", 0, int(seconds * cfg.fps))
        tensors = {"latents": torch.randn(shape, generator=g),
                   "prompt_embeds": torch.randn((1, TEXT_LEN, tcfg["text_dim"]), generator=g),
                   "token_group": torch.zeros(TEXT_LEN, dtype=torch.long)}  # fmt: skip
        save_file(tensors, str(prep / "cache" / f"{i}.safetensors"), metadata={"key": key, "sample_id": sid})
        ref = rng.integers(0, 256, (cfg.height, cfg.width, 3), dtype=np.uint8)
        Image.fromarray(ref).save(prep / "refs" / f"{i}.png")
        rows.append(Sample(
            sample_id=sid, source="bench", identity_id=str(i), video=f"v{i}.mp4", frame_start=0,
            frame_end=int(seconds * cfg.fps), fps=cfg.fps, t_start=0.0, t_end=seconds,
            caption=f"random embeddings {i}", ref_images=[f"refs/{i}.png"], video_fps=cfg.fps, bucket=bucket,
            cache={key: f"cache/{i}.safetensors"},
        ))  # fmt: skip
    write_manifest(prep, rows)


def finetune_config(args: argparse.Namespace, data: Path, model: Path, out: Path):
    """The trainer's config: this script's options, then ``--set`` strings (they win)."""
    from ipvgkit import config
    from ipvgkit.stages.finetune_config import FinetuneConfig

    cli = {"data": str(data), "out": str(out), "model": str(model), "method": args.method,
           "frames": args.frames, "height": args.height, "width": args.width, "max_steps": args.steps,
           "seed": 0, "mixed_precision": args.mixed_precision, "timeline": False,
           "gradient_checkpointing": not args.no_gradient_checkpointing, "checkpoint_every": 10**9,
           "lora": {"rank": args.rank, "alpha": float(args.rank)}, "flow": {"flow_shift": FLOW_SHIFT},
           "optim": {"optimizer": "adamw"}}  # fmt: skip
    memory = {"block_swap": args.block_swap, "quantize": args.quantize}
    cli["memory"] = {k: v for k, v in memory.items() if v is not None}
    return config.resolve(FinetuneConfig, cli=cli, overrides=args.set)


def measure(args: argparse.Namespace, work: Path) -> dict:
    """Write the model and data, train, and collect the figures (module docstring)."""
    import torch

    from ipvgkit import config
    from ipvgkit.stages.finetune import finetune

    cuda = torch.cuda.is_available()
    tcfg = transformer_config(args.layers)
    model = Path(args.model_dir) if args.model_dir else work / "model"
    built = write_model(model, tcfg, args.method == "reference-concat", "cuda" if cuda else "cpu")
    saved = json.loads((model / "transformer" / "config.json").read_text())
    diff = [k for k in tcfg if k not in ("patch_size",) and saved.get(k) != tcfg[k]]
    if diff or list(saved["patch_size"]) != list(tcfg["patch_size"]):
        raise ValueError(
            f"{model} holds another transformer config ({diff or ['patch_size']}): use another --model-dir"
        )
    cfg = finetune_config(args, work / "prep", model, work / "run")
    write_data(work / "prep", str(model), cfg, tcfg, args.samples)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    result = finetune(cfg)
    wall = time.perf_counter() - t0
    rows = [json.loads(ln) for ln in (work / "run" / "metrics.jsonl").read_text().splitlines()]
    timed = [r["s_per_step"] for r in rows[args.warmup :]]
    s_step = round(statistics.median(timed), 4)  # as written: MFU from the same figure
    p = tcfg["patch_size"]
    lat = ((cfg.frames - 1) // 4 + 1, cfg.height // 8, cfg.width // 8)
    n_ref = cfg.num_refs if cfg.method == "reference-concat" else 0
    tokens = (lat[0] + n_ref) * (lat[1] // p[1]) * (lat[2] // p[2]) // p[0]
    flops = forward_flops(tcfg, tokens, TEXT_LEN, cfg.lora.rank, cfg.lora.targets, cfg.batch_size)
    name = torch.cuda.get_device_name() if cuda else None
    peak, peak_from = peak_tflops(name, args.peak_tflops)
    util = {}
    if peak is not None:
        util = {"mfu": flops["training_model"] / s_step / (peak * 1e12),
                "hfu": (flops["training_model"] + flops["recompute"] * cfg.gradient_checkpointing) / s_step / (peak * 1e12)}  # fmt: skip
    levers = {k: v for k, v in config.to_dict(cfg.memory).items() if v not in (0, "none")}
    noted = any(w in n.lower() for n in result.notes for w in ("block swap", "block_swap", "quantiz"))
    return {
        "device": "cuda" if cuda else "cpu", "device_name": name or "cpu", "torch": torch.__version__,
        "model": "Wan2.1-T2V-1.3B transformer config, random weights" if args.layers is None else f"Wan2.1-T2V-1.3B config with {args.layers} layers, random weights",
        "transformer_params": _params(model), "method": cfg.method, "frames": cfg.frames, "height": cfg.height,
        "width": cfg.width, "latent_shape": [tcfg["in_channels"], *lat], "video_tokens": tokens,
        "text_tokens": TEXT_LEN, "rank": cfg.lora.rank, "lora_targets": list(cfg.lora.targets),
        "mixed_precision": cfg.mixed_precision, "weight_dtype": result.model.get("weight_dtype"),
        "gradient_checkpointing": cfg.gradient_checkpointing,
        "steps": len(rows), "warmup": args.warmup, "s_per_step": s_step,
        "s_per_step_all": [r["s_per_step"] for r in rows], "losses": [r["loss"] for r in rows],
        "peak_allocated_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3) if cuda else None,
        "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 3) if cuda else None,
        "peak_rss_mb": None if cuda else rows[-1]["memory_mb"], "memory_levers": levers,
        "memory_levers_noted": noted if levers else None, "build_model_s": None if built is None else round(built, 1),
        "finetune_wall_s": round(wall, 1), "flops": flops, "peak_tflops": peak, "peak_tflops_from": peak_from,
        **util, "trainer_notes": result.notes, "loaded": result.model.get("loaded"),
        "set": list(args.set or []),
    }  # fmt: skip


def _params(model: Path) -> int:
    from safetensors import safe_open

    total = 0
    for f in sorted((model / "transformer").glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as h:
            for k in h.keys():  # noqa: SIM118 - safe_open has no __iter__
                total += _prod(h.get_slice(k).get_shape())
    return total


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from ipvgkit.stages.finetune_config import QUANTIZES

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=81)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=832)
    ap.add_argument("--layers", type=int, default=None, help="transformer layers (default: the real 30)")
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2, help="first steps left out of the median")
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--method", choices=METHODS, default="none")
    ap.add_argument("--mixed-precision", choices=("bf16", "fp16", "no"), default="bf16")
    ap.add_argument("--no-gradient-checkpointing", action="store_true")
    ap.add_argument("--block-swap", type=int, default=None, metavar="N", help="config memory.block_swap")
    ap.add_argument("--quantize", choices=QUANTIZES, default=None, help="config memory.quantize")
    ap.add_argument("--peak-tflops", type=float, default=None, help="peak dense bf16 TFLOP/s of the GPU")
    ap.add_argument("--set", action="append", metavar="KEY=VALUE", help="any finetune config key (repeat)")
    ap.add_argument("--model-dir", default=None, help="reuse (or write) the random-weight model folder here")
    ap.add_argument("--work", default=None, help="keep the prepare and run folders here (default: temp)")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    ap.add_argument("--out-json", default=None, help="also write the result (or the error) to this file")
    args = ap.parse_args(argv)
    if args.steps <= args.warmup:
        ap.error(f"--steps ({args.steps}) must exceed --warmup ({args.warmup})")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="ipvg-bench-ft-"))
    try:
        res = measure(args, work)
        rc = 0
    except Exception as exc:  # an OOM (or any failure) is a result too: written, and the exit code says so
        res = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}",
               "frames": args.frames, "height": args.height, "width": args.width, "set": list(args.set or [])}  # fmt: skip
        rc = 1
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    if args.out_json:
        Path(args.out_json).write_text(json.dumps(res, indent=2) + "\n")
    if args.json or rc:
        print(json.dumps(res, indent=2))
    else:
        print(_summary(res))
    return rc


def _summary(r: dict) -> str:
    mem = (f"peak {r['peak_allocated_gib']} GiB allocated / {r['peak_reserved_gib']} GiB reserved"
           if r["peak_allocated_gib"] is not None else f"peak RSS {r['peak_rss_mb']} MB")  # fmt: skip
    mfu = f", MFU {100 * r['mfu']:.1f}% (HFU {100 * r['hfu']:.1f}%)" if "mfu" in r else ""
    return (f"{r['model']} on {r['device_name']}: {r['frames']}x{r['height']}x{r['width']}, "
            f"{r['video_tokens']} tokens, LoRA r{r['rank']}, {r['mixed_precision']}, grad ckpt "
            f"{r['gradient_checkpointing']}: {r['s_per_step']} s/step, {mem}{mfu}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
