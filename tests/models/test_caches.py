"""The diffusers cache hooks behind --cache, each on tiny-wan with a timeline."""

from __future__ import annotations

import pytest

from ipvgkit.data.cases import Event
from ipvgkit.errors import UsageError
from ipvgkit.models import ModelOptions, load_backend
from ipvgkit.models.caches import CACHES, UNSUPPORTED

from .conftest import request

STEPS = 12
TIMELINE = dict(timeline=[Event(0.0, 0.5, "he waves"), Event(0.5, 1.0, "he sits")], timeline_units="fraction")


def _timeline_run(models_dir, cache: str):
    """(timeline processor runs in the conditional passes, video, backend)."""
    backend = load_backend(ModelOptions(model="tiny-wan", models_dir=models_dir, cache=cache))
    backend.record_attention = True
    video = backend.generate(request(steps=STEPS, **TIMELINE))
    return len(backend.last_timeline.records), video, backend


def test_every_offered_cache_works_with_the_timeline(models_dir):
    full, _, _ = _timeline_run(models_dir, "none")
    assert full == STEPS * 2  # 2 blocks x every step (conditional pass)
    for cache in CACHES:
        if cache == "none":
            continue
        runs, video, backend = _timeline_run(models_dir, cache)
        assert video.shape == (9, 32, 32, 3)
        assert backend.pipeline().transformer.is_cache_enabled and backend.describe()["cache"] == cache
        # the timeline processor still runs (on the steps the hook computes), and the hook skips some
        assert 0 < runs < full, cache


@pytest.mark.parametrize("name", sorted(UNSUPPORTED))
def test_refused_caches_say_why(models_dir, name):
    with pytest.raises(UsageError, match="is not supported: diffusers'"):
        load_backend(ModelOptions(model="tiny-wan", models_dir=models_dir, cache=name))


def test_unknown_cache(models_dir):
    with pytest.raises(
        UsageError, match="unknown cache 'fast'; choose one of none, first-block, taylorseer, sea"
    ):
        load_backend(ModelOptions(model="tiny-wan", models_dir=models_dir, cache="fast"))
