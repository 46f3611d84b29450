"""Fixtures of the model backend tests: the built-in tiny models, written once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ipvgkit.models import GenerationRequest, ModelOptions, load_backend


@pytest.fixture(scope="session", autouse=True)
def _few_threads():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ipvg-models")


@pytest.fixture(scope="session")
def tiny_wan(models_dir):
    """The tiny-wan backend (shared: tests must not change its options)."""
    return load_backend(ModelOptions(model="tiny-wan", models_dir=models_dir))


def save_tiny_lora(models_dir: Path, out: Path, seed: int = 1) -> Path:
    """A LoRA with non-zero B made with peft on the tiny transformer, saved in diffusers format."""
    from diffusers import WanPipeline, WanTransformer3DModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from ipvgkit.models.tiny import materialise_tiny

    transformer = WanTransformer3DModel.from_pretrained(
        materialise_tiny("tiny-wan", models_dir) / "transformer"
    )
    torch.manual_seed(seed)
    config = LoraConfig(
        r=4, lora_alpha=8, init_lora_weights=False, target_modules=["to_q", "to_k", "to_v", "to_out.0"]
    )
    transformer.add_adapter(config)
    WanPipeline.save_lora_weights(out, transformer_lora_layers=get_peft_model_state_dict(transformer))
    return out


@pytest.fixture(scope="session")
def tiny_lora(models_dir, tmp_path_factory):
    """A LoRA with non-zero B made with peft on the tiny transformer, saved in diffusers format."""
    return save_tiny_lora(models_dir, tmp_path_factory.mktemp("lora"))


def request(**kw) -> GenerationRequest:
    """A small request: 9 frames, 32x32, 2 steps."""
    base = dict(case_id="c1", prompt="a man walks in a park", ref_images=[], num_frames=9, height=32, width=32,
                fps=16.0, steps=2, guidance=5.0, seed=0)  # fmt: skip
    base.update(kw)
    return GenerationRequest(**base)
