"""Video decode/encode/probe (one prober: :mod:`ipvgkit.media.probe`).

The names below are imported on first use, so that importing one submodule (a pack worker process
imports only :mod:`ipvgkit.media.probe`) does not import the others (numpy, ffmpeg lookup).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {
    "VideoInfo": "probe",
    "probe_video": "probe",
    "ffmpeg_exe": "ffmpeg_bin",
    "ffmpeg_info": "ffmpeg_bin",
    "VideoWriter": "video",
    "encode_video": "video",
    "read_frames": "video",
    "read_video": "video",
    "sample_indices": "video",
}

if TYPE_CHECKING:
    from ipvgkit.media.ffmpeg_bin import ffmpeg_exe, ffmpeg_info
    from ipvgkit.media.probe import VideoInfo, probe_video
    from ipvgkit.media.video import VideoWriter, encode_video, read_frames, read_video, sample_indices


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'ipvgkit.media' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"ipvgkit.media.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "VideoInfo",
    "VideoWriter",
    "encode_video",
    "ffmpeg_exe",
    "ffmpeg_info",
    "probe_video",
    "read_frames",
    "read_video",
    "sample_indices",
]
