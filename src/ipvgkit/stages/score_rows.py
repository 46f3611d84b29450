"""Result rows of ``ipvg score`` and resuming: :class:`ScoreRow` (one ``scores.jsonl`` line), the stored
frame thumbnails of each video (``thumbs/``) and the rules for reusing an earlier run's rows.

``scores.jsonl`` keeps its documented layout (docs/score.md); :meth:`ScoreRow.to_json` writes exactly
those keys and :meth:`ScoreRow.from_json` reads them back. A missing video is a row whose
``missing`` flag is set; on disk it is the row without a video stamp (``video_size`` null), with the
error ``missing video`` for every metric.

Thumbnails: while a video is scored, the engine keeps a few of the frames it decoded anyway (small
JPEGs, see :func:`make_thumbs`) and writes them to ``OUT/thumbs/<output_name>.json`` together with the
video's frame count and fps, so the report and ``ipvg score compare`` never decode a video again and a
resumed run keeps the thumbnails of the rows it reuses.
"""

from __future__ import annotations

import base64
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ipvgkit.data.cases import Case
from ipvgkit.fsutil import atomic_write_text
from ipvgkit.metrics.base import MetricResult

SCORES_NAME = "scores.jsonl"
PARTIAL_NAME = ".scores.partial.jsonl"
THUMBS_DIR = "thumbs"
MISSING_VIDEO = "missing video"
THUMB_H = 96  # thumbnail height in pixels
STRIP_FRAMES = 8  # thumbnails over the whole video
EVENT_FRAMES = 3  # extra thumbnails inside each timeline event window


@dataclass
class ScoreRow:
    """One case's scores (one line of ``scores.jsonl``)."""

    case_id: str
    output_name: str
    metrics: dict[str, float | None]
    extra: dict[str, dict] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    not_applicable: dict[str, bool] = field(default_factory=dict)
    total: float | None = None
    video: str = ""
    video_size: int | None = None
    video_mtime_ns: int | None = None
    signature: str = ""
    seconds: float = 0.0
    missing: bool = False  # the video file does not exist (not written: a row without video_size)
    no_face: bool = False  # a face metric found no face in any sampled frame (consisid's 0.0 quirk)

    def failures(self) -> dict[str, str]:
        """The metrics that failed on this video (errors of metrics that do not apply left out)."""
        return {k: v for k, v in self.errors.items() if not self.not_applicable.get(k)}

    @property
    def scored(self) -> bool:
        """At least one metric produced a value."""
        return any(v is not None for v in self.metrics.values())

    def result(self, name: str) -> MetricResult:
        """This row's result of metric ``name`` (as :meth:`Metric.finalize` gets it)."""
        return MetricResult(self.metrics.get(name), self.extra.get(name, {}), self.errors.get(name))

    def to_json(self) -> dict:
        """The ``scores.jsonl`` object (docs/score.md)."""
        return {
            "case_id": self.case_id,
            "output_name": self.output_name,
            "metrics": self.metrics,
            "extra": self.extra,
            "errors": self.errors,
            "not_applicable": self.not_applicable,
            "no_face": self.no_face,
            "total": self.total,
            "video": self.video,
            "video_size": self.video_size,
            "video_mtime_ns": self.video_mtime_ns,
            "signature": self.signature,
            "seconds": self.seconds,
        }

    @classmethod
    def from_json(cls, d: dict) -> ScoreRow:
        """A row from a ``scores.jsonl`` object (KeyError/TypeError on a malformed one)."""
        return cls(
            case_id=str(d["case_id"]),
            output_name=str(d["output_name"]),
            metrics=dict(d["metrics"]),
            extra=dict(d.get("extra") or {}),
            errors=dict(d.get("errors") or {}),
            not_applicable=dict(d.get("not_applicable") or {}),
            total=d.get("total"),
            video=str(d.get("video") or ""),
            video_size=d.get("video_size"),
            video_mtime_ns=d.get("video_mtime_ns"),
            signature=str(d.get("signature") or ""),
            seconds=float(d.get("seconds") or 0.0),
            missing=d.get("video_size") is None,
            no_face=bool(d.get("no_face")),
        )


