"""Shared fixtures: real face images on disk and small real videos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ipvgkit.assets import sample_image


@pytest.fixture(scope="session")
def tom_hanks() -> Path:
    return sample_image("tom_hanks")


@pytest.fixture(scope="session")
def astronaut() -> Path:
    return sample_image("astronaut")


@pytest.fixture(scope="session")
def group_photo() -> Path:
    return sample_image("t1")


def moving_frames(t: int = 9, h: int = 32, w: int = 48, seed: int = 0) -> np.ndarray:
    """A deterministic clip with motion: a bright square sliding over a smooth gradient."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 120 // max(1, w - 1), yy * 120 // max(1, h - 1), np.full_like(xx, 40)], -1)
    base = (base + rng.integers(0, 4, size=(h, w, 3))).astype(np.uint8)
    frames = np.repeat(base[None], t, axis=0).copy()
    for i in range(t):
        x = (i * 3) % max(1, w - 8)
        frames[i, h // 4 : h // 4 + 8, x : x + 8] = 230
    return frames


@pytest.fixture
def small_video(tmp_path: Path) -> Path:
    from ipvgkit.media import encode_video

    return encode_video(moving_frames(), tmp_path / "small.mp4", fps=8)
