"""Synthetic but real-looking clips: a slow pan-and-zoom over a still image.

Used by ``ipvg demo`` (a submission that keeps the reference identity perfectly) and by tests and
benchmarks that need videos of real faces without a video model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def load_rgb(path: Path) -> np.ndarray:
    """An image file as RGB uint8 ``(H, W, 3)``."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def pan_frames(
    image: np.ndarray | Path,
    n_frames: int = 33,
    height: int = 256,
    width: int = 256,
    zoom: float = 0.85,
    travel: float = 0.12,
) -> np.ndarray:
    """``n_frames`` RGB frames ``(T, height, width, 3)``: a window of ``zoom`` x the image's short side
    that drifts by ``travel`` x that side from left-up to right-down, resized to ``height x width``.
    """
    from PIL import Image

    img = load_rgb(image) if isinstance(image, (str, Path)) else np.asarray(image)
    h, w = img.shape[:2]
    aspect = width / height
    win_h = min(h, int(min(h, w / aspect) * zoom))
    win_w = min(w, int(win_h * aspect))
    cx0, cy0 = w / 2 - travel * win_w / 2, h / 2 - travel * win_h / 2
    cx1, cy1 = w / 2 + travel * win_w / 2, h / 2 + travel * win_h / 2
    pil = Image.fromarray(img)
    frames = np.empty((n_frames, height, width, 3), np.uint8)
    for i in range(n_frames):
        a = i / max(1, n_frames - 1)
        cx, cy = cx0 + a * (cx1 - cx0), cy0 + a * (cy1 - cy0)
        x0 = int(np.clip(cx - win_w / 2, 0, w - win_w))
        y0 = int(np.clip(cy - win_h / 2, 0, h - win_h))
        crop = pil.crop((x0, y0, x0 + win_w, y0 + win_h)).resize((width, height), Image.BILINEAR)
        frames[i] = np.asarray(crop)
    return frames
