"""The per-sample work of ``ipvg prepare``: one pure function that every engine runs.

:func:`process_spec` takes a :class:`~ipvgkit.data.sources.base.SampleSpec` (as a dict) and a
:class:`WorkConfig` and returns one result dict: ``{"kind": "sample", "record": {...}}`` or
``{"kind": "reject", ...}``. It decodes only the sample's time range (seeking by timestamp), cuts the
reference crop, computes the quality figures and the training bucket, and writes its files (the
crop, the face embedding) under the output folder atomically. Same inputs, same outputs: the local
process pool and Ray Data give identical manifests.
"""

from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ipvgkit.data.manifest import ManifestEvent, Sample
from ipvgkit.data.sources.base import RefFace, Reject, SampleSpec, spec_from_dict
from ipvgkit.data.sources.reactid import resolve_event_units
from ipvgkit.errors import MediaError
from ipvgkit.fsutil import atomic_write_bytes

EventUnits = Literal["auto", "seconds", "frames"]
EVENT_UNITS = ("auto", "seconds", "frames")


@dataclass
class SampleSettings:
    """Per-sample settings (the ``sample.*`` keys of the prepare config; docs/prepare.md).

    Defaults keep any clean clip of at least ``min_seconds`` and ``min_frames`` whose face box is at
    least ``min_face_px``; ``min_sharpness`` and ``min_face_score`` are opt-in filters. ``fps``,
    ``max_frames`` and ``buckets`` ("HxW") give the training bucket recorded for each sample."""

    fps: int = 16
    max_frames: int = 81
    buckets: list[str] = field(default_factory=lambda: ["480x832", "832x480", "624x624"])
    min_seconds: float = 1.0
    min_frames: int = 5
    min_face_px: int = 64
    min_sharpness: float | None = None
    min_face_score: float | None = None
    ref_margin: float = 0.25
    quality_frames: int = 8
    events_units: EventUnits = "auto"
    # VIP-200K: cut segments longer than this many seconds into consecutive windows of that length (the
    # last one keeps the remainder), each its own sample; None: one sample per segment
    window_seconds: float | None = None

    def __post_init__(self) -> None:
        for b in self.buckets:
            try:
                h, w = parse_bucket(b)
            except ValueError:
                raise ValueError(f"sample.buckets: {b!r} is not HxW (e.g. 480x832)") from None
            if h % 16 or w % 16 or h <= 0 or w <= 0:
                raise ValueError(f"sample.buckets: {b!r} is not a multiple of 16 in both sides")
        if self.fps <= 0 or self.max_frames < 1:
            raise ValueError("sample.fps and sample.max_frames must be > 0")
        if self.window_seconds is not None and self.window_seconds < self.min_seconds:
            raise ValueError(
                f"sample.window_seconds must be at least sample.min_seconds ({self.min_seconds}), "
                f"got {self.window_seconds}"
            )


@dataclass
class WorkConfig:
    """What the per-sample function needs: the settings, the output folder and the face backend."""

    out: str
    settings: SampleSettings = field(default_factory=SampleSettings)
    face_backend: str = "none"
    models_dir: str | None = None


class _Rejected(Exception):
    def __init__(self, reason: str, detail: str):
        self.reason, self.detail = reason, detail
        super().__init__(detail)


def parse_bucket(text: str) -> tuple[int, int]:
    """``"HxW"`` -> (height, width)."""
    h, w = text.lower().split("x")
    return int(h), int(w)


def choose_bucket(width: int, height: int, buckets: list[str]) -> tuple[int, int]:
    """The bucket (height, width) whose aspect ratio is closest to the video's (in log ratio)."""
    aspect = math.log(width / height)
    return min((parse_bucket(b) for b in buckets), key=lambda hw: abs(math.log(hw[1] / hw[0]) - aspect))


def bucket_frames(duration: float, fps: int, max_frames: int) -> int:
    """The largest 4k+1 frame count at ``fps`` that fits ``duration`` seconds and ``max_frames``."""
    n = min(max_frames, int(math.floor(duration * fps + 1e-6)))
    return 0 if n < 1 else (n - 1) // 4 * 4 + 1


