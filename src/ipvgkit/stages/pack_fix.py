"""``ipvg pack --fix-encoding DIR2``: a fixed copy of a submission in a new folder (never in place).

Conforming videos are hardlinked (or copied); the others are decoded and re-encoded to H.264/yuv420p.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ipvgkit.errors import InputError, MediaError, UsageError
from ipvgkit.fsutil import atomic_path, is_inside
from ipvgkit.media.probe import VideoFacts
from ipvgkit.progress import Progress, ensure
from ipvgkit.stages.bookkeeping import written_by
from ipvgkit.stages.pack_rules import conforms
from ipvgkit.stages.pack_walk import Item, is_stray, probe_items, walk_folder


@dataclass
class FixReport:
    """What :func:`fix_encoding` did, by relative path."""

    reencoded: list[str] = field(default_factory=list)
    linked: list[str] = field(default_factory=list)  # conforming, hardlinked (or copied) unchanged
    kept: list[str] = field(default_factory=list)  # already in the destination (resumed run)
    unfixable: list[str] = field(default_factory=list)  # "rel: why" (copied unchanged)
    problems: list[str] = field(default_factory=list)  # source files that were not copied (symlinks)

    def to_dict(self) -> dict:
        return asdict(self)


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hardlink ``src`` to ``dst`` (atomically), or copy it when linking is impossible."""
    with atomic_path(dst) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copy2(src, tmp)


def _reencode(src: Path, dst: Path, fps: float, crf: int, preset: str) -> None:
    from ipvgkit.media import encode_video, read_video

    frames = read_video(src)
    encode_video(frames, dst, fps=fps if fps > 0 else 16.0, crf=crf, preset=preset)


def _up_to_date(src: Path, dst: Path) -> bool:
    """``dst`` exists and is not older than ``src`` (a finished output of an earlier run)."""
    try:
        return dst.stat().st_mtime >= src.stat().st_mtime
    except FileNotFoundError:
        return False


def _fixable(f: VideoFacts) -> bool:
    """Re-encode only streams that decode fine; a truncated or empty file must stay a problem."""
    return f.error is None or f.error.startswith("not an MP4 file")


def _leftovers(dst: Path, items: list[Item]) -> list[str]:
    """Files in ``dst`` whose source is gone: an earlier run's, they would be packed silently."""
    if not dst.is_dir():
        return []
    wanted = {it.rel for it in items}
    old, _p, _n = walk_folder(dst)
    return [
        f"{it.rel}: in {dst} but no longer in the submission folder (delete it, or use a new DIR2)"
        for it in old
        if it.rel not in wanted and not is_stray(it.rel) and not written_by(it.rel)
    ]


def _fix_one(it: Item, target: Path, f: VideoFacts | None, crf: int, preset: str, result: FixReport) -> None:
    """Link, re-encode or copy one file into ``target`` and record what was done."""
    if f is None or conforms(f):
        _link_or_copy(Path(it.path), target)
        result.linked.append(it.rel)
    elif _fixable(f):
        try:
            _reencode(Path(it.path), target, f.fps, crf, preset)
            result.reencoded.append(it.rel)
        except MediaError as e:
            _link_or_copy(Path(it.path), target)
            result.unfixable.append(f"{it.rel}: {e}")
    else:
        _link_or_copy(Path(it.path), target)
        result.unfixable.append(f"{it.rel}: {f.error}")


def fix_encoding(
    src: Path,
    dst: Path,
    overwrite: bool = False,
    workers: int = 0,
    crf: int = 18,
    preset: str = "medium",
    progress: Progress | None = None,
) -> FixReport:
    """Write a fixed copy of submission ``src`` into the new folder ``dst`` (``src`` is never changed).

    Conforming videos are hardlinked (or copied); others are decoded and re-encoded to H.264/yuv420p
    at their own fps (odd sizes padded to even). Files that cannot be decoded (empty, truncated) and
    non-video files are copied unchanged so that the following check reports them; OS metadata files
    are left out. Files already in ``dst`` are kept unless ``overwrite`` (rerun to resume).
    """
    progress = ensure(progress)
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise InputError(f"{src}: no such folder")
    if is_inside(dst, src):
        raise UsageError(f"--fix-encoding {dst}: must be a new folder outside the submission folder {src}")
    if is_inside(src, dst):
        raise UsageError(f"--fix-encoding {dst}: must not contain the submission folder {src}")
    items, problems, _notes = walk_folder(src)  # symlinks are not copied: they stay problems
    items = [it for it in items if not is_stray(it.rel)]
    todo = [it for it in items if overwrite or not _up_to_date(Path(it.path), dst / it.rel)]
    done = {it.rel for it in todo}
    result = FixReport(kept=sorted(it.rel for it in items if it.rel not in done), problems=problems)
    result.problems += _leftovers(dst, items)
    vids = [it for it in todo if it.rel.lower().endswith(".mp4")]
    facts = {f.name: f for f in probe_items([(v.rel, v.path, None) for v in vids], workers, progress)}
    progress.phase("fixing encoding", len(todo))
    for it in todo:
        target = dst / it.rel
        target.parent.mkdir(parents=True, exist_ok=True)
        _fix_one(it, target, facts.get(it.rel), crf, preset, result)
        progress.advance()
    return result
