"""Real files for the ``ipvg pack`` tests: every kind of video made with ffmpeg, folders, zips."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from ipvgkit.media import encode_video, ffmpeg_exe
from ipvgkit.stages.pack_rules import VideoExpectations
from tests.conftest import moving_frames

# The videos made here are toy-sized (6 frames of 48x32, 0.75 s), far from what the organisers expect:
# tests of the other rules that assert every warning turn that check off (expect=None / TOY).
TOY = VideoExpectations(min_duration_s=0, min_short_side=0, min_frames=0)


def _ff(out: Path, *args: str, size: str = "48x32") -> Path:
    """Encode 6 frames of ffmpeg's test pattern with the given output arguments."""
    cmd = [ffmpeg_exe(), "-loglevel", "error", "-nostdin", "-y", "-f", "lavfi"]
    cmd += ["-i", f"testsrc=size={size}:rate=8", "-frames:v", "6", *args, str(out)]
    subprocess.run(cmd, check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> dict[str, Path]:
    """One file of each kind, made once per module."""
    d = tmp_path_factory.mktemp("pack_sources")
    good = encode_video(moving_frames(t=6), d / "good.mp4", fps=8)
    x264 = ["-c:v", "libx264", "-preset", "ultrafast"]
    return {
        "good": good,
        "vp9": _ff(d / "vp9.mp4", "-c:v", "libvpx-vp9", "-b:v", "100k", "-f", "mp4"),
        "mpeg4": _ff(d / "mpeg4.mp4", "-c:v", "mpeg4", "-f", "mp4"),
        "odd": _ff(d / "odd.mp4", *x264, "-pix_fmt", "yuv444p", "-f", "mp4", size="33x31"),
        "yuv444": _ff(d / "yuv444.mp4", *x264, "-pix_fmt", "yuv444p", "-f", "mp4"),
        "mkv": _ff(d / "mkv.mp4", *x264, "-pix_fmt", "yuv420p", "-f", "matroska"),
        "mov": _ff(d / "mov.mp4", *x264, "-pix_fmt", "yuv420p", "-f", "mov"),
        "late_moov": _ff(d / "late.mp4", *x264, "-pix_fmt", "yuv420p", "-f", "mp4"),
    }


def _sub(root: Path, files: dict[str, Path | bytes]) -> Path:
    """A submission folder: ``{relative name: source file or raw bytes}``."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, what in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(what, bytes):
            p.write_bytes(what)
        else:
            shutil.copyfile(what, p)
    return root


def _grid(good: Path, ids: int = 2, prompts: int = 2) -> dict[str, Path | bytes]:
    return {f"id{i:03d}/prompt{k}.mp4": good for i in range(1, ids + 1) for k in range(1, prompts + 1)}


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _zip(path: Path, entries: list[tuple[zipfile.ZipInfo | str, bytes]], deflate: bool = False) -> Path:
    comp = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compression=comp) as zf:
        for info, data in entries:
            zf.writestr(info, data)
    return path
