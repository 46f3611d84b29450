"""Locate an ffmpeg executable that can encode H.264 (libx264).

Order: ``$IPVG_FFMPEG``; the system ``ffmpeg`` on PATH if it lists libx264; the binary bundled in the
``imageio-ffmpeg`` wheel (it ships libx264). The answer is cached per process.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import dataclass

from ipvgkit.errors import MissingDependencyError


@dataclass(frozen=True)
class FFmpegInfo:
    path: str
    source: str  # "env", "system" or "imageio-ffmpeg"
    version: str
    has_libx264: bool


def _inspect(path: str, source: str) -> FFmpegInfo | None:
    try:
        ver = subprocess.run([path, "-hide_banner", "-version"], capture_output=True, text=True, timeout=20)
        enc = subprocess.run([path, "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    if ver.returncode != 0:
        return None
    first = (ver.stdout.splitlines() or ["ffmpeg"])[0]
    version = first.split(" version ")[1].split(" ")[0] if " version " in first else first
    return FFmpegInfo(path, source, version, "libx264" in enc.stdout)


@functools.lru_cache(maxsize=1)
def ffmpeg_info() -> FFmpegInfo:
    """The ffmpeg that ipvgkit will use; raises if none with libx264 is found."""
    candidates: list[tuple[str, str]] = []
    env = os.environ.get("IPVG_FFMPEG")
    if env:
        candidates.append((env, "env"))
    system = shutil.which("ffmpeg")
    if system:
        candidates.append((system, "system"))
    try:
        import imageio_ffmpeg

        candidates.append((imageio_ffmpeg.get_ffmpeg_exe(), "imageio-ffmpeg"))
    except Exception:  # noqa: BLE001 - the package is missing or ships no binary for this platform
        pass
    seen = []
    for path, source in candidates:
        info = _inspect(path, source)
        if info is None:
            seen.append(f"{path} (does not run)")
            continue
        if info.has_libx264:
            return info
        seen.append(f"{path} (no libx264)")
    raise MissingDependencyError(
        "no ffmpeg with libx264 found"
        + (f" (tried: {', '.join(seen)})" if seen else "")
        + "; install it with `pip install imageio-ffmpeg` or `apt-get install ffmpeg`, or set IPVG_FFMPEG"
    )


def ffmpeg_exe() -> str:
    return ffmpeg_info().path