def video_stamp(path: Path) -> tuple[int, int] | None:
    """(size, mtime in ns) of a file, None when it cannot be stat'ed."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _finite(v: Any) -> float | None:
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def make_row(case: Case, path: Path, sig: str, results: dict[str, MetricResult], seconds: float) -> ScoreRow:
    """The row of one scored (or unreadable) video."""
    stamp = video_stamp(path)
    row = ScoreRow(case.case_id, case.output_name, {}, video=str(Path(path).resolve()), signature=sig)
    for name, r in results.items():
        value = _finite(r.value)
        row.metrics[name] = value
        if r.extra:
            row.extra[name] = r.extra
        if r.error or (r.value is not None and value is None):
            row.errors[name] = r.error or f"non-finite value {r.value!r}"
        if r.extra.get("not_applicable"):
            row.not_applicable[name] = True
    row.no_face = any(r.extra.get("no_face") for r in results.values())
    row.video_size, row.video_mtime_ns = stamp if stamp else (None, None)
    row.seconds = round(seconds, 4)
    return row


def missing_row(case: Case, path: Path, sig: str, names: list[str]) -> ScoreRow:
    """The row of a video that is not in the submission: no value, ``missing video`` for every metric."""
    return ScoreRow(
        case.case_id,
        case.output_name,
        {n: None for n in names},
        errors={n: MISSING_VIDEO for n in names},
        video=str(Path(path).resolve()),
        signature=sig,
        missing=True,
    )


# ------------------------------------------------------------------------------------------ files


def _json_default(obj: Any) -> Any:
    """JSON for what metrics may leave in ``extra``: numpy scalars and arrays, paths."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def dumps(obj: Any, **kw: Any) -> str:
    """``json.dumps`` that accepts numpy values (as metrics' ``extra`` may hold them)."""
    return json.dumps(obj, ensure_ascii=False, default=_json_default, **kw)


def read_rows(path: Path) -> list[ScoreRow]:
    """The rows of a ``scores.jsonl`` (lines cut by an interruption or not a row are skipped)."""
    rows: list[ScoreRow] = []
    if not path.is_file():
        return rows
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            obj = json.loads(line)
            rows.append(ScoreRow.from_json(obj))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            continue
    return rows


def write_rows(path: Path, rows: list[ScoreRow]) -> None:
    atomic_write_text(path, "".join(dumps(r.to_json()) + "\n" for r in rows))


def previous_rows(out: Path) -> dict[str, ScoreRow]:
    """Rows of an earlier run (``scores.jsonl``, then the newer partial log of an interrupted run)."""
    prev: dict[str, ScoreRow] = {}
    for name in (SCORES_NAME, PARTIAL_NAME):
        for r in read_rows(out / name):
            prev[r.output_name] = r
    return prev


def reusable(row: ScoreRow | None, path: Path, sig: str) -> bool:
    """True when ``row`` scored this very file (size + mtime) with the same metrics and nothing failed."""
    if row is None or row.signature != sig or row.missing:
        return False
    stamp = video_stamp(path)
    if stamp is None or (row.video_size, row.video_mtime_ns) != stamp:
        return False
    return not row.failures()


# ------------------------------------------------------------------------------------------ thumbnails


def jpeg_bytes(img: np.ndarray, height: int = THUMB_H, quality: int = 72) -> bytes:
    """``img`` (RGB uint8) resized to ``height`` pixels high, as JPEG bytes."""
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(img))
    w = max(1, round(im.width * height / max(1, im.height)))
    im = im.resize((w, height), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def pick_thumb_frames(decoded: list[int], windows: list[tuple[int, int]]) -> list[int]:
    """Which of the ``decoded`` frame indices to keep: ``STRIP_FRAMES`` spread over the video, plus up
    to ``EVENT_FRAMES`` inside each ``[lo, hi)`` event window."""
    order = sorted(set(decoded))
    if not order:
        return []
    keep = {order[int(p)] for p in np.linspace(0, len(order) - 1, min(STRIP_FRAMES, len(order)))}
    for lo, hi in windows:
        inside = [i for i in order if lo <= i < hi]
        if inside:
            k = min(EVENT_FRAMES, len(inside))
            keep.update(inside[int(p)] for p in np.linspace(0, len(inside) - 1, k))
    return sorted(keep)


@dataclass
class Thumbs:
    """A video's stored thumbnails: frame index -> JPEG bytes, with the video's frame count and fps."""

    n_frames: int
    fps: float
    frames: dict[int, bytes]

    def to_json(self) -> dict:
        return {
            "n_frames": self.n_frames,
            "fps": self.fps,
            "frames": {str(i): base64.b64encode(b).decode("ascii") for i, b in sorted(self.frames.items())},
        }

    @classmethod
    def from_json(cls, d: dict) -> Thumbs:
        frames = {int(k): base64.b64decode(v) for k, v in d["frames"].items()}
        return cls(int(d["n_frames"]), float(d["fps"]), frames)


def thumbs_path(out: Path, output_name: str) -> Path:
    return Path(out) / THUMBS_DIR / (output_name + ".json")


def write_thumbs(out: Path, output_name: str, thumbs: Thumbs) -> None:
    path = thumbs_path(out, output_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(thumbs.to_json()))


def drop_thumbs(out: Path, output_name: str) -> None:
    """Forget a video's stored thumbnails (its video is gone or could not be read this time)."""
    thumbs_path(out, output_name).unlink(missing_ok=True)


def read_thumbs(out: Path, output_name: str) -> Thumbs | None:
    """The stored thumbnails of a video, None when there are none (or the file is unreadable)."""
    try:
        return Thumbs.from_json(json.loads(thumbs_path(out, output_name).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None
