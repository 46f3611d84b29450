"""VIP-200K (Track 1): a JSON list of persons ``{"faces": [...], "segments": [...]}`` (SPEC §3).

Frame semantics (dataset card and viewer rows): ``clip.beg/end.frame_num`` are absolute frame numbers
of the original video at ``framerate``, the clip end exclusive; ``fidx``, ``fidx_beg``, ``fidx_end`` are
relative to the clip start, ``fidx_end`` inclusive. A segment is one sample covering absolute frames
``[beg + fidx_beg, beg + fidx_end + 1)`` clamped to the clip, i.e. seconds ``frame / framerate``.

The reference crop comes preferably from a face of the same person *outside* the training segment
(another segment or another video), so a model cannot learn to copy-paste the reference; when the
person has no such face the crop comes from the segment itself and the record says so
(``ref_same_segment``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ipvgkit.data.manifest import sample_id
from ipvgkit.data.sources.base import RefFace, Reject, SampleSpec, find_video
from ipvgkit.errors import InputError

NAME = "vip200k"


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class _Shape:
    """Validates one entry; raises one InputError naming the entry and the field."""

    def __init__(self, path: Path, index: int):
        self.path, self.index = path, index

    def fail(self, field: str, msg: str) -> None:
        raise InputError(
            f"{self.path}: entry {self.index}: {field}: {msg} (not VIP-200K shaped, see SPEC §3)"
        )

    def clip(self, clip: Any, where: str) -> None:
        if not isinstance(clip, dict):
            self.fail(where, f"expected an object with beg/end, got {type(clip).__name__}")
        for end in ("beg", "end"):
            b = clip.get(end)
            if not isinstance(b, dict):
                self.fail(f"{where}.{end}", "missing (expected {frame_num, framerate})")
            if not isinstance(b.get("frame_num"), int) or isinstance(b.get("frame_num"), bool):
                self.fail(f"{where}.{end}.frame_num", f"expected an integer, got {b.get('frame_num')!r}")
            if not _num(b.get("framerate")) or b["framerate"] <= 0:
                self.fail(f"{where}.{end}.framerate", f"expected a number > 0, got {b.get('framerate')!r}")

    def vid(self, item: dict, where: str) -> None:
        if not isinstance(item.get("id"), str) or not item["id"]:
            self.fail(f"{where}.id", f"expected a video id string, got {item.get('id')!r}")

    def entry(self, e: Any) -> None:
        if not isinstance(e, dict):
            self.fail("entry", f"expected an object with faces/segments, got {type(e).__name__}")
        for key in ("faces", "segments"):
            if not isinstance(e.get(key), list):
                self.fail(key, "missing or not a list")
        for j, f in enumerate(e["faces"]):
            w = f"faces[{j}]"
            if not isinstance(f, dict):
                self.fail(w, "expected an object")
            self.vid(f, w)
            self.clip(f.get("clip"), f"{w}.clip")
            if not isinstance(f.get("fidx"), int):
                self.fail(f"{w}.fidx", f"expected an integer, got {f.get('fidx')!r}")
            box = f.get("xyxy_norm")
            if not (isinstance(box, list) and len(box) == 4 and all(_num(x) for x in box)):
                self.fail(f"{w}.xyxy_norm", f"expected [x1, y1, x2, y2] numbers, got {box!r}")
        for j, s in enumerate(e["segments"]):
            w = f"segments[{j}]"
            if not isinstance(s, dict):
                self.fail(w, "expected an object")
            self.vid(s, w)
            self.clip(s.get("clip"), f"{w}.clip")
            for k in ("fidx_beg", "fidx_end"):
                if not isinstance(s.get(k), int) or isinstance(s.get(k), bool):
                    self.fail(f"{w}.{k}", f"expected an integer, got {s.get(k)!r}")
            if not isinstance(s.get("caption"), str):
                self.fail(f"{w}.caption", f"expected a string, got {s.get('caption')!r}")


def identity_id(entry: dict) -> str:
    """A stable identity id: a hash of the person's annotated faces (never the list position)."""
    key = sorted((f["id"], f["clip"]["beg"]["frame_num"], f["fidx"]) for f in entry["faces"])
    if not key:
        key = sorted((s["id"], s["clip"]["beg"]["frame_num"], s["fidx_beg"]) for s in entry["segments"])
    return "vip-" + hashlib.sha256(json.dumps(key).encode()).hexdigest()[:12]


def segment_range(seg: dict) -> tuple[int, int, float]:
    """Absolute ``(frame_start, frame_end_exclusive, framerate)`` of a segment, clamped to its clip."""
    beg, end = seg["clip"]["beg"], seg["clip"]["end"]
    start = max(beg["frame_num"], beg["frame_num"] + seg["fidx_beg"])
    stop = min(end["frame_num"], beg["frame_num"] + seg["fidx_end"] + 1)
    return start, stop, float(beg["framerate"])


