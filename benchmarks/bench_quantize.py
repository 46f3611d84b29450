"""Benchmark ``memory.quantize``: one Wan2.1-1.3B-sized transformer block (dim 1536, ffn 8960, 12 heads;
random weights, the real diffusers ``WanTransformer3DModel`` with ``num_layers`` blocks) with a rank-32
LoRA on q/k/v/o: the frozen block linear weight bytes and the seconds of one forward + backward, with
the base weights dense vs quantised by :func:`ipvgkit.models.quantize.quantize_frozen`.

Runs on the CPU in fp32 (int8 only: fp8 needs a CUDA GPU of compute capability >= 8.9).

    .venv/bin/python benchmarks/bench_quantize.py                 # 1 block, 3x240x416 video latents
    .venv/bin/python benchmarks/bench_quantize.py --blocks 2 --repeat 5 --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

import ipvgkit  # noqa: F401  (quiets torchao's import-time lines)
from ipvgkit.models import lora_train
from ipvgkit.models.quantize import quantize_frozen


def build(blocks: int, seed: int = 0):
    from diffusers import WanTransformer3DModel

    torch.manual_seed(seed)
    t = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16,
        out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=blocks,
        cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6,
    )  # fmt: skip
    lora_train.inject_lora(t, 32, 32.0, ["to_q", "to_k", "to_v", "to_out.0"])
    return t


def step_seconds(t, latents, ctx, repeat: int) -> float:
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = t(latents, torch.tensor([500.0]), ctx, return_dict=False)[0]
        out.square().mean().backward()
        ts.append(time.perf_counter() - t0)
        t.zero_grad(set_to_none=True)
    return statistics.median(ts[1:] if len(ts) > 2 else ts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blocks", type=int, default=1)
    ap.add_argument("--frames", type=int, default=3, help="latent frames")
    ap.add_argument("--height", type=int, default=30, help="latent height (pixels / 8)")
    ap.add_argument("--width", type=int, default=52, help="latent width (pixels / 8)")
    ap.add_argument("--text-tokens", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(1)
    latents = torch.randn(1, 16, args.frames, args.height, args.width, generator=g)
    ctx = torch.randn(1, args.text_tokens, 4096, generator=g)
    rows = []
    for kind in ("none", "int8"):
        t = build(args.blocks)
        report = quantize_frozen(t, kind, torch.device("cpu")) if kind != "none" else None
        dense = sum(
            m.weight.numel() * m.weight.element_size()
            for n, m in t.named_modules()
            if isinstance(m, torch.nn.Linear) and n.startswith("blocks.") and ".lora_" not in n
        )
        weight_bytes = report.bytes_after if report else dense
        rows.append({"quantize": kind, "block_linear_weight_mib": round(weight_bytes / 2**20, 2),
                     "s_fwd_bwd": round(step_seconds(t, latents, ctx, args.repeat), 3)})  # fmt: skip
    tokens = args.frames * (args.height // 2) * (args.width // 2)
    meta = {"blocks": args.blocks, "video_tokens": tokens, "text_tokens": args.text_tokens,
            "threads": args.threads, "dtype": "fp32", "torch": torch.__version__}  # fmt: skip
    if args.json:
        print(json.dumps({"meta": meta, "rows": rows}, indent=2))
        return
    print(meta)
    for r in rows:
        print(f"{r['quantize']:>5}: {r['block_linear_weight_mib']:8.2f} MiB  {r['s_fwd_bwd']:.3f} s fwd+bwd")


if __name__ == "__main__":
    main()
