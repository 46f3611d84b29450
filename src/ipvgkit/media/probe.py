"""The one video prober: MP4 box walk, in-process PyAV stream facts, first-frame decode.

- :func:`probe_video` reads a file's first video stream into a :class:`VideoInfo` (any container;
  raises :class:`~ipvgkit.errors.MediaError`): what ``ipvg score`` and ``ipvg generate`` use.
- :func:`probe_item` checks one submission video (a file, or an entry read straight out of a zip as a
  seekable file object, nothing extracted) and returns a picklable :class:`VideoFacts` whose ``error``
  says why it is not a usable MP4; ``ipvg pack`` runs it in worker processes.
- :func:`mp4_problem` walks the top-level MP4 boxes of a file (a cut-off file fails) without decoding.

Stream facts (codec, size, fps, frame count, duration) are read by one function for all three.
"""

from __future__ import annotations

import os
import struct
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

from ipvgkit.errors import MediaError
from ipvgkit.media.zip_entry import open_entry, open_zip

# Magic numbers of formats that people save as ".mp4" by mistake.
_MAGIC = [
    (b"\x1a\x45\xdf\xa3", "a Matroska/WebM file"),
    (b"RIFF", "a RIFF (AVI/WAV) file"),
    (b"FLV", "an FLV file"),
    (b"GIF8", "a GIF image"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"PK\x03\x04", "a zip archive"),
    (b"\x00\x00\x01\xba", "an MPEG program stream"),
]


@dataclass
class VideoFacts:
    """What the checks learned about one video; ``error`` is set when the file is not a usable MP4."""

    name: str  # path relative to the submission folder (posix)
    size_bytes: int = 0
    brand: str | None = None  # ftyp major brand, e.g. "isom"
    container: str | None = None  # PyAV demuxer name
    codec: str | None = None
    pix_fmt: str | None = None
    width: int = 0
    height: int = 0
    fps: float = 0.0
    n_frames: int = 0
    duration: float = 0.0
    error: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _describe_magic(head: bytes) -> str:
    if not head:
        return "no data"
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return what
    return "unknown data"


def scan_boxes(fh: BinaryIO, file_size: int) -> tuple[list[str], str | None, str | None]:
    """Walk the top-level MP4 boxes. Returns ``(box types, major brand, error)``.

    ``error`` says why the file is not a complete MP4: no ``ftyp`` header, a box that runs past the
    end of the file (a truncated download or copy), garbage between boxes, or no ``moov`` box.
    """
    fh.seek(0)
    head = fh.read(12)
    if len(head) < 8 or head[4:8] != b"ftyp":
        return [], None, f"not an MP4 file ({_describe_magic(head)}; no 'ftyp' header)"
    brand = head[8:12].decode("latin-1") if len(head) >= 12 else None
    types: list[str] = []
    off = 0
    while off < file_size:
        fh.seek(off)
        hdr = fh.read(8)
        if len(hdr) < 8:
            return types, brand, f"truncated (incomplete box header at byte {off} of {file_size})"
        size, raw = struct.unpack(">I4s", hdr)
        typ = raw.decode("latin-1")
        hdr_len = 8
        if size == 1:
            ext = fh.read(8)
            if len(ext) < 8:
                return types, brand, f"truncated (incomplete box header at byte {off} of {file_size})"
            size = struct.unpack(">Q", ext)[0]
            hdr_len = 16
        elif size == 0:  # box runs to the end of the file
            size = file_size - off
        if not typ.isprintable() or size < hdr_len:
            return types, brand, f"corrupt MP4 (garbage at byte {off} of {file_size})"
        if off + size > file_size:
            return (
                types + [typ],
                brand,
                f"truncated (box '{typ}' ends at byte {off + size}, the file has {file_size} bytes)",
            )
        types.append(typ)
        off += size
    if "moov" not in types:
        return types, brand, "no 'moov' box (an unfinished or truncated recording)"
    return types, brand, None


def short_error(e: BaseException) -> str:
    """The first line of an exception's message (its type when empty)."""
    s = str(e).strip().splitlines()
    return s[0] if s else type(e).__name__


