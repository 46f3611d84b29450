"""The one ``Case`` type that every test-set format is loaded into (SPEC §1)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

TimelineUnits = Literal["seconds", "fraction"]


@dataclass(frozen=True)
class Event:
    """One timeline event: ``text`` happens from ``start`` to ``end`` (seconds or fractions of the video)."""

    start: float
    end: float
    text: str

    def to_dict(self) -> dict:
        return {"start": self.start, "end": self.end, "text": self.text}


@dataclass
class Case:
    """One video to generate / score.

    ``case_id`` is a stable string key (``id001/prompt1`` for format A, the 1-based position or JSON key
    for B and C). ``output_name`` is the video's path relative to the submission folder.
    ``timeline`` is None for cases without one; ``timeline_units`` says how its times were read.
    """

    case_id: str
    track: int
    ref_images: list[Path]
    prompt: str
    output_name: str
    timeline: list[Event] | None = None
    timeline_units: TimelineUnits | None = None
    class_labels: list[str] | None = None
    source: str = ""  # where the case came from (file and key), for messages
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The JSON form printed by ``ipvg cases --json``: exactly the keys ``case_id``, ``track``,
        ``prompt``, ``ref_images``, ``output_name``, ``timeline`` and ``timeline_units``
        (``class_labels``, ``source`` and ``extra`` are in :meth:`to_full_dict`)."""
        return {
            "case_id": self.case_id,
            "track": self.track,
            "prompt": self.prompt,
            "ref_images": [str(p) for p in self.ref_images],
            "output_name": self.output_name,
            "timeline": [e.to_dict() for e in self.timeline] if self.timeline is not None else None,
            "timeline_units": self.timeline_units,
        }

    def to_full_dict(self) -> dict:
        """:meth:`to_dict` plus ``class_labels``, ``source`` and ``extra`` (JSON-compatible)."""
        return {
            **self.to_dict(),
            "class_labels": self.class_labels,
            "source": self.source,
            "extra": self.extra,
        }
