"""Real small datasets on disk for the prepare tests: VIP-200K JSON + videos, a ReactID-Data tree.

Videos are real H.264 files whose frame k shows the gray level ``(3 * k) % 256`` in its top-left
block (so a decoded frame tells which source frame it is) with a bright square where the annotated
face box is (so reference crops can be checked).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ipvgkit.media import encode_video

SIZE = (96, 128)  # h, w
BOX = [0.25, 0.2, 0.85, 0.95]  # 0-1: 72 x 68 px at 128 x 96


def level(k: int) -> int:
    return (3 * k) % 256


def frames(n: int, h: int = SIZE[0], w: int = SIZE[1], box=BOX) -> np.ndarray:
    out = np.full((n, h, w, 3), 60, np.uint8)
    x1, y1, x2, y2 = int(box[0] * w), int(box[1] * h), int(box[2] * w), int(box[3] * h)
    out[:, y1:y2, x1:x2] = (200, 180, 160)
    for k in range(n):
        out[k, :16, :16] = level(k)
    return out


def write_video(path: Path, n: int, fps: float, **kw) -> Path:
    return encode_video(frames(n, **kw), path, fps=fps, preset="ultrafast")


def clip(beg: int, end: int, rate: float) -> dict:
    return {"beg": {"frame_num": beg, "framerate": rate}, "end": {"frame_num": end, "framerate": rate}}


def person(
    vid: str,
    beg: int,
    end: int,
    rate: float,
    segs: list[tuple[int, int]],
    faces: list[int],
    caption="a person",
):
    """One VIP-200K entry: segments (fidx_beg, fidx_end) and faces at fidx, all in clip ``beg->end``."""
    return {
        "faces": [{"id": vid, "clip": clip(beg, end, rate), "fidx": f, "xyxy_norm": BOX} for f in faces],
        "segments": [
            {"id": vid, "clip": clip(beg, end, rate), "fidx_beg": a, "fidx_end": b, "caption": caption}
            for a, b in segs
        ],
    }


def vip200k_dataset(root: Path) -> tuple[Path, Path]:
    """good1 (2 segments, faces in both), good2 (faces only in its single segment: same-segment
    fallback), cut (truncated bytes), gone (no file), short (0.5 s segment). Returns (ann, videos)."""
    videos = root / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    write_video(videos / "good1.mp4", 90, 30.0)  # 3 s
    write_video(videos / "good2.mp4", 60, 30.0)
    write_video(videos / "cut.mp4", 90, 30.0)
    data = (videos / "cut.mp4").read_bytes()
    (videos / "cut.mp4").write_bytes(data[: len(data) // 3])
    write_video(videos / "short.mp4", 60, 30.0)
    entries = [
        person("good1", 10, 90, 30.0, [(0, 39), (40, 79)], [20, 60], "a man talks"),
        person("good2", 0, 60, 30.0, [(0, 59)], [30], "a woman smiles"),
        person("cut", 0, 90, 30.0, [(0, 89)], [10], "a cut video"),
        person("gone", 0, 90, 30.0, [(0, 89)], [10], "a missing video"),
        person("short", 0, 60, 30.0, [(0, 14)], [5], "too short"),
    ]
    ann = root / "vip200k.json"
    ann.write_text(json.dumps(entries))
    return ann, videos


def reactid_tree(root: Path) -> Path:
    """Three clips: events in seconds (a00), in frames (b00), and one without a video (c00)."""
    v = root / "Videos"
    write_video(v / "a00" / "a00_clip.mp4", 48, 16.0)  # 3 s, 48 frames
    write_video(v / "b00" / "b00_clip.mp4", 48, 16.0)
    j = root / "Jsons"
    for part in ("metadata", "annotations", "timeline_annotations"):
        (j / part).mkdir(parents=True, exist_ok=True)
    (j / "metadata" / "part000.json").write_text(json.dumps({
        "a00_clip.mp4": {"caption": "meta caption a", "entity_labels": ["person"], "aesthetic": 5.1},
        "b00_clip.mp4": {"caption": "meta caption b"},
        "c00_clip.mp4": {"caption": "meta caption c"},
    }))  # fmt: skip
    (j / "annotations" / "part000.json").write_text(json.dumps({
        "a00_clip.mp4": {"face_bbox": [{"bbox": BOX, "frame": 3}], "mask_annotation": {"counts": "xyz"}},
        "b00_clip.mp4": {"face_bbox": [32.0, 19.2, 108.8, 91.2]},
    }))  # fmt: skip
    (j / "timeline_annotations" / "part_000.json").write_text(json.dumps({
        "a00_clip.mp4": {"meta": {"fps": 16}, "global_caption": "a person waves then sits", "event_count": 2,
                         "events": [{"start": 0, "end": 1.5, "description": "waves"},
                                    {"start": 1.5, "end": 3.0, "description": "sits"}]},
        "b00_clip.mp4": {"meta": {}, "global_caption": "a person turns", "event_count": 2,
                         "events": [{"start": 0, "end": 24, "text": "turns left"},
                                    {"start": 24, "end": 48, "text": "turns right"}]},
    }))  # fmt: skip
    return root
