"""What diffusers' context parallelism needs of a Wan model, checked before any weights are read:
a context-parallel plan for the transformer class, a head count and a video token count divisible by
the group size. (Enabling it needs a process group on GPUs: not testable on this CPU-only machine.)"""

from __future__ import annotations

from ipvgkit.models import ModelOptions, load_backend
from ipvgkit.models.context_parallel import token_problems, transformer_problems
from tests.models.conftest import request


def test_tiny_wan_splits_over_its_head_count_only(models_dir):
    backend = load_backend(ModelOptions(model="tiny-wan", models_dir=models_dir))
    assert transformer_problems(backend.resolved, 2) == []  # 2 heads
    (problem,) = transformer_problems(backend.resolved, 3)
    assert "has 2 attention heads, not divisible by 3" in problem and "use one of 2" in problem


def test_vace_has_no_context_parallel_plan(models_dir):
    backend = load_backend(ModelOptions(model="tiny-wan-vace", models_dir=models_dir))
    (problem,) = backend.set_context_parallel(2, 2)
    assert "no context-parallel plan for WanVACETransformer3DModel" in problem


def test_video_tokens_must_split_evenly():
    # 9 frames -> 3 latent frames; 32x32 / 16 -> 4 tokens per frame: 12 tokens
    assert token_problems(2, 9, 32, 32, 16) == [] and token_problems(4, 9, 32, 32, 16) == []
    (problem,) = token_problems(8, 9, 32, 32, 16)
    assert "12 video tokens (32x32, 9 frames) do not split evenly over 8 ranks" in problem
    assert token_problems(8, 9, 32, 32, 16, lead=1) == []  # a reference latent frame: 16 tokens


def test_the_backend_checks_each_request_once_context_parallelism_is_set(models_dir):
    backend = load_backend(ModelOptions(model="tiny-wan", identity="none", models_dir=models_dir))
    odd = request(height=32, width=48)  # 3 x 6 tokens
    assert backend.problems(odd) == []
    assert backend.set_context_parallel(2, 4) == []
    assert backend.problems(odd) == [] and backend.describe()["context_parallel"] == 2
    backend.set_context_parallel(4, 4)
    assert any("18 video tokens" in p for p in backend.problems(odd))
