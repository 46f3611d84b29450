"""Wan 2.2 layouts on tiny random models: two experts (boundary_ratio) and per-token timesteps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import WanPipeline, WanTransformer3DModel

from ipvgkit.models import ModelOptions, load_backend
from ipvgkit.models.tiny import _transformer_kwargs, materialise_tiny
from ipvgkit.models.wan import to_uint8

from .conftest import request


def _save_variant(models_dir, dest, **pipe_kwargs):
    base = WanPipeline.from_pretrained(materialise_tiny("tiny-wan", models_dir))
    extra = {}
    if pipe_kwargs.pop("two_experts", False):
        torch.manual_seed(7)
        extra["transformer_2"] = WanTransformer3DModel(**_transformer_kwargs())
    pipe = WanPipeline(
        tokenizer=base.tokenizer, text_encoder=base.text_encoder, vae=base.vae, scheduler=base.scheduler,
        transformer=base.transformer, **extra, **pipe_kwargs,
    )  # fmt: skip
    pipe.save_pretrained(dest)
    return dest


@pytest.mark.parametrize(
    "variant",
    [dict(two_experts=True, boundary_ratio=0.875), dict(expand_timesteps=True)],
    ids=["a14b", "ti2v"],
)
def test_loop_matches_diffusers_on_wan22_layouts(models_dir, tmp_path, variant):
    folder = _save_variant(models_dir, tmp_path / "wan22", **dict(variant))
    backend = load_backend(ModelOptions(model=str(folder)))
    req = request(steps=4, seed=5, negative_prompt="")
    ours = backend.generate(req)
    pipe = backend.pipeline()
    ref = pipe(
        req.prompt, negative_prompt="", num_frames=9, height=32, width=32, num_inference_steps=4, guidance_scale=5.0,
        generator=torch.Generator().manual_seed(5), output_type="np",
    ).frames[0]  # fmt: skip
    assert np.array_equal(ours, to_uint8(ref))


def test_reference_frames_get_timestep_zero_with_per_token_timesteps(models_dir, tmp_path, tom_hanks):
    folder = _save_variant(models_dir, tmp_path / "ti2v", expand_timesteps=True)
    backend = load_backend(ModelOptions(model=str(folder), identity="reference-concat"))
    seen = []
    pipe = backend.pipeline()
    hook = pipe.transformer.register_forward_pre_hook(
        lambda m, a, kw: seen.append(kw["timestep"].clone()), with_kwargs=True
    )
    try:
        backend.generate(request(ref_images=[tom_hanks]))
    finally:
        hook.remove()
    tpf = 4  # 32x32 → 2x2 tokens per latent frame
    for ts in seen:
        assert ts.shape == (1, (1 + 3) * tpf)
        assert torch.all(ts[:, :tpf] == 0) and torch.all(ts[:, tpf:] > 0)
