"""ReactID-Data (Track 2): JSON parts keyed by video file name, videos under ``Videos/<prefix>/`` (SPEC §3).

Layout under ``--root``::

    Jsons/metadata/part*.json               {"<name>.mp4": {"caption", "entity_labels", scores...}}
    Jsons/annotations/part*.json            {"<name>.mp4": {"face_bbox", "mask_annotation", ...}}
    Jsons/timeline_annotations/part*.json   {"<name>.mp4": {"meta", "global_caption", "event_count", "events"}}
    Videos/<first 3 chars of name>/<name>.mp4

Each video is one sample (the whole windowed clip; its sample id uses the range 0-0 because the frame
count is only known once the file is decoded). The caption is the timeline's ``global_caption``, else
the metadata ``caption``. The event fields are not public: an event is ``{start, end}`` plus exactly one
of ``description|caption|text``; any other field is an error naming it. Whether ``start/end`` are
seconds or frames is decided per clip once its length is known (:func:`resolve_event_units`) and
recorded in the manifest (``events_units``). ``face_bbox``'s format is not documented either: it is
read tolerantly (:func:`parse_face_box`) and a clip without a readable box gets its reference crop
from a detected face when a face backend is available.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ipvgkit.data.manifest import sample_id
from ipvgkit.data.sources.base import RefFace, Reject, SampleSpec
from ipvgkit.errors import InputError

NAME = "reactid"
PARTS = ("metadata", "annotations", "timeline_annotations")
EVENT_TEXT_KEYS = ("description", "caption", "text")
EVENT_KEYS = ("start", "end", *EVENT_TEXT_KEYS)
BOX_KEYS = ("bbox", "box", "xyxy", "face_bbox")
FRAME_KEYS = ("frame", "frame_idx", "fidx", "frame_index")


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def parse_events(events: Any, where: str) -> list[tuple[float, float, str]]:
    """``[(start, end, text)]`` in the annotation's units; InputError naming the first bad field."""
    if not isinstance(events, list):
        raise InputError(f"{where}: events: expected a list, got {type(events).__name__}")
    out = []
    for k, ev in enumerate(events):
        w = f"{where}: events[{k}]"
        if not isinstance(ev, dict):
            raise InputError(f"{w}: expected an object {{start, end, description}}")
        unknown = sorted(set(ev) - set(EVENT_KEYS))
        if unknown:
            raise InputError(
                f"{w}: unknown event field {unknown[0]!r} (accepted: start, end and one of {'|'.join(EVENT_TEXT_KEYS)})"
            )
        texts = [key for key in EVENT_TEXT_KEYS if key in ev]
        if len(texts) != 1:
            raise InputError(f"{w}: needs exactly one of {'|'.join(EVENT_TEXT_KEYS)}, has {texts or 'none'}")
        for key in ("start", "end"):
            if not _num(ev.get(key)) or ev[key] < 0:
                raise InputError(f"{w}.{key}: expected a number >= 0, got {ev.get(key)!r}")
        if ev["end"] <= ev["start"]:
            raise InputError(f"{w}: end {ev['end']} is not after start {ev['start']}")
        if not isinstance(ev[texts[0]], str):
            raise InputError(f"{w}.{texts[0]}: expected a string")
        out.append((float(ev["start"]), float(ev["end"]), ev[texts[0]].strip()))
    return out


def resolve_event_units(
    events: list[tuple[float, float, str]], duration: float, n_frames: int, fps: float
) -> tuple[str, list[tuple[float, float, str]]] | None:
    """(units, events in seconds): seconds when every end fits the clip's duration (half a frame of
    slack), else frames when every end fits its frame count (converted with ``fps``); None when neither."""
    slack = 0.5 / fps if fps > 0 else 0.0
    last = max(e[1] for e in events)
    if last <= duration + slack:
        return "seconds", list(events)
    if fps > 0 and last <= n_frames:
        return "frames", [(s / fps, e / fps, t) for s, e, t in events]
    return None


def _box(v: Any) -> tuple[tuple[float, ...], int | None] | None:
    if isinstance(v, list) and len(v) == 4 and all(_num(x) for x in v):
        return tuple(float(x) for x in v), None
    if isinstance(v, dict):
        frame = next((v[k] for k in FRAME_KEYS if isinstance(v.get(k), int)), None)
        for k in BOX_KEYS:
            if k in v:
                got = _box(v[k])
                if got is not None:
                    return got[0], frame if frame is not None else got[1]
    if isinstance(v, list):
        boxes = [b for b in (_box(x) for x in v) if b is not None]
        if boxes:
            return max(boxes, key=lambda b: (b[0][2] - b[0][0]) * (b[0][3] - b[0][1]))
    return None


