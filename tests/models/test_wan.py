"""The wan backends on the built-in tiny models: generation, checks, identity modes, LoRA, runtime options."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from ipvgkit.data.cases import Event
from ipvgkit.errors import CaseError, UsageError
from ipvgkit.models import ModelOptions, load_backend
from ipvgkit.models import identity as ident
from ipvgkit.models.wan import to_uint8

from .conftest import request


def test_generate_shape_dtype_determinism_and_speed(tiny_wan):
    tiny_wan.generate(request())  # load + warm up
    t0 = time.perf_counter()
    video = tiny_wan.generate(request())
    elapsed = time.perf_counter() - t0
    assert video.shape == (9, 32, 32, 3) and video.dtype == np.uint8
    assert np.array_equal(video, tiny_wan.generate(request()))
    assert not np.array_equal(video, tiny_wan.generate(request(seed=1)))
    assert elapsed < 3.0  # ~0.1 s on an idle CPU core; generous for a shared machine


def test_our_loop_matches_diffusers_wan_pipeline(tiny_wan):
    """With no reference and a plain prompt our loop gives WanPipeline.__call__'s frames."""
    req = request(prompt="a red car", negative_prompt="blurry", seed=3, num_frames=13, width=48)
    ours = tiny_wan.generate(req)
    pipe = tiny_wan.pipeline()
    ref = pipe(
        "a red car", negative_prompt="blurry", num_frames=13, height=32, width=48, num_inference_steps=2,
        guidance_scale=5.0, generator=torch.Generator().manual_seed(3), output_type="np",
    ).frames[0]  # fmt: skip
    assert np.array_equal(ours, to_uint8(ref))


@pytest.mark.parametrize("flow_shift", [3.0, 5.0, 8.0, 12.0])
@pytest.mark.parametrize("steps", [2, 4])
def test_our_loop_matches_wan_pipeline_bitwise_at_every_flow_shift(models_dir, flow_shift, steps):
    """The loop equals ``WanPipeline.__call__`` exactly, given prompt strings or diffusers' own
    ``encode_prompt`` embeddings (512 tokens, as ``__call__`` uses). Our prompts were once T5-encoded
    with autograd on, which picks other CPU kernels (7e-7 off) and kept every cached prompt's graph
    alive; that was the old "up to 1/255 at flow_shift 8"."""
    backend = load_backend(ModelOptions(model="tiny-wan", models_dir=models_dir, flow_shift=flow_shift))
    req = request(prompt="a red car", negative_prompt="blurry", seed=3, num_frames=13, width=48, steps=steps)
    ours = backend.generate(req)
    pipe = backend.pipeline()
    assert pipe.scheduler.config.flow_shift == flow_shift
    cached = backend.prompt_cache.get(["a red car"], torch.device("cpu"), torch.float32)[0]
    assert cached.grad_fn is None and not cached.requires_grad
    with torch.no_grad():
        pos, neg = pipe.encode_prompt(
            "a red car", "blurry", do_classifier_free_guidance=True, device="cpu", max_sequence_length=512
        )
    common = dict(num_frames=13, height=32, width=48, num_inference_steps=steps, guidance_scale=5.0,
                  output_type="np")  # fmt: skip
    for given in (dict(prompt_embeds=pos, negative_prompt_embeds=neg),
                  dict(prompt="a red car", negative_prompt="blurry")):  # fmt: skip
        ref = pipe(**given, **common, generator=torch.Generator().manual_seed(3)).frames[0]
        assert np.array_equal(ours, to_uint8(ref))


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        (dict(num_frames=10), "4k\\+1"),
        (dict(height=30), "multiple of 16"),
        (dict(width=40), "multiple of 16"),
        (dict(steps=0), "steps"),
        (
            dict(timeline=[Event(0, 0.3, "a"), Event(0.3, 0.9, "b")], timeline_units="seconds"),
            "after the video's end",
        ),
        (dict(timeline=[Event(0, 0.3, "a")], timeline_mode="hard"), "unknown timeline mode"),
    ],
)
def test_check_rejects_bad_requests(tiny_wan, kw, match):
    with pytest.raises(CaseError, match=match) as info:
        tiny_wan.check(request(case_id="id007/prompt2", **kw))
    assert info.value.case_key == "id007/prompt2"


