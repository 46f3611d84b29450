"""Video I/O: H.264 encoding through ffmpeg (ffmpeg-python), in-process decoding (PyAV); probing is
:mod:`ipvgkit.media.probe`.

Frames are ``uint8`` arrays shaped ``(T, H, W, 3)`` in RGB order everywhere in ipvgkit.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ipvgkit.errors import MediaError
from ipvgkit.fsutil import atomic_path
from ipvgkit.media.ffmpeg_bin import ffmpeg_exe
from ipvgkit.media.probe import open_video, short_error


class VideoWriter:
    """Streams RGB frames into an H.264 MP4 through an ffmpeg subprocess.

    The file appears at ``path`` only when :meth:`close` succeeds (temp file + rename). Odd widths or
    heights are padded by one pixel (edge replicated) because yuv420p needs even sizes.
    """

    def __init__(
        self,
        path: Path,
        fps: float = 16.0,
        crf: int = 18,
        preset: str = "medium",
        pix_fmt: str = "yuv420p",
        codec: str = "libx264",
    ):
        self.path = Path(path)
        self.fps = float(fps)
        self.crf = int(crf)
        self.preset = preset
        self.pix_fmt = pix_fmt
        self.codec = codec
        self._proc: subprocess.Popen | None = None
        self._ctx = None
        self._tmp: Path | None = None
        self._size: tuple[int, int] | None = None  # (h, w) of the input frames
        self.frames_written = 0

    def _start(self, h: int, w: int) -> None:
        import ffmpeg

        self._ctx = atomic_path(self.path, suffix=".mp4")
        self._tmp = self._ctx.__enter__()
        pad_h, pad_w = h + (h % 2), w + (w % 2)
        out_args = {"vcodec": self.codec, "pix_fmt": self.pix_fmt, "movflags": "+faststart", "r": self.fps}
        if self.codec == "libx264":
            out_args.update(crf=self.crf, preset=self.preset)
        stream = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{pad_w}x{pad_h}", r=self.fps)
        stream = (
            ffmpeg.output(stream, str(self._tmp), **out_args)
            .overwrite_output()
            .global_args("-loglevel", "error", "-nostdin")
        )
        self._proc = ffmpeg.run_async(stream, cmd=ffmpeg_exe(), pipe_stdin=True, pipe_stderr=True)
        self._size = (h, w)

    def write(self, frames: np.ndarray) -> None:
        """Append one frame ``(H, W, 3)`` or a batch ``(T, H, W, 3)`` of uint8 RGB."""
        arr = np.asarray(frames)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[-1] != 3:
            raise MediaError(f"{self.path}: frames must be (T, H, W, 3), got {arr.shape}")
        if arr.dtype != np.uint8:
            raise MediaError(f"{self.path}: frames must be uint8, got {arr.dtype}")
        h, w = arr.shape[1:3]
        if h < 2 or w < 2:
            raise MediaError(f"{self.path}: frame size {w}x{h} is too small to encode")
        if self._proc is None:
            self._start(h, w)
        elif (h, w) != self._size:
            raise MediaError(f"{self.path}: frame size changed from {self._size} to {(h, w)}")
        if h % 2 or w % 2:
            arr = np.pad(arr, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        try:
            self._proc.stdin.write(np.ascontiguousarray(arr).tobytes())
        except BrokenPipeError:
            self._fail()
        self.frames_written += arr.shape[0]

    def _fail(self) -> None:
        err = b""
        if self._proc is not None:
            try:
                _, err = self._proc.communicate(timeout=30)
            except Exception:  # noqa: BLE001
                self._proc.kill()
        self._abort()
        msg = (err or b"").decode(errors="replace").strip().splitlines()
        raise MediaError(f"{self.path}: ffmpeg failed: {msg[-1] if msg else 'unknown error'}")

    def _abort(self) -> None:
        if self._ctx is not None:
            ctx, self._ctx = self._ctx, None
            with contextlib.suppress(MediaError):
                ctx.__exit__(MediaError, MediaError("aborted"), None)

    def close(self) -> Path:
        if self._proc is None:
            raise MediaError(f"{self.path}: no frames were written")
        self._proc.stdin.close()
        err = self._proc.stderr.read()
        rc = self._proc.wait()
        if rc != 0:
            self._abort()
            msg = err.decode(errors="replace").strip().splitlines()
            raise MediaError(f"{self.path}: ffmpeg failed: {msg[-1] if msg else f'exit {rc}'}")
        ctx, self._ctx = self._ctx, None
        ctx.__exit__(None, None, None)
        return self.path

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            if self._proc is not None and self._proc.poll() is None:
                self._proc.kill()
                self._proc.wait()
            self._abort()


def encode_video(
    frames: np.ndarray | Iterable[np.ndarray],
    path: Path,
    fps: float = 16.0,
    crf: int = 18,
    preset: str = "medium",
) -> Path:
    """Encode RGB uint8 frames ``(T, H, W, 3)`` (or an iterable of frames) to an H.264/yuv420p MP4.

    Written atomically: ``path`` either holds the complete video or is untouched.
    """
    with VideoWriter(path, fps=fps, crf=crf, preset=preset) as w:
        if isinstance(frames, np.ndarray):
            w.write(frames)
        else:
            for f in frames:
                w.write(f)
    return Path(path)


def read_frames(path: Path, indices: Sequence[int] | None = None) -> np.ndarray:
    """Decode the frames at ``indices`` (all frames when None) as RGB ``(N, H, W, 3)`` uint8.

    Frames are returned in the order of ``indices`` (repeats allowed). Decoding is sequential and
    stops after the largest requested index; only requested frames are converted to RGB.
    An index past the end of the video raises :class:`MediaError`.
    """
    path = Path(path)
    container = open_video(path)
    try:
        vs = next((s for s in container.streams if s.type == "video"), None)
        if vs is None:
            raise MediaError(f"{path}: no video stream")
        vs.thread_type = "AUTO"
        if indices is not None:
            want = sorted(set(int(i) for i in indices))
            if want and want[0] < 0:
                raise MediaError(f"{path}: negative frame index {want[0]}")
            last = want[-1] if want else -1
        else:
            want, last = None, None
        want_set = set(want) if want is not None else set()
        got: dict[int, np.ndarray] = {}
        all_frames: list[np.ndarray] = []
        try:
            for i, frame in enumerate(container.decode(vs)):
                if want is None:
                    all_frames.append(frame.to_ndarray(format="rgb24"))
                    continue
                if i > last:
                    break
                if i in got or i not in want_set:
                    continue
                got[i] = frame.to_ndarray(format="rgb24")
        except Exception as e:  # noqa: BLE001
            if want is None or len(got) < len(want):
                raise MediaError(f"{path}: decoding failed ({short_error(e)})") from None
        if want is None:
            if not all_frames:
                raise MediaError(f"{path}: no decodable frame")
            return np.stack(all_frames)
        missing = [i for i in want if i not in got]
        if missing:
            raise MediaError(f"{path}: frame {missing[0]} requested but the video has fewer frames")
        if not want:
            return np.zeros((0, int(vs.codec_context.height), int(vs.codec_context.width), 3), np.uint8)
        return np.stack([got[int(i)] for i in indices])
    finally:
        container.close()


def read_video(path: Path) -> np.ndarray:
    """All frames of a video, RGB ``(T, H, W, 3)`` uint8."""
    return read_frames(path, None)


def sample_indices(n_frames: int, n: int) -> list[int]:
    """SPEC §4 sampling: ``n`` frames at ``linspace(0, n_frames-1, n)`` rounded down."""
    if n_frames <= 0 or n <= 0:
        return []
    return [int(x) for x in np.linspace(0, n_frames - 1, n)]
