"""`ipvg prepare cache` on tiny-wan: safetensors per sample, keyed by model, revision, bucket."""

import json

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.torch import load_file

from ipvgkit.data.manifest import read_manifest
from ipvgkit.media import read_frames
from ipvgkit.stages.prepare import PrepareConfig, run_prepare
from ipvgkit.stages.prepare_cache import CacheConfig, bucket_pixels, run_cache
from ipvgkit.stages.prepare_work import SampleSettings, fit_to_bucket
from tests.data.sources.builders import vip200k_dataset


@pytest.mark.slow
def test_cache_then_reuse_and_invalidate_on_bucket_change(tmp_path):
    ann, videos = vip200k_dataset(tmp_path / "d")
    small = SampleSettings(buckets=["32x32"], max_frames=5)
    pcfg = PrepareConfig(source="vip200k", annotations=ann, videos=videos, out=tmp_path / "p", workers=1,
                         face_backend="none", sample=small)  # fmt: skip
    run_prepare(pcfg)
    ccfg = CacheConfig(data=tmp_path / "p", model="tiny-wan", models_dir=tmp_path / "models", device="cpu")
    first = run_cache(ccfg)
    assert (first.cached, first.reused) == (3, 0)
    samples = read_manifest(tmp_path / "p")
    (key,) = first.keys
    assert key.startswith(f"tiny-wan@{first.revision}:32x32x5")
    for s in samples:
        path = tmp_path / "p" / s.cache[key]
        t = load_file(path)
        assert tuple(t["latents"].shape) == (1, 16, 2, 4, 4)  # (5-1)/4+1 latent frames, 32/8
        assert t["prompt_embeds"].shape[:2] == (1, 512)
        with safe_open(str(path), framework="pt") as f:
            assert f.metadata() == {"key": key, "sample_id": s.sample_id}
    again = run_cache(ccfg)
    assert (again.cached, again.reused) == (0, 3)
    # a prepare rerun keeps the cache entries in the manifest
    run_prepare(pcfg)
    assert all(key in s.cache for s in read_manifest(tmp_path / "p"))
    # another bucket = another key: cached again, the old files stay valid for the old key
    pcfg.sample = SampleSettings(buckets=["32x48"], max_frames=5)
    run_prepare(pcfg)
    third = run_cache(ccfg)
    assert third.cached == 3 and third.keys[0].endswith(":32x48x5")
    summary = json.loads((tmp_path / "p/cache/cache.json").read_text())
    assert summary["cached"] == 3


def test_bucket_pixels_pick_the_frame_nearest_each_training_time(tmp_path):
    ann, videos = vip200k_dataset(tmp_path / "d")
    run_prepare(
        PrepareConfig(
            source="vip200k",
            annotations=ann,
            videos=videos,
            out=tmp_path / "p",
            workers=1,
            face_backend="none",
            sample=SampleSettings(buckets=["96x128"], max_frames=9),
        )
    )
    s = next(x for x in read_manifest(tmp_path / "p") if x.frame_start == 10)
    got = bucket_pixels(s)
    # 9 frames at 16 fps from frame 10 of a 30 fps file: file frames 10 + round(k * 30 / 16)
    want_idx = [10 + round(k * 30 / 16) for k in range(9)]
    want = fit_to_bucket(read_frames(s.video, want_idx), 96, 128)
    assert got.shape == (9, 96, 128, 3) and np.array_equal(got, want)
