"""LoRA specs (PATH[:SCALE][:EXPERTS]), per-LoRA scales, fusing, and the lightx2v / original-Wan key layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ipvgkit.errors import UsageError
from ipvgkit.models import ModelOptions, load_backend
from ipvgkit.models.lora import Experts, LoraSpec, parse_spec

from .conftest import request, save_tiny_lora


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        ("a.safetensors", LoraSpec(Path("a.safetensors"), None, Experts.both)),
        ("a.safetensors:0.5", LoraSpec(Path("a.safetensors"), 0.5, Experts.both)),
        ("a.safetensors:0.5:low", LoraSpec(Path("a.safetensors"), 0.5, Experts.low)),
        ("dir/lora:high", LoraSpec(Path("dir/lora"), None, Experts.high)),
        ("./x:y/a.safetensors", LoraSpec(Path("./x:y/a.safetensors"), None, Experts.both)),
        ("a.safetensors:1e-1", LoraSpec(Path("a.safetensors"), 0.1, Experts.both)),
    ],
)
def test_parse_spec(spec, want):
    assert parse_spec(spec) == want


@pytest.mark.parametrize(
    ("spec", "match"),
    [("a.safetensors:hihg", "neither a scale"), ("a.safetensors:-1", "must be >= 0"), (":0.5", "no path")],
)
def test_parse_spec_errors(spec, match):
    with pytest.raises(UsageError, match=match):
        parse_spec(spec)


def test_low_expert_on_a_one_expert_model_is_a_usage_error(models_dir, tiny_lora):
    with pytest.raises(UsageError, match="transformer_2"):
        load_backend(ModelOptions(model="tiny-wan", models_dir=models_dir, lora=[f"{tiny_lora}:1:low"]))


@pytest.fixture(scope="module")
def second_lora(models_dir, tmp_path_factory):
    return save_tiny_lora(models_dir, tmp_path_factory.mktemp("lora2"), seed=2)


def _video(models_dir, **kw):
    return load_backend(ModelOptions(model="tiny-wan", models_dir=models_dir, **kw)).generate(request())


def test_each_lora_has_its_own_scale(models_dir, tiny_lora, second_lora):
    half = _video(models_dir, lora=[f"{tiny_lora}:0.5"])
    assert not np.array_equal(half, _video(models_dir, lora=[str(tiny_lora)]))
    # a second LoRA at scale 0 adds exactly nothing; the first keeps its own 0.5
    assert np.array_equal(_video(models_dir, lora=[f"{tiny_lora}:0.5", f"{second_lora}:0"]), half)
    # --lora-scale is the default of a LoRA without its own scale
    assert np.array_equal(_video(models_dir, lora=[str(tiny_lora)], lora_scale=0.5), half)
    both = load_backend(
        ModelOptions(model="tiny-wan", models_dir=models_dir, lora=[f"{tiny_lora}:0.5", str(second_lora)])
    )
    assert not np.array_equal(both.generate(request()), half)
    assert [d["scale"] for d in both.describe()["loras"]] == [0.5, 1.0]


def _lora_layers(module) -> int:
    return sum(1 for name, _ in module.named_modules() if name.endswith("lora_A"))


def test_fused_lora_matches_unfused_and_drops_the_lora_layers(models_dir, tiny_lora, second_lora):
    specs = [f"{tiny_lora}:0.7", f"{second_lora}:0.3"]
    unfused = load_backend(ModelOptions(model="tiny-wan", models_dir=models_dir, lora=specs))
    fused = load_backend(ModelOptions(model="tiny-wan", models_dir=models_dir, lora=specs, lora_fuse=True))
    a, b = unfused.generate(request()), fused.generate(request())
    assert _lora_layers(unfused.pipeline().transformer) > 0
    assert _lora_layers(fused.pipeline().transformer) == 0
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1  # float rounding of the merged weights
    assert not np.array_equal(b, _video(models_dir))  # the fused weights are not the base ones
    assert fused.describe()["lora_fuse"] is True


def _lightx2v_state_dict(diffusers_file: Path) -> dict:
    """The diffusers-format LoRA rewritten in the original Wan / lightx2v layout
    (``diffusion_model.blocks.N.self_attn.q.lora_down.weight`` / ``lora_up`` / ``alpha``), with the alpha
    folded in so that it means the same LoRA: up' = up * rank / alpha."""
    from safetensors.torch import load_file

    names = {"attn1": "self_attn", "attn2": "cross_attn"}
    projs = {"to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "o"}
    out = {}
    alpha = 2.0
    for key, value in load_file(diffusers_file).items():
        _, _, block, attn, rest = key.split(".", 4)
        proj, kind = rest.rsplit(".lora_", 1)
        base = f"diffusion_model.blocks.{block}.{names[attn]}.{projs[proj]}"
        if kind == "A.weight":
            out[f"{base}.lora_down.weight"] = value
            out[f"{base}.alpha"] = torch.tensor(alpha)
        else:
            rank = value.shape[1]
            out[f"{base}.lora_up.weight"] = value * rank / alpha
    return out


def test_lightx2v_key_layout_loads_as_the_same_lora(models_dir, tiny_lora, tmp_path):
    from safetensors.torch import save_file

    sd = _lightx2v_state_dict(tiny_lora / "pytorch_lora_weights.safetensors")
    assert "diffusion_model.blocks.0.self_attn.q.lora_down.weight" in sd
    path = tmp_path / "wan_lightx2v_lora.safetensors"
    save_file(sd, path)
    theirs = _video(models_dir, lora=[str(path)])
    ours = _video(models_dir, lora=[str(tiny_lora)])
    assert not np.array_equal(theirs, _video(models_dir))
    assert np.abs(theirs.astype(int) - ours.astype(int)).max() <= 1