def _first_frame(container, vs, quick: bool):
    """Decode the first frame. ``quick``: one packet, then a flush (no waiting for the B-frame reorder
    delay); otherwise decode packets until a frame comes out (streams that start without a keyframe)."""
    cc = vs.codec_context
    cc.thread_type = "NONE"  # one worker process per core already
    if not quick:
        return next(iter(container.decode(vs)), None)
    for packet in container.demux(vs):
        if not packet.size:
            continue
        frames = cc.decode(packet) or cc.decode(None)
        return frames[0] if frames else None
    return None


def _index_end(vs) -> int:
    """Byte offset where the last sample of the stream ends, from the demuxer's index (0 if unknown)."""
    entries = getattr(vs, "index_entries", None)
    if entries is None:
        return 0
    end = 0
    for i in range(len(entries)):
        e = entries[i]
        end = max(end, e.pos + e.size)
    return end


def _open(fh: BinaryIO, fast: bool):
    import av

    fh.seek(0)
    # skip_frame=all stops avformat_find_stream_info from decoding frames just to learn the pix_fmt
    # (the stream's codec context, used below, does not inherit it): the first frame is decoded once.
    return av.open(fh, mode="r", options={"skip_frame": "all"} if fast else None)


def probe_stream(fh: BinaryIO, facts: VideoFacts, decode: bool = True) -> VideoFacts:
    """Fill ``facts`` from an open seekable file: box walk, stream facts, decode the first frame
    (unless ``decode`` is False)."""
    _, facts.brand, err = scan_boxes(fh, facts.size_bytes)
    if err:
        facts.error = err
        return facts
    for fast in (True, False):  # on failure, retry the slow and thorough way
        try:
            container = _open(fh, fast)
        except Exception as e:  # noqa: BLE001 - PyAV raises many types for unreadable input
            facts.error = f"not a readable MP4 ({short_error(e)})"
            return facts
        try:
            _read_stream(container, facts, quick=fast, decode=decode)
        except Exception as e:  # noqa: BLE001 - a damaged stream must become a problem line, not a crash
            facts.error = f"unreadable video ({short_error(e)})"
        finally:
            container.close()
        if facts.error is None or facts.codec is None:
            break
    return facts


def stream_fps(vs) -> float:
    """Frames per second of a PyAV video stream (average, else guessed, else base rate; 0 unknown)."""
    rate = vs.average_rate or vs.guessed_rate or vs.base_rate
    return float(rate) if rate else 0.0


def stream_duration(container, vs) -> float:
    """Seconds of a PyAV video stream as the container states them (the stream's, else the file's;
    0 when unknown)."""
    if vs.duration is not None and vs.time_base is not None:
        return float(vs.duration * vs.time_base)
    return container.duration / 1_000_000 if container.duration else 0.0


def stream_facts(container, facts: VideoFacts):
    """Fill ``facts`` (container, codec, pix_fmt, size, fps, frames, duration) from an open PyAV
    container's first video stream and return that stream (None when there is none). The frame count
    comes from the container, else from duration x fps."""
    facts.container = container.format.name
    vs = next((s for s in container.streams if s.type == "video"), None)
    if vs is None:
        return None
    cc = vs.codec_context
    facts.codec = cc.name
    facts.pix_fmt = cc.pix_fmt
    facts.width, facts.height = int(cc.width or 0), int(cc.height or 0)
    facts.fps = stream_fps(vs)
    facts.n_frames = int(vs.frames or 0)
    facts.duration = stream_duration(container, vs)
    if facts.n_frames == 0 and facts.fps and facts.duration:
        facts.n_frames = int(round(facts.duration * facts.fps))
    return vs


def _read_stream(container, facts: VideoFacts, quick: bool, decode: bool) -> None:
    facts.error = None
    vs = stream_facts(container, facts)
    if vs is None:
        facts.error = "no video stream"
        return
    end = _index_end(vs)
    if end > facts.size_bytes:
        facts.error = f"truncated (the video data runs to byte {end}, the file has {facts.size_bytes} bytes)"
        return
    if not decode:
        return
    try:
        first = _first_frame(container, vs, quick)
    except Exception as e:  # noqa: BLE001
        facts.error = f"cannot decode the first frame ({short_error(e)})"
        return
    if first is None:
        facts.error = "no decodable frame"
        return
    facts.pix_fmt = first.format.name
    facts.width, facts.height = int(first.width), int(first.height)