def parse_face_box(v: Any) -> tuple[tuple[float, float, float, float], bool, int | None] | None:
    """``(xyxy, in_pixels, frame)`` from a ``face_bbox`` of unknown format: a 4-number list, an object
    with a ``bbox|box|xyxy`` and optional ``frame|frame_idx|fidx``, or a list of those (largest box).
    All-in-[0, 1] boxes are fractions of the frame, others pixels. None when nothing readable."""
    got = _box(v)
    if got is None:
        return None
    xyxy, frame = got
    if not (xyxy[2] > xyxy[0] and xyxy[3] > xyxy[1]):
        return None
    return xyxy, not all(0.0 <= x <= 1.0 for x in xyxy), frame  # type: ignore[return-value]


def _read_part(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected an object keyed by video file name, got {type(data).__name__}")
    for name, rec in data.items():
        if not isinstance(rec, dict):
            raise InputError(f"{path}: entry {name!r}: expected an object, got {type(rec).__name__}")
    return data


class ReactIdSource:
    """``root``: a ReactID-Data tree (see the module docstring)."""

    name = NAME

    def __init__(self, root: Path):
        self.root = Path(root).absolute()  # the manifest is read from other folders
        self.parts: dict[str, dict[str, dict]] = {p: {} for p in PARTS}

    def load(self) -> None:
        jsons, videos = self.root / "Jsons", self.root / "Videos"
        if not jsons.is_dir():
            raise InputError(f"{self.root}: no Jsons/ folder (not a ReactID-Data tree, see SPEC §3)")
        if not videos.is_dir():
            raise InputError(f"videos folder not found: {videos}")
        for part in PARTS:
            for f in sorted((jsons / part).glob("part*.json")):
                self.parts[part].update(_read_part(f))
        if not self.parts["metadata"] and not self.parts["timeline_annotations"]:
            raise InputError(f"{jsons}: no metadata/part*.json nor timeline_annotations/part*.json")
        for name, rec in self.parts["timeline_annotations"].items():
            where = f"{jsons / 'timeline_annotations'}: entry {name!r}"
            if "events" in rec:
                parse_events(rec["events"], where)
            if "global_caption" in rec and not isinstance(rec["global_caption"], str):
                raise InputError(f"{where}: global_caption: expected a string")
        for name, rec in self.parts["metadata"].items():
            if "caption" in rec and not isinstance(rec["caption"], str):
                raise InputError(f"{jsons / 'metadata'}: entry {name!r}: caption: expected a string")

    def names(self) -> list[str]:
        return sorted(set(self.parts["metadata"]) | set(self.parts["timeline_annotations"]))

    def video_path(self, name: str) -> Path:
        return self.root / "Videos" / name[:3] / name

    def items(self) -> Iterator[SampleSpec | Reject]:
        for name in self.names():
            yield self._item(name)

    def _item(self, name: str) -> SampleSpec | Reject:
        sid = sample_id(NAME, name, 0, 0)
        video = self.video_path(name)
        if not video.is_file():
            return Reject(name, sid, "missing-video", f"no {video}", name)
        tl = self.parts["timeline_annotations"].get(name, {})
        meta = self.parts["metadata"].get(name, {})
        caption = (tl.get("global_caption") or meta.get("caption") or "").strip()
        if not caption:
            return Reject(name, sid, "empty-caption", "neither global_caption nor caption is set", name)
        events = parse_events(tl["events"], name) if tl.get("events") else None
        refs = []
        box = parse_face_box(self.parts["annotations"].get(name, {}).get("face_bbox"))
        if box is not None:
            xyxy, pixels, frame = box
            refs.append(RefFace(str(video), 0.0, xyxy, True, pixels=pixels, frame=frame if frame else 0))
        return SampleSpec(
            sample_id=sid, source=NAME, identity_id=f"reactid-{Path(name).stem}", video_id=name,
            video=str(video), frame_start=0, frame_end=0, fps=0.0, t_start=0.0, t_end=0.0,
            caption=caption, events=events, events_units="auto" if events else None,
            face_box=None, refs=refs, whole_clip=True, segment=name,
        )  # fmt: skip

    def missing_videos(self) -> list[str]:
        return [n for n in self.names() if not self.video_path(n).is_file()]

    def describe(self) -> dict[str, Any]:
        return {"root": str(self.root), **{p: len(v) for p, v in self.parts.items()}}
