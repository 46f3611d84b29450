"""Files and measurements of ``ipvg generate``: finished-video checks, stale temp files, the
append-only ``generation*.jsonl`` logs, and peak memory per case."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from ipvgkit.errors import MediaError
from ipvgkit.fsutil import is_temp_name


def read_generation_log(out_dir: Path) -> list[dict[str, Any]]:
    """Every record of every ``generation*.jsonl`` in ``out_dir`` (a torn last line is ignored)."""
    records = []
    for path in sorted(Path(out_dir).glob("generation*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line (one ``write`` of a whole line, then flush)."""
    line = json.dumps(record, default=str, ensure_ascii=False) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()


def finished_video_problem(path: Path, frames: int, width: int, height: int) -> str | None:
    """None if ``path`` is a finished video of these settings, else why not (missing, empty, cut off,
    not H.264, wrong frame count or size)."""
    if not path.is_file():
        return "missing"
    if path.stat().st_size == 0:
        return "empty file"
    try:
        from ipvgkit.media.probe import mp4_problem, probe_video

        if mp4_problem(path):
            return "cut off (incomplete MP4)"
        info = probe_video(path, decode_check=True, count_frames=True)
    except (MediaError, OSError) as e:
        return f"unreadable ({e})"
    if info.codec != "h264":
        return f"codec {info.codec}, not h264"
    if info.n_frames != frames:
        return f"{info.n_frames} frames, expected {frames}"
    if (info.width, info.height) != (width, height):
        return f"size {info.width}x{info.height}, expected {width}x{height}"
    return None


def remove_stale_temps(dest: Path) -> list[Path]:
    """Delete half-written temp files of ``dest`` (from a crashed run); returns what was removed."""
    removed = []
    if not dest.parent.is_dir():
        return removed
    prefix = f".{dest.stem}.tmp-"
    for p in dest.parent.iterdir():
        if p.is_file() and is_temp_name(p.name) and p.name.startswith(prefix):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def on_cuda(device: str) -> bool:
    """True when ``device`` is a CUDA device and torch (already imported) sees CUDA."""
    torch = sys.modules.get("torch")
    return bool(torch is not None and str(device).startswith("cuda") and torch.cuda.is_available())


def reset_peak_memory(device: str) -> None:
    """Reset CUDA's peak-memory counter of ``device`` (nothing to reset for RSS)."""
    if on_cuda(device):
        import torch

        torch.cuda.reset_peak_memory_stats(device)


def peak_rss_mb() -> float:
    """This process's peak resident memory in MiB: ``VmHWM`` of ``/proc/self/status`` on Linux (the
    peak of this program only), else ``getrusage`` ``ru_maxrss`` (which on Linux also carries the
    parent's peak across fork)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return rss * scale / 2**20


def peak_memory(device: str) -> tuple[float, str]:
    """(MiB, kind): CUDA max allocated since the last reset, else the process's peak RSS so far."""
    if on_cuda(device):
        import torch

        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    return peak_rss_mb(), "process_peak_rss"
