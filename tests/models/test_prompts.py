"""Text conditioning of the Wan backends: Wan's default negative prompt, the per-run prompt cache,
no-CFG runs (guidance <= 1: one transformer call per step) and the text-encoder placement."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ipvgkit.data.cases import Event
from ipvgkit.errors import UsageError
from ipvgkit.models import ModelOptions, load_backend
from ipvgkit.models.prompts import WAN_NEGATIVE_PROMPT, check_placement
from ipvgkit.models.wan import to_uint8

from .conftest import request

TIMELINE = dict(timeline=[Event(0.0, 0.5, "he waves"), Event(0.5, 1.0, "he sits")], timeline_units="fraction")


class Calls:
    """Counts the real forward calls of a module (a torch forward hook)."""

    def __init__(self, module):
        self.n = 0
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, *_):
        self.n += 1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def test_default_negative_prompt_is_wans_own(models_dir):
    assert WAN_NEGATIVE_PROMPT.startswith("色调艳丽，过曝，静态") and WAN_NEGATIVE_PROMPT.endswith("倒着走")
    backend = load_backend(ModelOptions(model="tiny-wan", models_dir=models_dir))
    ours = backend.generate(request(seed=4))
    d = backend.describe()
    assert d["negative_prompt_used"] == WAN_NEGATIVE_PROMPT and "Wan's default" in d["negative_prompt_source"]
    ref = backend.pipeline()(
        request().prompt, negative_prompt=WAN_NEGATIVE_PROMPT, num_frames=9, height=32, width=32,
        num_inference_steps=2, guidance_scale=5.0, generator=torch.Generator().manual_seed(4), output_type="np",
    ).frames[0]  # fmt: skip
    assert np.array_equal(ours, to_uint8(ref))
    empty = backend.generate(request(seed=4, negative_prompt=""))
    assert not np.array_equal(empty, ours)
    assert backend.describe()["negative_prompt_used"] == ""


def test_each_text_is_encoded_once_per_run(models_dir):
    backend = load_backend(ModelOptions(model="tiny-wan", models_dir=models_dir))
    fresh = backend.generate(request(prompt="a cat"))
    with Calls(backend.pipeline().text_encoder) as t5:
        again = backend.generate(request(prompt="a cat"))
        backend.generate(request(prompt="a dog"))
        backend.generate(request(prompt="a dog", negative_prompt="blurry"))
    assert t5.n == 2  # "a dog" and "blurry"; "a cat" and Wan's negative prompt come from the cache
    assert np.array_equal(again, fresh)  # a cached embedding is the one a fresh run computes
    stats = backend.describe()["prompt_cache"]
    assert stats["misses"] == 4 and stats["hits"] == 4


@pytest.mark.parametrize(
    ("identity", "kw"),
    [("none", {}), ("reference-concat", {}), ("none", TIMELINE), ("reference-concat", TIMELINE)],
    ids=["plain", "reference-concat", "timeline", "reference-concat+timeline"],
)
def test_guidance_one_runs_one_transformer_call_per_step(models_dir, tom_hanks, identity, kw):
    backend = load_backend(ModelOptions(model="tiny-wan", models_dir=models_dir, identity=identity))
    backend.record_attention = True
    refs = [tom_hanks] if identity == "reference-concat" else []
    pipe = backend.pipeline()
    with Calls(pipe.transformer) as calls, Calls(pipe.text_encoder) as t5:
        video = backend.generate(request(steps=4, guidance=1.0, ref_images=refs, **kw))
    assert video.shape == (9, 32, 32, 3)
    assert calls.n == 4  # no unconditional pass
    assert t5.n == 1 + len(kw.get("timeline", []))  # the prompt (and events); no negative prompt
    d = backend.describe()
    assert d["cfg"] is False and d["negative_prompt_used"] is None
    if kw:
        assert len(backend.last_timeline.records) == 4 * 2  # the timeline processor ran in every call
    with Calls(pipe.transformer) as calls:
        backend.generate(request(steps=4, guidance=5.0, ref_images=refs, **kw))
    assert calls.n == 8


def test_text_encoder_placement(models_dir):
    check_placement("cpu", "none")
    with pytest.raises(UsageError, match="unknown text_encoder"):
        check_placement("gpu", "none")
    with pytest.raises(UsageError, match="cannot be combined with --offload model"):
        load_backend(
            ModelOptions(model="tiny-wan", models_dir=models_dir, text_encoder="offload", offload="model")
        )
    base = load_backend(ModelOptions(model="tiny-wan", models_dir=models_dir)).generate(request())
    for placement in ("cpu", "offload"):
        backend = load_backend(ModelOptions(model="tiny-wan", models_dir=models_dir, text_encoder=placement))
        assert np.array_equal(backend.generate(request()), base)
        assert backend.pipeline().text_encoder.device.type == "cpu"
        assert backend.describe()["text_encoder"] == placement


@pytest.mark.parametrize("model", ["tiny-wan-i2v", "tiny-wan-vace"])
def test_guidance_one_in_diffusers_pipelines(models_dir, tom_hanks, model):
    backend = load_backend(ModelOptions(model=model, models_dir=models_dir))
    pipe = backend.pipeline()
    with Calls(pipe.transformer) as calls, Calls(pipe.text_encoder) as t5:
        backend.generate(request(steps=3, guidance=1.0, ref_images=[tom_hanks], **TIMELINE))
    assert calls.n == 3 and t5.n == 3  # one pass per step; prompt + 2 events, no negative prompt