def probe_item(item: tuple) -> VideoFacts:
    """Check one video. ``item`` is ``(name, path, zip_entry[, decode])``: a file on disk when
    ``zip_entry`` is None, else the entry ``zip_entry`` of the zip at ``path``. ``decode`` (default
    True) decodes the first frame; without it ``pix_fmt`` stays unknown."""
    name, path, entry = item[:3]
    decode = bool(item[3]) if len(item) > 3 else True
    facts = VideoFacts(name=name)
    try:
        if entry is None:
            facts.size_bytes = os.stat(path).st_size
            if facts.size_bytes == 0:
                facts.error = "empty file (0 bytes)"
                return facts
            with open(path, "rb") as fh:
                return probe_stream(fh, facts, decode)
        zf = open_zip(path)
        info = zf.getinfo(entry)
        facts.size_bytes = info.file_size
        if facts.size_bytes == 0:
            facts.error = "empty file (0 bytes)"
            return facts
        with open_entry(zf, info) as fh:
            return probe_stream(fh, facts, decode)
    except OSError as e:
        facts.error = f"cannot read ({e.strerror or short_error(e)})"
        return facts
    except zipfile.BadZipFile as e:
        facts.error = f"damaged zip entry ({short_error(e)})"
        return facts


def mp4_problem(path: Path) -> str | None:
    """Why the file at ``path`` is not a complete MP4 by its top-level boxes (no ``ftyp``, a box cut
    off, no ``moov``), or None; nothing is decoded."""
    size = os.stat(path).st_size
    with open(path, "rb") as fh:
        return scan_boxes(fh, size)[2]


# ------------------------------------------------------------------------------------- probe_video


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` reads from a file's first video stream."""

    path: str
    container: str  # PyAV/ffmpeg demuxer name, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
    codec: str  # e.g. "h264", "vp9", "mpeg4"
    pix_fmt: str | None
    width: int
    height: int
    fps: float
    n_frames: int
    duration: float  # seconds
    size_bytes: int

    @property
    def is_mp4(self) -> bool:
        return "mp4" in self.container.split(",")

    def to_dict(self) -> dict:
        return asdict(self)


def open_video(path: Path):
    """An open PyAV container of the file at ``path``; :class:`MediaError` when missing, empty or
    unreadable."""
    import av

    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: empty file (0 bytes)")
    try:
        return av.open(str(path))
    except Exception as e:  # noqa: BLE001 - PyAV raises many types for unreadable input
        raise MediaError(f"{path}: not a readable video ({short_error(e)})") from None


def probe_video(path: Path, decode_check: bool = False, count_frames: bool = False) -> VideoInfo:
    """Read container/stream facts in-process (any container, not only MP4).

    ``decode_check`` decodes the first frame (raises :class:`MediaError` if none decodes).
    ``count_frames`` counts packets when the container does not store the frame count.
    """
    path = Path(path)
    container = open_video(path)
    try:
        facts = VideoFacts(name=str(path), size_bytes=path.stat().st_size)
        vs = stream_facts(container, facts)
        if vs is None:
            raise MediaError(f"{path}: no video stream")
        if count_frames and not vs.frames:
            facts.n_frames = sum(1 for p in container.demux(vs) if p.size) or facts.n_frames
            container.seek(0)  # back to the start for the decode check
        if decode_check:
            try:
                first = next(iter(container.decode(vs)), None)
            except Exception as e:  # noqa: BLE001
                raise MediaError(f"{path}: cannot decode ({short_error(e)})") from None
            if first is None:
                raise MediaError(f"{path}: no decodable frame")
        return VideoInfo(
            path=str(path),
            container=facts.container or "",
            codec=facts.codec or "",
            pix_fmt=facts.pix_fmt,
            width=facts.width,
            height=facts.height,
            fps=facts.fps,
            n_frames=facts.n_frames,
            duration=facts.duration,
            size_bytes=facts.size_bytes,
        )
    finally:
        container.close()
