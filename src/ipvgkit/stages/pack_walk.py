"""Files of a submission behind ``ipvg pack``: walk a folder or list a zip, then probe the videos.

Folders are walked without following symbolic links (a link is a problem); zips are listed from their
central directory (:mod:`ipvgkit.stages.pack_zip`). :func:`probe_items` checks many videos with
:func:`ipvgkit.media.probe.probe_item`, in worker processes when there are enough of them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from ipvgkit.fsutil import is_temp_name
from ipvgkit.progress import Progress, ensure

if TYPE_CHECKING:  # the CLI imports this module's rules at start-up: zipfile and PyAV load on use
    from ipvgkit.media.probe import VideoFacts
    from ipvgkit.stages.pack_zip import ZipLimits

STRAY_NAMES = {".ds_store", "thumbs.db", "desktop.ini", "ehthumbs.db", ".localized", "icon\r"}
STRAY_DIRS = {"__MACOSX", ".Spotlight-V100", ".Trashes", ".fseventsd", ".TemporaryItems"}
_TEMP_SUFFIXES = (".tmp", ".temp", ".part", ".partial", ".crdownload", ".download", ".swp", ".bak", "~")
# Below this many videos, probing in-process is faster than starting worker processes.
_POOL_MIN_FILES = 12


@dataclass
class Item:
    """One file of a submission: ``rel`` relative to the submission folder (or ``submission/``)."""

    rel: str
    path: str  # the file, or the zip holding it
    entry: str | None = None  # zip entry name


def is_stray(rel: str) -> bool:
    """OS litter that never belongs in a submission (.DS_Store, __MACOSX, Thumbs.db, ._* ...)."""
    parts = PurePosixPath(rel).parts
    name = parts[-1]
    return any(p in STRAY_DIRS for p in parts[:-1]) or name.lower() in STRAY_NAMES or name.startswith("._")


def is_temp(name: str) -> bool:
    """A temporary or partial file (ours, a browser's, an editor's)."""
    low = name.lower()
    return is_temp_name(name) or low.endswith(_TEMP_SUFFIXES) or name.startswith(("~$", ".#", ".~"))


def walk_folder(root: Path) -> tuple[list[Item], list[str], list[str]]:
    """Files of a submission folder: ``(items, problems, notes)``; symlinks are problems, never followed."""
    items: list[Item] = []
    problems: list[str] = []
    notes: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        rel_dir = base.relative_to(root).as_posix()
        prefix = "" if rel_dir == "." else rel_dir + "/"
        for d in sorted(dirnames):
            full = base / d
            if full.is_symlink():
                problems.append(f"{prefix}{d}/: symbolic link (not allowed: put the real folder there)")
                dirnames.remove(d)
            elif d in STRAY_DIRS:
                notes.append(f"{prefix}{d}/: OS metadata folder, left out of the zip")
                dirnames.remove(d)
        dirnames.sort()
        for f in sorted(filenames):
            full = base / f
            rel = prefix + f
            if full.is_symlink():
                problems.append(f"{rel}: symbolic link (not allowed: put the real file there)")
            elif not full.is_file():
                problems.append(f"{rel}: not a regular file")
            else:
                items.append(Item(rel, str(full)))
    return items, problems, notes


def zip_items(path: Path, limits: ZipLimits) -> tuple[list[Item], list[str]]:
    """Files of a submission zip (relative to its ``submission/``) and the zip's problems."""
    from ipvgkit.stages.pack_zip import read_zip

    members, problems = read_zip(path, limits)
    return [Item(m.rel, str(path), m.entry) for m in members], problems


def probe_items(
    items: Sequence[tuple],
    workers: int = 0,
    progress: Progress | None = None,
    phase: str = "checking videos",
) -> list[VideoFacts]:
    """Probe many videos (``items`` as for :func:`probe_item`), in a process pool sized to the CPU
    count (in-process for a handful), in the order given."""
    from ipvgkit.media.probe import probe_item
    from ipvgkit.media.zip_entry import close_zips
    from ipvgkit.procs import available_cpus, pool_context, spawnable_main

    progress = ensure(progress)
    n = len(items)
    workers = workers or available_cpus()
    progress.phase(phase, n)
    if workers <= 1 or n < _POOL_MIN_FILES:
        results: list[VideoFacts] = []
        try:
            for it in items:
                results.append(probe_item(it))
                progress.advance()
        finally:
            close_zips()
        return results
    from concurrent.futures import ProcessPoolExecutor

    chunk = max(1, min(16, n // (workers * 8)))
    with ProcessPoolExecutor(max_workers=min(workers, n), mp_context=pool_context()) as ex:
        with spawnable_main():
            mapped = ex.map(probe_item, items, chunksize=chunk)
        results = []
        for facts in mapped:
            results.append(facts)
            progress.advance()
    return results
