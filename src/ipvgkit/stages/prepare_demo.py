"""The demo's tiny VIP-200K-format dataset, written from the real face photos that ship in packages.

One person per photo; each has one video (a slow pan over the photo, see :mod:`ipvgkit.media.synth`)
split into two segments, with one annotated face per segment. Face boxes come from the dlib detector
run on the written frames when dlib is installed; otherwise a fixed central box is written and the
returned note says so. The annotation follows SPEC §3 exactly (absolute frame numbers at
``framerate``, clip end exclusive, ``fidx_end`` inclusive), so :func:`prepare_demo` exercises the real
``ipvg prepare vip200k`` path, including the reference crop taken from the *other* segment.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ipvgkit.fsutil import atomic_write_text

PEOPLE = {
    "tom_hanks": "A man in a dark suit smiles and nods while talking to someone off camera.",
    "astronaut": "A smiling astronaut in an orange flight suit poses in front of a flag.",
}
FRAMERATE = 24.0
SEG_FRAMES = 30  # 1.25 s per segment at 24 fps
SIZE = 384  # the astronaut's face is ~76 px here: above the 64 px default minimum
FALLBACK_BOX = [0.2, 0.1, 0.8, 0.7]


def _box(frame: np.ndarray, backend) -> list[float] | None:
    from ipvgkit.faces import detect_largest

    face = detect_largest(backend, frame) if backend is not None else None
    if face is None:
        return None
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in face.bbox)
    return [round(min(max(v, 0.0), 1.0), 4) for v in (x1 / w, y1 / h, x2 / w, y2 / h)]


def _detector():
    try:
        from ipvgkit.faces import get_backend

        return get_backend("dlib")
    except Exception:  # noqa: BLE001 - dlib missing or its model files absent: use the fallback box
        return None


def _clip(beg: int, end: int) -> dict:
    return {
        "beg": {"frame_num": beg, "framerate": FRAMERATE},
        "end": {"frame_num": end, "framerate": FRAMERATE},
    }


def write_vip200k_demo(folder: Path) -> tuple[Path, Path, str]:
    """``folder/annotations.json`` and ``folder/videos/<id>.mp4``; returns (annotations, videos, note)."""
    from ipvgkit.media import encode_video
    from ipvgkit.media.synth import pan_frames
    from ipvgkit.stages.demo_data import _images

    images = _images()
    videos = Path(folder) / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    backend = _detector()
    note = "face boxes from the dlib detector" if backend else "dlib not installed: a fixed central face box"
    entries, n = [], 2 * SEG_FRAMES
    offset = 120  # the clip starts 5 s into the "original" video, as in real annotations
    for name, caption in PEOPLE.items():
        if name not in images:
            continue
        vid = f"demo_{name}"
        frames = pan_frames(images[name], offset + n, SIZE, SIZE, travel=0.06)
        dest = videos / f"{vid}.mp4"
        if not dest.exists():
            encode_video(frames, dest, fps=FRAMERATE)
        faces, segments = [], []
        for k in range(2):
            fidx = k * SEG_FRAMES + SEG_FRAMES // 2
            box = _box(frames[offset + fidx], backend)
            if box is None:
                box = FALLBACK_BOX
                if backend is not None:
                    note += f"; no face detected in {vid} frame {offset + fidx}: central box written"
            faces.append({"id": vid, "clip": _clip(offset, offset + n), "fidx": fidx, "xyxy_norm": box})
            segments.append({
                "id": vid, "clip": _clip(offset, offset + n), "fidx_beg": k * SEG_FRAMES,
                "fidx_end": (k + 1) * SEG_FRAMES - 1, "caption": caption,
            })  # fmt: skip
        entries.append({"faces": faces, "segments": segments})
    ann = atomic_write_text(Path(folder) / "annotations.json", json.dumps(entries, indent=2) + "\n")
    return ann, videos, note


def prepare_demo(folder: Path, workers: int = 1, models_dir: Path | None = None):
    """Write the demo dataset under ``folder/vip200k`` and prepare it into ``folder/prepared``."""
    from ipvgkit.stages.prepare import PrepareConfig, run_prepare
    from ipvgkit.stages.prepare_work import SampleSettings

    ann, videos, note = write_vip200k_demo(Path(folder) / "vip200k")
    cfg = PrepareConfig(
        source="vip200k", annotations=ann, videos=videos, out=Path(folder) / "prepared", workers=workers,
        models_dir=models_dir, sample=SampleSettings(buckets=["384x384"], max_frames=17),
    )  # fmt: skip
    return run_prepare(cfg), note
