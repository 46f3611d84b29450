"""Decode only a time range of a video, or single frames at given times (PyAV, seek by timestamp).

Annotations give frame numbers at *their* frame rate; a downloaded copy may have another one. So
callers turn frame numbers into seconds (``t = frame_num / framerate``) and these functions seek the
file by time, never by its own frame index. A frame belongs to ``[t_start, t_end)`` when its
presentation time lies in ``[t_start - h, t_end - h)`` with ``h`` half a frame of the file, so a
range of N annotation frames at the file's own rate yields N frames.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ipvgkit.errors import MediaError
from ipvgkit.media.probe import open_video, short_error, stream_duration, stream_fps


@dataclass
class RangeFrames:
    """What :func:`decode_range` returns: the kept frames and facts about the decoded range."""

    frames: list[np.ndarray] = field(default_factory=list)  # RGB uint8 (H, W, 3), in time order
    times: list[float] = field(default_factory=list)  # presentation time of each kept frame (s)
    kept_index: list[int] = field(default_factory=list)  # position of each kept frame in the range
    n_in_range: int = 0  # frames of the file inside [t_start, t_end)
    decoded: int = 0  # frames the decoder produced (includes those before t_start after the seek)
    first_time: float | None = None
    last_time: float | None = None
    fps: float = 0.0
    width: int = 0
    height: int = 0
    duration: float = 0.0  # the stream's duration as the container states it (0 when unknown)


def _stream(container, path: Path):
    vs = next((s for s in container.streams if s.type == "video"), None)
    if vs is None:
        raise MediaError(f"{path}: no video stream")
    vs.thread_type = "AUTO"
    return vs


def _seek(container, vs, t: float) -> None:
    """Seek to the key frame at or before ``t`` seconds (the start for ``t <= 0``)."""
    if vs.time_base is None:
        return
    try:
        container.seek(max(0, int(t / vs.time_base)), stream=vs, backward=True, any_frame=False)
    except Exception as e:  # noqa: BLE001 - a failed seek on a damaged file
        raise MediaError(f"{path_of(container)}: cannot seek to {t:.3f}s ({short_error(e)})") from None


def path_of(container) -> str:
    return getattr(container, "name", "video")


def decode_range(
    path: Path,
    t_start: float,
    t_end: float,
    keep: Callable[[int], bool] | None = None,
) -> RangeFrames:
    """Decode the frames of ``path`` inside ``[t_start, t_end)`` seconds, seeking to ``t_start`` first.

    ``keep(i)`` decides whether the i-th frame of the range is converted to RGB and returned (all when
    None); every frame of the range is decoded either way, so damage inside the range is found.
    A decoder error after some frames ends the range early (see ``last_time``); one before any frame of
    the range raises :class:`MediaError`.
    """
    path = Path(path)
    container = open_video(path)
    out = RangeFrames()
    try:
        vs = _stream(container, path)
        out.fps, out.duration = stream_fps(vs), stream_duration(container, vs)
        out.width, out.height = int(vs.codec_context.width), int(vs.codec_context.height)
        half = 0.5 / out.fps if out.fps > 0 else 0.0
        _seek(container, vs, t_start - half)
        try:
            for frame in container.decode(vs):
                out.decoded += 1
                t = float(frame.time) if frame.time is not None else out.decoded / max(out.fps, 1e-9)
                if t < t_start - half:
                    continue
                if t >= t_end - half:
                    break
                i = out.n_in_range
                out.n_in_range += 1
                out.first_time = t if out.first_time is None else out.first_time
                out.last_time = t
                if keep is None or keep(i):
                    out.frames.append(frame.to_ndarray(format="rgb24"))
                    out.times.append(t)
                    out.kept_index.append(i)
        except Exception as e:  # noqa: BLE001 - PyAV raises many types on damaged streams
            if out.n_in_range == 0:
                raise MediaError(f"{path}: decoding failed ({short_error(e)})") from None
        return out
    finally:
        container.close()


def decode_at(path: Path, times: Sequence[float]) -> list[np.ndarray]:
    """The frame shown at each time in ``times`` (seconds): one seek per time, RGB uint8 frames.

    Raises :class:`MediaError` when a time lies past the last decodable frame."""
    path = Path(path)
    container = open_video(path)
    try:
        vs = _stream(container, path)
        fps = stream_fps(vs)
        half = 0.5 / fps if fps > 0 else 0.0
        frames = []
        for t in times:
            _seek(container, vs, t - half)
            got = None
            try:
                for frame in container.decode(vs):
                    ft = float(frame.time) if frame.time is not None else 0.0
                    if ft >= t - half:
                        got = frame.to_ndarray(format="rgb24")
                        break
            except Exception as e:  # noqa: BLE001
                raise MediaError(f"{path}: decoding failed near {t:.3f}s ({short_error(e)})") from None
            if got is None:
                raise MediaError(f"{path}: no frame at {t:.3f}s (the video is shorter)")
            frames.append(got)
        return frames
    finally:
        container.close()


__all__ = ["RangeFrames", "decode_at", "decode_range"]
