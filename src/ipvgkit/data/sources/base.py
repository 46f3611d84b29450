"""The one protocol every dataset source implements: raw annotation items -> sample specs.

A source reads and validates its annotations once (:meth:`Source.load`, before any work: a malformed
file is one :class:`~ipvgkit.errors.InputError` naming the first bad entry and field), then yields
one :class:`SampleSpec` per training sample, or a :class:`Reject` for an item that cannot become one
(a missing video, an empty caption). The per-sample work (decode, crop, figures) is the same for
every source and lives in :mod:`ipvgkit.stages.prepare_work`. A third dataset is one new module here
plus one entry in :data:`ipvgkit.data.sources.SOURCES`.

Specs are plain data (JSON-able through :func:`spec_to_dict`) so they travel to worker processes
and to Ray workers unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm")

# Reject reasons (the keys of the summary by reason).
REASONS = (
    "missing-video",  # the video file is not on disk
    "corrupt-video",  # unreadable, or decoding fails inside the needed range
    "too-short",  # the file ends before the range, or the clip is under the minimum length
    "empty-range",  # the annotated frame range is empty after clamping to the clip
    "empty-caption",
    "no-face",  # no annotated face box to cut a reference crop from
    "box-outside-frame",
    "small-face",  # the face box is under the minimum size
    "bad-events",  # timeline events that fit neither seconds nor frames
    "filtered",  # an opt-in quality threshold of the config
)


@dataclass(frozen=True)
class RefFace:
    """An annotated face to cut a reference crop from: the frame at ``t`` seconds of ``video``,
    box ``xyxy_norm`` (0-1 of the frame size; pixels when ``pixels``). ``frame``, when set, is a frame
    index of the file (for annotations that give one instead of a time). ``same_segment``: the face
    lies inside the training clip itself (a fallback: the model could learn to copy it)."""

    video: str
    t: float
    xyxy_norm: tuple[float, float, float, float]
    same_segment: bool = False
    pixels: bool = False
    frame: int | None = None


@dataclass
class SampleSpec:
    """Everything the per-sample work needs to know about one sample, before any decoding.

    ``frame_start``/``frame_end`` (end exclusive) are frame numbers at the annotation's ``fps``;
    ``t_start``/``t_end`` the same range in seconds. ``video`` is the file path (absolute), ``video_id``
    its id in the annotations. ``events`` are ``(start, end, text)`` in seconds from the clip start, or
    None; ``events_units`` says how the annotation gave them ("seconds" or "frames"). ``face_box`` is a
    face box inside the clip (``xyxy_norm``) when the annotation has one; ``refs`` are candidates for
    the reference crop, best first. ``whole_clip``: the sample is the whole file, so ``frame_end`` and
    ``t_end`` are filled in from the decoded video.
    """

    sample_id: str
    source: str
    identity_id: str
    video_id: str
    video: str
    frame_start: int
    frame_end: int
    fps: float
    t_start: float
    t_end: float
    caption: str
    events: list[tuple[float, float, str]] | None = None
    events_units: str | None = None
    face_box: tuple[float, float, float, float] | None = None
    refs: list[RefFace] = field(default_factory=list)
    whole_clip: bool = False
    segment: str = ""  # the annotation's name for the item (e.g. "person 3 segment 1"), for rejects


@dataclass(frozen=True)
class Reject:
    """An item that did not become a sample: ``video_id``, ``sample`` (its stable id), ``segment`` (where
    it is in the annotations, e.g. ``person 3 segment 1``), ``reason`` (a short stable key to group by:
    see :data:`REASONS`) and ``detail`` (one human line)."""

    video_id: str
    sample: str
    reason: str
    detail: str = ""
    segment: str = ""

    def to_dict(self) -> dict[str, str]:
        return {
            "video_id": self.video_id, "sample": self.sample, "segment": self.segment,
            "reason": self.reason, "detail": self.detail,
        }  # fmt: skip


class Source(Protocol):
    """A dataset source (see the module docstring)."""

    name: str

    def load(self) -> None:
        """Read and validate the annotations; ``InputError`` (one line, first bad entry and field)."""

    def items(self) -> Iterator[SampleSpec | Reject]:
        """Every sample spec, or a reject for an item that cannot become one; stable order."""

    def missing_videos(self) -> list[str]:
        """Video ids the annotations reference that are not on disk (sorted, unique)."""

    def describe(self) -> dict[str, Any]:
        """What to record in the run record (paths, counts)."""


def find_video(folder: Path, stem: str) -> Path | None:
    """``folder/<stem>.mp4|.mkv|.webm`` (first that exists), or None."""
    for ext in VIDEO_EXTENSIONS:
        p = folder / f"{stem}{ext}"
        if p.is_file():
            return p
    return None


def spec_to_dict(spec: SampleSpec) -> dict[str, Any]:
    return asdict(spec)


def spec_from_dict(d: dict[str, Any]) -> SampleSpec:
    d = dict(d)
    d["refs"] = [RefFace(**{**r, "xyxy_norm": tuple(r["xyxy_norm"])}) for r in d.get("refs") or []]
    if d.get("face_box") is not None:
        d["face_box"] = tuple(d["face_box"])
    if d.get("events") is not None:
        d["events"] = [tuple(e) for e in d["events"]]
    return SampleSpec(**d)


__all__ = [
    "REASONS",
    "VIDEO_EXTENSIONS",
    "RefFace",
    "Reject",
    "SampleSpec",
    "Source",
    "find_video",
    "spec_from_dict",
    "spec_to_dict",
]
