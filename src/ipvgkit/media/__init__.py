"""Video decode/encode/probe."""

from ipvgkit.media.ffmpeg_bin import ffmpeg_exe, ffmpeg_info
from ipvgkit.media.video import (
    VideoInfo,
    VideoWriter,
    encode_video,
    probe_video,
    read_frames,
    read_video,
    sample_indices,
)

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