def test_check_reference_images(tiny_wan, tmp_path, tom_hanks):
    tiny_wan.check(request(ref_images=[tom_hanks]))
    with pytest.raises(CaseError, match="not found"):
        tiny_wan.check(request(ref_images=[tmp_path / "missing.png"]))
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    with pytest.raises(CaseError, match="cannot be read"):
        tiny_wan.check(request(ref_images=[bad]))


def test_describe_says_fp32_on_cpu(tiny_wan):
    d = tiny_wan.describe()
    assert d["device"] == "cpu" and d["dtype"] == "fp32" and d["dtype_requested"] == "bf16"
    assert "fp32" in d["note"]


def test_fit_image_centre_crops(tom_hanks):
    im = ident.open_image(tom_hanks)
    out = ident.fit_image(im, 48, 32)
    assert out.size == (48, 32)


# ---------------------------------------------------------------- identity: reference-concat
def test_reference_concat_keeps_reference_frames_clean(models_dir, tom_hanks, astronaut):
    backend = load_backend(ModelOptions(model="tiny-wan", models_dir=models_dir, identity="reference-concat"))
    pipe = backend.pipeline()
    seen = []
    hook = pipe.transformer.register_forward_pre_hook(
        lambda m, a, kw: seen.append((kw["hidden_states"].clone(), kw["timestep"].clone())), with_kwargs=True
    )
    try:
        req = request(ref_images=[tom_hanks, astronaut])
        video = backend.generate(req)
    finally:
        hook.remove()
    assert video.shape == (9, 32, 32, 3)  # reference frames dropped before decoding
    refs = [ident.fit_image(ident.open_image(p), 32, 32) for p in (tom_hanks, astronaut)]
    expected = ident.reference_latents(pipe, refs, 32, 32, "cpu", torch.float32)
    assert len(seen) == 2 * 2  # 2 steps x (cond, uncond)
    for hidden, _ in seen:
        assert hidden.shape[2] == 2 + 3  # 2 reference frames + 3 video latent frames
        assert torch.equal(hidden[:, :, :2], expected)  # exactly clean at every step
    assert not torch.equal(seen[0][0][:, :, 2:], seen[-1][0][:, :, 2:])  # the video part is denoised
    plain = load_backend(ModelOptions(model="tiny-wan", models_dir=models_dir, identity="none")).generate(req)
    assert not np.array_equal(video, plain)


def test_reference_concat_needs_a_reference(models_dir):
    backend = load_backend(ModelOptions(model="tiny-wan", models_dir=models_dir, identity="reference-concat"))
    with pytest.raises(CaseError, match="needs at least one reference image"):
        backend.check(request())


def test_auto_identity_rules(tmp_path):
    adapter = {"identity": "reference-concat"}
    assert ident.resolve_identity("auto", "wan-t2v", True, adapter) == "reference-concat"
    assert ident.resolve_identity("auto", "wan-t2v", False, adapter) == "none"
    assert ident.resolve_identity("auto", "wan-t2v", True, {}) == "none"
    assert ident.resolve_identity("auto", "wan-i2v", True, {}) == "i2v"
    assert ident.resolve_identity("auto", "wan-vace", True, {}) == "vace"
    assert ident.resolve_identity("auto", "wan-vace", False, {}) == "none"
    assert ident.resolve_identity("auto", "consisid", True, {}) == "consisid"
    with pytest.raises(UsageError, match="not available"):
        ident.resolve_identity("reference-concat", "wan-i2v", True, {})
    lora_dir = tmp_path / "lora"
    lora_dir.mkdir()
    (lora_dir / "ipvg_adapter.json").write_text(json.dumps(adapter))
    info = ident.read_adapter_info(tmp_path / "model", [lora_dir / "pytorch_lora_weights.safetensors"])
    assert info["identity"] == "reference-concat"
    assert ident.read_adapter_info(tmp_path / "model", []) == {}


# ---------------------------------------------------------------- identity: i2v and vace
def test_i2v_uses_the_reference_as_first_frame(models_dir, tom_hanks):
    backend = load_backend(ModelOptions(model="tiny-wan-i2v", models_dir=models_dir))
    req = request(ref_images=[tom_hanks], width=48)
    assert backend.identity_mode(req) == "i2v"
    video = backend.generate(req)
    assert video.shape == (9, 32, 48, 3)
    with pytest.raises(CaseError, match="needs at least one reference image"):
        backend.check(request())
    with pytest.raises(UsageError, match="not available"):
        load_backend(ModelOptions(model="tiny-wan-i2v", models_dir=models_dir, identity="reference-concat"))


