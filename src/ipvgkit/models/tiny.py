"""Built-in tiny random-weight Wan models (``tiny-wan``, ``tiny-wan-i2v``, ``tiny-wan-vace``).

They have the configs of diffusers' own Wan tests (2 transformer layers, 2 heads of 12 channels, a VAE
with base width 3) plus a tiny T5 text encoder and a byte-level tokenizer that needs no vocabulary
file. Each is built from a fixed seed, written ONCE into ``<models dir>/<name>`` with
``save_pretrained`` (to a temp folder, then renamed) and loaded back through the ordinary
``from_pretrained`` path, exactly like a real checkpoint. They produce noise, fast: for tests and demos.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

TINY_MODELS = ("tiny-wan", "tiny-wan-i2v", "tiny-wan-vace")
TINY_SEED = 0
TEXT_DIM = 32
_MARKER = "ipvg_tiny.json"  # written last: a folder without it is incomplete


def is_tiny(name: str) -> bool:
    """True for the names of the built-in tiny models."""
    return name in TINY_MODELS


def _tiny_vae():
    from diffusers import AutoencoderKLWan

    return AutoencoderKLWan(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    )


def _tiny_text():
    from transformers import ByT5Tokenizer, T5Config, T5EncoderModel

    tokenizer = ByT5Tokenizer()
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=TEXT_DIM,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=32,
        dropout_rate=0.0,
    )
    return tokenizer, T5EncoderModel(config).eval()


def _tiny_scheduler():
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)


def _transformer_kwargs() -> dict:
    return dict(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=16,
        out_channels=16,
        text_dim=TEXT_DIM,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=1024,
    )


def build_tiny_pipeline(name: str = "tiny-wan"):
    """Build the named tiny pipeline in memory (fixed seeds: identical weights every time)."""
    import torch

    from ipvgkit.models.runtime import quiet_hf_loading

    quiet_hf_loading()
    from diffusers import WanImageToVideoPipeline, WanPipeline, WanTransformer3DModel, WanVACEPipeline

    if not is_tiny(name):
        raise ValueError(f"unknown tiny model {name!r}; choose one of {', '.join(TINY_MODELS)}")
    torch.manual_seed(TINY_SEED)
    vae = _tiny_vae()
    torch.manual_seed(TINY_SEED)
    tokenizer, text_encoder = _tiny_text()
    scheduler = _tiny_scheduler()
    torch.manual_seed(TINY_SEED)
    kwargs = _transformer_kwargs()
    common = dict(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler)
    if name == "tiny-wan":
        return WanPipeline(transformer=WanTransformer3DModel(**kwargs), **common)
    if name == "tiny-wan-vace":
        from diffusers import WanVACETransformer3DModel

        kwargs.update(num_layers=3, vace_layers=[0, 2], vace_in_channels=96)
        return WanVACEPipeline(transformer=WanVACETransformer3DModel(**kwargs), **common)
    from transformers import CLIPVisionConfig, CLIPVisionModel

    try:  # transformers >= 5: the PIL backend (the default one needs torchvision)
        from transformers import CLIPImageProcessorPil as CLIPImageProcessor
    except ImportError:
        from transformers import CLIPImageProcessor

    inner = kwargs["num_attention_heads"] * kwargs["attention_head_dim"]
    kwargs.update(in_channels=36, image_dim=4, added_kv_proj_dim=inner)
    transformer = WanTransformer3DModel(**kwargs)
    torch.manual_seed(TINY_SEED)
    vision = CLIPVisionConfig(
        hidden_size=4, projection_dim=4, num_hidden_layers=2, num_attention_heads=2, image_size=32,
        intermediate_size=16, patch_size=4,
    )  # fmt: skip
    image_encoder = CLIPVisionModel(vision).eval()
    processor = CLIPImageProcessor(crop_size=32, size=32)
    return WanImageToVideoPipeline(
        transformer=transformer, image_encoder=image_encoder, image_processor=processor, **common
    )


def materialise_tiny(name: str, models_dir: Path) -> Path:
    """Return ``models_dir / name``, writing the tiny model there first if it is not complete yet.

    Writers take an exclusive lock beside the folder, so ranks that start together write it once and
    nobody replaces a copy that another process is reading."""
    import fcntl

    dest = Path(models_dir) / name
    if (dest / _MARKER).is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest.parent / f"{name}.lock", "w") as lock:  # kept: unlinking a lock file races
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (dest / _MARKER).is_file():  # another process wrote it while we waited
            return dest
        _write_tiny(name, dest)
    return dest


def _write_tiny(name: str, dest: Path) -> None:
    pipe = build_tiny_pipeline(name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=dest.parent))
    try:
        pipe.save_pretrained(tmp, safe_serialization=True)
        (tmp / _MARKER).write_text(json.dumps({"name": name, "seed": TINY_SEED}) + "\n")
        if dest.exists():  # a leftover without marker (an interrupted older write): replace it
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
