from __future__ import annotations

import numpy as np

from ipvgkit.media.synth import load_rgb, pan_frames


def test_pan_frames_shape_and_motion(astronaut):
    frames = pan_frames(astronaut, n_frames=9, height=48, width=64)
    assert frames.shape == (9, 48, 64, 3) and frames.dtype == np.uint8
    diffs = [np.abs(frames[i + 1].astype(int) - frames[i].astype(int)).mean() for i in range(8)]
    assert all(d > 0 for d in diffs)  # it moves every frame
    assert max(diffs) < 40  # ...slowly


def test_pan_keeps_the_image_content(astronaut):
    img = load_rgb(astronaut)
    frames = pan_frames(img, n_frames=3, height=64, width=64, zoom=1.0, travel=0.0)
    # no travel, full short side: every frame is the same centre crop
    np.testing.assert_array_equal(frames[0], frames[2])
    assert abs(frames[0].mean() - img.mean()) < 25
