"""Size-dependent settings: the scheduler's flow shift (--flow-shift) and VAE tiling (on at >= 720p)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ipvgkit.errors import UsageError
from ipvgkit.models import ModelOptions, load_backend, sizes
from ipvgkit.models.wan import to_uint8

from .conftest import request


@pytest.mark.parametrize(
    ("h", "w", "want"),
    [(480, 832, 3.0), (832, 480, 3.0), (704, 1280, 3.0), (720, 1280, 5.0), (1280, 720, 5.0)],
)
def test_flow_shift_default_follows_wans_examples(tiny_wan, h, w, want):
    value, note = sizes.flow_shift_for(None, tiny_wan.pipeline(), h, w)
    assert value == want and "derived from the size" in note and f"{w}x{h}" in note


def test_flow_shift_given_is_used_and_recorded(models_dir, tiny_wan):
    from diffusers import UniPCMultistepScheduler

    backend = load_backend(ModelOptions(model="tiny-wan", models_dir=models_dir, flow_shift=5.0))
    ours = backend.generate(request(negative_prompt="blurry", seed=2))
    d = backend.describe()
    assert d["flow_shift"] == 5.0 and d["flow_shift_source"] == "given (--flow-shift)"
    assert not np.array_equal(ours, tiny_wan.generate(request(negative_prompt="blurry", seed=2)))
    # an independent run: diffusers' own pipeline with the scheduler its docs build for a shift
    pipe = tiny_wan.pipeline()
    saved = pipe.scheduler
    pipe.scheduler = UniPCMultistepScheduler.from_config(saved.config, flow_shift=5.0)
    try:
        ref = pipe(
            request().prompt, negative_prompt="blurry", num_frames=9, height=32, width=32, num_inference_steps=2,
            guidance_scale=5.0, generator=torch.Generator().manual_seed(2), output_type="np",
        ).frames[0]  # fmt: skip
    finally:
        pipe.scheduler = saved
    assert np.array_equal(ours, to_uint8(ref))
    tiny_wan.generate(request())
    assert (
        tiny_wan.describe()["flow_shift"] == 3.0 and "below 720p" in tiny_wan.describe()["flow_shift_source"]
    )


def test_bad_flow_shift_is_a_usage_error(models_dir):
    with pytest.raises(UsageError, match="flow_shift must be > 0"):
        load_backend(ModelOptions(model="tiny-wan", models_dir=models_dir, flow_shift=0.0))


def test_vae_tiling_rule():
    assert sizes.vae_tiling_for(None, 720, 1280)[0] is True
    assert sizes.vae_tiling_for(None, 480, 832)[0] is False
    assert sizes.vae_tiling_for(False, 720, 1280) == (False, "given (--no-vae-tiling)")
    assert sizes.vae_tiling_for(True, 32, 32)[0] is True


def test_vae_tiling_is_on_by_default_at_720p(models_dir):
    backend = load_backend(ModelOptions(model="tiny-wan", models_dir=models_dir))
    backend.generate(request(num_frames=1, height=720, width=1280, steps=1))
    assert backend.pipeline().vae.use_tiling
    d = backend.describe()
    assert d["vae_tiling_used"] is True and "on by default at 720p" in d["vae_tiling_source"]
    assert d["flow_shift"] == 5.0
    backend.generate(request())
    assert not backend.pipeline().vae.use_tiling and backend.describe()["vae_tiling_used"] is False
