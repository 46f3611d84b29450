"""Finetune data: clips read by time at the training frame rate, and the rank split of the sample stream."""

from __future__ import annotations

import numpy as np

from ipvgkit.data.manifest import Sample
from ipvgkit.media import encode_video, read_frames
from ipvgkit.stages.finetune_data import clip_pixels, positions, sample_index


def _numbered(n: int) -> np.ndarray:
    """Frames whose brightness encodes their number (survives H.264)."""
    return np.stack([np.full((32, 32, 3), 8 * i, np.uint8) for i in range(n)])


def test_clip_at_training_fps_from_a_faster_file(tmp_path):
    path = encode_video(_numbered(30), tmp_path / "v.mp4", fps=32.0, crf=0)
    s = Sample("s", "test", "i", str(path), 0, 30, 32.0, 0.25, 30 / 32, "c", video_fps=32.0)
    clip = clip_pixels(s, path, 5, 16.0, 16, 16)
    # independent: all frames decoded, file frame t_start * 32 + 2 i (32 fps file, 16 fps training)
    every = read_frames(path)
    expect = [8 + 2 * i for i in range(5)]
    got = [int(np.argmin([abs(float(f.mean()) - float(e.mean())) for e in every])) for f in clip]
    assert got == expect
    assert clip.shape == (5, 16, 16, 3)


def test_ranks_split_each_step_without_overlap():
    n, world, batch = 7, 2, 2
    for k in range(6):
        p0, p1 = positions(k, 0, world, batch), positions(k, 1, world, batch)
        assert not set(p0) & set(p1)
        assert sorted(p0 + p1) == list(range(k * 4, k * 4 + 4))
    epoch0 = [sample_index(p, n, seed=3) for p in range(n)]
    assert sorted(epoch0) == list(range(n))  # each epoch visits every sample once
    assert [sample_index(p, n, seed=3) for p in range(n, 2 * n)] != epoch0  # a fresh order per epoch