def segment_windows(start: int, stop: int, fps: float, window_seconds: float | None) -> list[tuple[int, int]]:
    """``[start, stop)`` cut into consecutive windows of ``window_seconds`` (frames at ``fps``), the last
    one keeping the remainder; the whole range when ``window_seconds`` is None or the range is shorter."""
    if window_seconds is None:
        return [(start, stop)]
    size = max(1, int(round(window_seconds * fps)))
    n = max(1, (stop - start) // size)
    edges = [start + k * size for k in range(n)] + [stop]
    return list(zip(edges[:-1], edges[1:], strict=True))


class Vip200kSource:
    """``annotations``: the VIP-200K JSON list; ``videos``: the folder of ``<id>.mp4|.mkv|.webm``."""

    name = NAME

    def __init__(self, annotations: Path, videos: Path, window_seconds: float | None = None):
        # absolute: the manifest is read from other folders (finetune resolves paths against PREP)
        self.annotations, self.videos = Path(annotations).absolute(), Path(videos).absolute()
        self.entries: list[dict] = []
        self.window_seconds = window_seconds

    def load(self) -> None:
        if not self.annotations.is_file():
            raise InputError(f"annotation file not found: {self.annotations}")
        if not self.videos.is_dir():
            raise InputError(f"videos folder not found: {self.videos}")
        try:
            data = json.loads(self.annotations.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"{self.annotations}: not valid JSON ({e})") from None
        if not isinstance(data, list):
            raise InputError(
                f"{self.annotations}: expected a JSON list of persons (VIP-200K), got {type(data).__name__}"
            )
        for i, e in enumerate(data):
            _Shape(self.annotations, i).entry(e)
        self.entries = data

    def _video(self, vid: str) -> Path | None:
        return find_video(self.videos, vid)

    def items(self) -> Iterator[SampleSpec | Reject]:
        for i, entry in enumerate(self.entries):
            ident = identity_id(entry)
            for j, seg in enumerate(entry["segments"]):
                yield from self._segment(entry, ident, f"person {i} segment {j}", seg)

    def _segment(self, entry: dict, ident: str, where: str, seg: dict) -> Iterator[SampleSpec | Reject]:
        start, stop, fps = segment_range(seg)
        problem = self._segment_problem(seg, start, stop, where)
        if problem is not None:
            yield problem
            return
        windows = segment_windows(start, stop, fps, self.window_seconds)
        for k, (w0, w1) in enumerate(windows):
            label = f"{where} window {k}" if len(windows) > 1 else where
            yield self._window(entry, ident, label, seg, (start, stop), (w0, w1), fps)

    def _segment_problem(self, seg: dict, start: int, stop: int, where: str) -> Reject | None:
        sid = sample_id(NAME, seg["id"], start, stop)
        if stop <= start:
            return Reject(seg["id"], sid, "empty-range", f"frames {start}->{stop} after clamping", where)
        if self._video(seg["id"]) is None:
            return Reject(seg["id"], sid, "missing-video", f"no {seg['id']}.mp4|.mkv|.webm", where)
        if not seg["caption"].strip():
            return Reject(seg["id"], sid, "empty-caption", "the segment's caption is empty", where)
        return None

    def _window(
        self, entry: dict, ident: str, where: str, seg: dict, seg_range: tuple[int, int],
        window: tuple[int, int], fps: float,
    ) -> SampleSpec:  # fmt: skip
        """One sample: frames ``window`` of the segment; faces inside the *segment* count as its own."""
        (start, stop), (w0, w1) = seg_range, window
        video = self._video(seg["id"])
        inside, outside = [], []
        for f in entry["faces"]:
            fb = f["clip"]["beg"]
            frame = fb["frame_num"] + f["fidx"]
            same = f["id"] == seg["id"] and start <= frame < stop
            fvideo = video if f["id"] == seg["id"] else self._video(f["id"])
            if fvideo is None:
                continue
            ref = RefFace(str(fvideo), frame / float(fb["framerate"]), tuple(f["xyxy_norm"]), same)
            (inside if same else outside).append(ref)
        return SampleSpec(
            sample_id=sample_id(NAME, seg["id"], w0, w1), source=NAME, identity_id=ident,
            video_id=seg["id"], video=str(video), frame_start=w0, frame_end=w1, fps=fps,
            t_start=w0 / fps, t_end=w1 / fps,
            caption=seg["caption"].strip(), face_box=inside[0].xyxy_norm if inside else None,
            refs=outside + inside, segment=where,
        )  # fmt: skip

    def missing_videos(self) -> list[str]:
        ids = {f["id"] for e in self.entries for f in e["faces"]}
        ids |= {s["id"] for e in self.entries for s in e["segments"]}
        return sorted(v for v in ids if self._video(v) is None)

    def describe(self) -> dict[str, Any]:
        return {
            "annotations": str(self.annotations),
            "videos": str(self.videos),
            "persons": len(self.entries),
            "segments": sum(len(e["segments"]) for e in self.entries),
        }
