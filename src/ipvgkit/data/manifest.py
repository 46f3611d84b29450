"""The training manifest: what ``ipvg prepare`` writes and ``ipvg finetune`` reads (docs/formats.md).

One JSON object per line, one line per training sample. Every record carries ``schema``
(:data:`SCHEMA`) and ``source`` (the dataset source that made it). A manifest is *finished* when the
folder's ``manifest.jsonl`` exists: prepare writes it at the end of a run, sorted by ``sample_id``,
through a temp file + rename. While a run works it appends finished records to a journal
(:class:`JournalWriter`): one ``write`` per complete line, so a kill -9 leaves at most one torn last
line, which :func:`read_journal` drops (that sample is simply done again).

Paths inside a record (reference crops, cached tensors) are relative to the manifest's folder.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ipvgkit.errors import InputError
from ipvgkit.fsutil import atomic_write_text

SCHEMA = 1
MANIFEST_NAME = "manifest.jsonl"
REJECTS_NAME = "rejects.jsonl"


@dataclass(frozen=True)
class ManifestEvent:
    """One timeline event of a training clip, in seconds from the clip's first frame."""

    start: float
    end: float
    text: str


@dataclass
class Sample:
    """One training sample.

    ``frame_start``/``frame_end`` are frame numbers of the source video at ``fps`` (the annotation's
    frame rate), end exclusive; ``t_start``/``t_end`` the same range in seconds (what a decoder seeks
    by). ``ref_images`` are crops relative to the manifest folder; ``ref_same_segment`` says that no
    face from another segment of the same identity was available, so the reference was cut from the
    training clip itself. ``cache`` maps a cache key (model, revision, resolution, frames) to the
    cached-tensor file of this sample, relative to the manifest folder. ``video_id`` is the id the
    annotations use, ``video_fps`` the frame rate of the file on disk (it may differ from ``fps``
    after a re-encode), ``events_units`` how the annotation gave the event times ("seconds" or
    "frames"; the events are stored in seconds either way).
    """

    sample_id: str
    source: str
    identity_id: str
    video: str
    frame_start: int
    frame_end: int
    fps: float
    t_start: float
    t_end: float
    caption: str
    events: list[ManifestEvent] | None = None
    ref_images: list[str] = field(default_factory=list)
    ref_same_segment: bool = False
    face_box: list[float] | None = None
    width: int | None = None
    height: int | None = None
    bucket: dict[str, int] | None = None
    quality: dict[str, float] = field(default_factory=dict)
    face_embedding: str | None = None
    cache: dict[str, str] = field(default_factory=dict)
    video_id: str | None = None
    video_fps: float | None = None
    events_units: str | None = None
    schema: int = SCHEMA

    @property
    def duration(self) -> float:
        return self.t_end - self.t_start

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "manifest") -> Sample:
        if d.get("schema") != SCHEMA:
            raise InputError(
                f"{where}: record of schema {d.get('schema')!r}, this ipvgkit reads schema {SCHEMA}"
            )
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(f"{where}: unknown field {unknown[0]!r} in record {d.get('sample_id')!r}")
        d = dict(d)
        if d.get("events") is not None:
            d["events"] = [ManifestEvent(**e) for e in d["events"]]
        try:
            return cls(**d)
        except TypeError as e:  # a required field is missing
            raise InputError(f"{where}: record {d.get('sample_id')!r}: {e}") from None


def sample_id(source: str, video_id: str, frame_start: int, frame_end: int) -> str:
    """A stable sample key: the source, the video and the frame range (never a list position)."""
    digest = hashlib.sha256(f"{source}\0{video_id}\0{frame_start}\0{frame_end}".encode()).hexdigest()[:10]
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in video_id)[:48]
    return f"{source}-{safe}-{frame_start}-{frame_end}-{digest}"


def read_manifest(folder_or_file: Path, source: str | None = None) -> list[Sample]:
    """The finished manifest of a prepare folder (or a ``.jsonl`` file); every record validated.

    ``source``, when given, must match every record (a folder of another source is an error)."""
    path = Path(folder_or_file)
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.is_file():
        raise InputError(f"no manifest at {path} (run `ipvg prepare` first, or it did not finish)")
    samples = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError:
                raise InputError(f"{path}:{n}: not a JSON line") from None
            s = Sample.from_dict(d, where=f"{path}:{n}")
            if source is not None and s.source != source:
                raise InputError(f"{path}:{n}: a {s.source!r} manifest, not {source!r}")
            samples.append(s)
    return samples


def write_manifest(folder: Path, samples: Iterable[Sample]) -> Path:
    """Write the finished manifest, sorted by ``sample_id``, atomically."""
    ordered = sorted(samples, key=lambda s: s.sample_id)
    text = "".join(s.to_json() + "\n" for s in ordered)
    return atomic_write_text(Path(folder) / MANIFEST_NAME, text)


class JournalWriter:
    """Appends one complete JSON line per call, flushed and fsynced: crash-safe progress records.

    Safe for several processes appending to the same file (O_APPEND, one ``write`` per line)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _drop_torn_tail(self.path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)

    def append(self, record: dict[str, Any] | Sample) -> None:
        line = record.to_json() if isinstance(record, Sample) else json.dumps(record, sort_keys=True)
        os.write(self._fd, (line + "\n").encode("utf-8"))
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> JournalWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_journal(path: Path) -> Iterator[dict[str, Any]]:
    """The complete records of a journal; a torn last line (a killed writer) is skipped."""
    path = Path(path)
    if not path.exists():
        return
    with path.open(encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                return  # torn tail
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn line followed by later appends (only possible after a crash)


def _drop_torn_tail(path: Path) -> None:
    """Cut a last line without newline (left by a killed writer) so the next append starts clean."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("rb+") as f:
        data = f.read()
        if data.endswith(b"\n"):
            return
        cut = data.rfind(b"\n") + 1
        f.truncate(cut)


__all__ = [
    "MANIFEST_NAME",
    "REJECTS_NAME",
    "SCHEMA",
    "JournalWriter",
    "ManifestEvent",
    "Sample",
    "read_journal",
    "read_manifest",
    "sample_id",
    "write_manifest",
]