def test_vace_with_one_and_two_references(models_dir, tom_hanks, astronaut):
    backend = load_backend(ModelOptions(model="tiny-wan-vace", models_dir=models_dir))
    one = backend.generate(request(ref_images=[tom_hanks]))
    two = backend.generate(request(ref_images=[tom_hanks, astronaut]))
    none = backend.generate(request())
    assert one.shape == two.shape == none.shape == (9, 32, 32, 3)
    assert not np.array_equal(one, two) and not np.array_equal(one, none)


# ---------------------------------------------------------------- LoRA
def test_lora_changes_the_output_and_scale_zero_is_the_base(models_dir, tiny_lora, tiny_wan):
    from safetensors import safe_open

    with safe_open(tiny_lora / "pytorch_lora_weights.safetensors", "pt") as f:
        keys = list(f.keys())  # noqa: SIM118 - safe_open is not a mapping
    assert all(k.startswith("transformer.blocks.") for k in keys)
    assert "transformer.blocks.0.attn1.to_q.lora_A.weight" in keys
    base = tiny_wan.generate(request())
    with_lora = load_backend(ModelOptions(model="tiny-wan", models_dir=models_dir, lora=[tiny_lora]))
    assert not np.array_equal(with_lora.generate(request()), base)
    assert with_lora.describe()["lora"] == [str(tiny_lora / "pytorch_lora_weights.safetensors")]
    zero = load_backend(
        ModelOptions(model="tiny-wan", models_dir=models_dir, lora=[tiny_lora], lora_scale=0.0)
    )
    assert np.array_equal(zero.generate(request()), base)


# ---------------------------------------------------------------- runtime options
def _block1_attention_calls(backend, req) -> int:
    calls = []
    hook = (
        backend.pipeline().transformer.blocks[1].attn1.register_forward_pre_hook(lambda m, a: calls.append(1))
    )
    try:
        backend.generate(req)
    finally:
        hook.remove()
    return len(calls)


def test_first_block_cache_skips_blocks_on_tiny_wan(models_dir, tiny_wan):
    backend = load_backend(ModelOptions(model="tiny-wan", models_dir=models_dir, cache="first-block"))
    req = request(steps=12)
    assert _block1_attention_calls(tiny_wan, req) == 12 * 2  # every step, cond + uncond
    cached = _block1_attention_calls(backend, req)
    assert 0 < cached < 12 * 2  # some steps reuse the cached residual of the later blocks
    assert backend.generate(req).shape == (9, 32, 32, 3)
    assert backend.pipeline().transformer.is_cache_enabled
    assert backend.describe()["cache"] == "first-block"


def test_vae_tiling_runs(models_dir, tiny_wan):
    backend = load_backend(ModelOptions(model="tiny-wan", models_dir=models_dir, vae_tiling=True))
    assert np.array_equal(backend.generate(request()), tiny_wan.generate(request()))  # tiles unused at 32x32
    assert backend.pipeline().vae.use_tiling


@pytest.mark.slow  # torch.compile of the tiny transformer takes ~50 s on this CPU
def test_compile_gives_the_same_video(models_dir):
    eager = load_backend(ModelOptions(model="tiny-wan", models_dir=models_dir, dtype="fp32"))
    compiled = load_backend(ModelOptions(model="tiny-wan", models_dir=models_dir, dtype="fp32", compile=True))
    a, b = eager.generate(request()), compiled.generate(request())
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 2


def test_reference_latents_keep_no_autograd_graph(tiny_wan, tom_hanks):
    """The reference latents of a generation (a frozen VAE's output) carry no autograd graph."""
    pipe = tiny_wan.pipeline()
    fitted = [ident.fit_image(ident.open_image(tom_hanks), 32, 32)]
    z = ident.reference_latents(pipe, fitted, 32, 32, torch.device("cpu"), torch.float32)
    assert z.grad_fn is None and not z.requires_grad and z.shape[2] == 1
