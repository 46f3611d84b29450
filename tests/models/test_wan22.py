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


def _lora_layers(module) -> int:
    return sum(1 for name, _ in module.named_modules() if name.endswith("lora_A"))


@pytest.fixture(scope="module")
def a14b(models_dir, tmp_path_factory):
    return _save_variant(
        models_dir, tmp_path_factory.mktemp("a14b") / "m", two_experts=True, boundary_ratio=0.875
    )


@pytest.mark.parametrize(
    ("suffix", "layers"), [("", (True, True)), (":1:high", (True, False)), (":0.5:low", (False, True))]
)
def test_lora_goes_into_the_experts_it_names(a14b, tiny_lora, suffix, layers):
    backend = load_backend(ModelOptions(model=str(a14b), lora=[f"{tiny_lora}{suffix}"]))
    base = load_backend(ModelOptions(model=str(a14b))).generate(request(steps=4))
    video = backend.generate(request(steps=4))
    pipe = backend.pipeline()
    assert (_lora_layers(pipe.transformer) > 0, _lora_layers(pipe.transformer_2) > 0) == layers
    assert not np.array_equal(video, base)


def test_fused_lora_in_both_experts(a14b, tiny_lora):
    unfused = load_backend(ModelOptions(model=str(a14b), lora=[str(tiny_lora)])).generate(request(steps=4))
    backend = load_backend(ModelOptions(model=str(a14b), lora=[str(tiny_lora)], lora_fuse=True))
    fused = backend.generate(request(steps=4))
    pipe = backend.pipeline()
    assert _lora_layers(pipe.transformer) == _lora_layers(pipe.transformer_2) == 0
    assert np.abs(fused.astype(int) - unfused.astype(int)).max() <= 1


def test_wan22_keeps_its_own_flow_shift(a14b, tmp_path):
    from diffusers import UniPCMultistepScheduler

    pipe = WanPipeline.from_pretrained(a14b)
    pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config, flow_shift=12.0)
    pipe.save_pretrained(tmp_path / "shift12")
    backend = load_backend(ModelOptions(model=str(tmp_path / "shift12")))
    backend.generate(request(steps=2))  # 32x32: Wan 2.1's rule would give 3.0
    d = backend.describe()
    assert d["flow_shift"] == backend.pipeline().scheduler.config.flow_shift == 12.0
    assert "Wan 2.2" in d["flow_shift_source"]
    given = load_backend(ModelOptions(model=str(tmp_path / "shift12"), flow_shift=5.0))
    given.generate(request(steps=2))
    assert given.pipeline().scheduler.config.flow_shift == 5.0 and given.describe()["flow_shift"] == 5.0