def sharpness(frame: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of the gray frame (higher = sharper)."""
    g = frame.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    lap = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4 * g[1:-1, 1:-1]
    return float(lap.var())


def fit_to_bucket(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize ``(T, H, W, 3)`` frames to cover ``height x width`` and centre-crop (aspect kept)."""
    import cv2

    t, h, w = frames.shape[:3]
    scale = max(height / h, width / w)
    rh, rw = max(height, round(h * scale)), max(width, round(w * scale))
    y0, x0 = (rh - height) // 2, (rw - width) // 2
    out = np.empty((t, height, width, 3), np.uint8)
    for i in range(t):
        big = cv2.resize(frames[i], (rw, rh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        out[i] = big[y0 : y0 + height, x0 : x0 + width]
    return out


def _decode(spec: SampleSpec, cfg: WorkConfig):
    from ipvgkit.media import probe_video, sample_indices
    from ipvgkit.media.decode_range import decode_range

    info = probe_video(Path(spec.video))
    t_end = info.duration + 1.0 if spec.whole_clip else spec.t_end
    expected = max(1, round((t_end - spec.t_start) * (info.fps or spec.fps or 1)))
    keep = set(sample_indices(expected, max(1, cfg.settings.quality_frames)))
    rng = decode_range(Path(spec.video), spec.t_start, t_end, keep=lambda i: i in keep)
    if rng.n_in_range == 0:
        raise _Rejected(
            "too-short", f"no frame at {spec.t_start:.3f}s (the video lasts {info.duration:.3f}s)"
        )
    if not spec.whole_clip:
        step = 1.0 / rng.fps if rng.fps > 0 else 0.0
        if rng.last_time is not None and rng.last_time < spec.t_end - 2.5 * step:
            reason = "too-short" if info.duration and info.duration < spec.t_end - step else "corrupt-video"
            raise _Rejected(
                reason,
                f"decoding stops at {rng.last_time:.3f}s, the segment ends at {spec.t_end:.3f}s "
                f"(the file says it lasts {info.duration:.3f}s)",
            )
    return rng


def _box_pixels(ref: RefFace, w: int, h: int) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = ref.xyxy_norm
    return (x1, y1, x2, y2) if ref.pixels else (x1 * w, y1 * h, x2 * w, y2 * h)


def _check_box(box, w: int, h: int, min_px: int) -> None:
    x1, y1, x2, y2 = box
    ix = max(0.0, min(x2, w) - max(x1, 0.0))
    iy = max(0.0, min(y2, h) - max(y1, 0.0))
    area = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    if area <= 0 or ix * iy < 0.5 * area:
        raise _Rejected(
            "box-outside-frame", f"face box {[round(v, 1) for v in box]} is outside the {w}x{h} frame"
        )
    if min(x2 - x1, y2 - y1) < min_px:
        raise _Rejected("small-face", f"face box {x2 - x1:.0f}x{y2 - y1:.0f} px is under {min_px} px")


def _crop(frame: np.ndarray, box, margin: float) -> np.ndarray:
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = box
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    xa, ya = int(max(0, math.floor(x1 - mx))), int(max(0, math.floor(y1 - my)))
    xb, yb = int(min(w, math.ceil(x2 + mx))), int(min(h, math.ceil(y2 + my)))
    return frame[ya:yb, xa:xb]


def _ref_frame(ref: RefFace, rng) -> np.ndarray:
    from ipvgkit.media.decode_range import decode_at

    if ref.frame is not None:
        from ipvgkit.media import read_frames

        return read_frames(Path(ref.video), [ref.frame])[0]
    return decode_at(Path(ref.video), [ref.t])[0]


def _reference(
    spec: SampleSpec, cfg: WorkConfig, rng, backend
) -> tuple[np.ndarray, np.ndarray, RefFace, tuple]:
    """The first usable reference candidate: (crop, its frame, candidate, box in pixels)."""
    refs = list(spec.refs)
    if not refs and backend is not None and rng.frames:
        refs = _detected_ref(spec, rng, backend)
    if not refs:
        raise _Rejected(
            "no-face", "no annotated face box for this sample (and no face backend to detect one)"
        )
    first: _Rejected | None = None
    for ref in refs:
        try:
            frame = _ref_frame(ref, rng)
            box = _box_pixels(ref, frame.shape[1], frame.shape[0])
            _check_box(box, frame.shape[1], frame.shape[0], cfg.settings.min_face_px)
            return _crop(frame, box, cfg.settings.ref_margin), frame, ref, box
        except MediaError as e:
            first = first or _Rejected("corrupt-video", f"reference frame: {e}")
        except _Rejected as e:
            first = first or e
    raise first  # type: ignore[misc]


def _detected_ref(spec: SampleSpec, rng, backend) -> list[RefFace]:
    from ipvgkit.faces import detect_largest

    mid = len(rng.frames) // 2
    face = detect_largest(backend, rng.frames[mid])
    if face is None:
        return []
    return [RefFace(spec.video, rng.times[mid], tuple(float(v) for v in face.bbox), True, pixels=True)]


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _embed(frame: np.ndarray, box, backend) -> tuple[np.ndarray | None, float]:
    """Embedding and detection score of the detected face that best overlaps the annotated box
    (IoU >= 0.3; detections on the whole reference frame, so the detector sees context)."""
    faces = [(f, _iou([float(v) for v in f.bbox], box)) for f in backend.detect(frame)]
    faces = [(f, iou) for f, iou in faces if iou >= 0.3]
    if not faces:
        return None, 0.0
    face = max(faces, key=lambda fi: fi[1])[0]
    return backend.embed(frame, [face])[0].astype(np.float32), float(face.score)


def _events(spec: SampleSpec, cfg: WorkConfig, duration: float, n: int, fps: float):
    if not spec.events:
        return None, None
    if cfg.settings.events_units == "auto":
        got = resolve_event_units(spec.events, duration, n, fps)
        if got is None:
            last = max(e[1] for e in spec.events)
            raise _Rejected(
                "bad-events", f"event end {last} fits neither the {duration:.2f}s duration nor the {n} frames"
            )
        units, events = got
    else:
        units = cfg.settings.events_units
        events = spec.events if units == "seconds" else [(s / fps, e / fps, t) for s, e, t in spec.events]
    return [ManifestEvent(round(s, 6), round(e, 6), t) for s, e, t in events], units


def _backend(cfg: WorkConfig):
    if cfg.face_backend == "none":
        return None
    from ipvgkit.faces import get_backend

    return get_backend(cfg.face_backend, cfg.models_dir)


def _jpeg(img: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _sample(spec: SampleSpec, cfg: WorkConfig) -> Sample:
    rng = _decode(spec, cfg)
    if spec.whole_clip:
        fps = rng.fps
        spec.frame_end, spec.fps, spec.t_end = rng.n_in_range, fps, rng.n_in_range / fps
    duration, n_range = spec.t_end - spec.t_start, rng.n_in_range
    if duration < cfg.settings.min_seconds or n_range < cfg.settings.min_frames:
        raise _Rejected(
            "too-short",
            f"{duration:.2f}s / {n_range} frames (minimum {cfg.settings.min_seconds}s, {cfg.settings.min_frames})",
        )
    n_bucket = bucket_frames(duration, cfg.settings.fps, cfg.settings.max_frames)
    if n_bucket < cfg.settings.min_frames:
        raise _Rejected("too-short", f"only {n_bucket} frames at {cfg.settings.fps} fps")
    events, units = _events(spec, cfg, duration, n_range, rng.fps)
    backend = _backend(cfg)
    crop, ref_frame, ref, box = _reference(spec, cfg, rng, backend)
    out = Path(cfg.out)
    ref_rel = f"refs/{spec.sample_id}.jpg"
    atomic_write_bytes(out / ref_rel, _jpeg(crop))
    sharp = float(np.mean([sharpness(f) for f in rng.frames]))
    quality = {
        "sharpness": round(sharp, 3),
        "ref_sharpness": round(sharpness(crop), 3),
        "face_px": round(min(box[2] - box[0], box[3] - box[1]), 1),
        "decoded_frames": float(n_range),
    }
    emb_rel = None
    if backend is not None:
        emb, score = _embed(ref_frame, box, backend)
        quality["face_score"] = round(score, 4)
        if emb is not None:
            emb_rel = f"faces/{spec.sample_id}.npy"
            atomic_write_bytes(out / emb_rel, _npy(emb))
    _filters(cfg, quality)
    bh, bw = choose_bucket(rng.width, rng.height, cfg.settings.buckets)
    fh, fw = ref_frame.shape[:2]
    in_clip = [round(box[0] / fw, 4), round(box[1] / fh, 4), round(box[2] / fw, 4), round(box[3] / fh, 4)]
    face_box = spec.face_box or (in_clip if ref.same_segment else None)
    return Sample(
        sample_id=spec.sample_id, source=spec.source, identity_id=spec.identity_id, video=spec.video,
        frame_start=spec.frame_start, frame_end=spec.frame_end, fps=spec.fps, t_start=spec.t_start,
        t_end=spec.t_end, caption=spec.caption, events=events, ref_images=[ref_rel],
        ref_same_segment=ref.same_segment, face_box=list(face_box) if face_box else None, width=rng.width,
        height=rng.height, bucket={"height": bh, "width": bw, "frames": n_bucket, "fps": cfg.settings.fps},
        quality=quality, face_embedding=emb_rel, video_id=spec.video_id, video_fps=round(rng.fps, 6),
        events_units=units,
    )  # fmt: skip


def _filters(cfg: WorkConfig, quality: dict[str, float]) -> None:
    if cfg.settings.min_sharpness is not None and quality["sharpness"] < cfg.settings.min_sharpness:
        raise _Rejected(
            "filtered", f"sharpness {quality['sharpness']} < min_sharpness {cfg.settings.min_sharpness}"
        )
    score = quality.get("face_score")
    if cfg.settings.min_face_score is not None and (score is None or score < cfg.settings.min_face_score):
        raise _Rejected("filtered", f"face score {score} < min_face_score {cfg.settings.min_face_score}")


def process_spec(spec: dict[str, Any] | SampleSpec, cfg: WorkConfig) -> dict[str, Any]:
    """The one per-sample function (see the module docstring). Never raises for bad data."""
    spec = spec_from_dict(spec) if isinstance(spec, dict) else spec
    try:
        return {"kind": "sample", "record": asdict(_sample(spec, cfg))}
    except _Rejected as e:
        rej = Reject(spec.video_id, spec.sample_id, e.reason, e.detail, spec.segment)
    except MediaError as e:
        rej = Reject(spec.video_id, spec.sample_id, "corrupt-video", str(e), spec.segment)
    return {"kind": "reject", **rej.to_dict()}


def process_batch(batch: dict[str, Any], cfg: WorkConfig) -> dict[str, Any]:
    """Ray Data ``map_batches`` adapter: a column ``spec`` of JSON specs -> a column ``result``."""
    import json

    return {"result": [json.dumps(process_spec(json.loads(s), cfg), sort_keys=True) for s in batch["spec"]]}
