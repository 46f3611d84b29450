"""Zip side of ``ipvg pack``: refuse hostile archives, list a submission zip's files, write the zip.

Nothing here extracts anything: entries are inspected from the central directory and read as file
objects by :mod:`ipvgkit.media.probe` (through :mod:`ipvgkit.media.zip_entry`).
"""

from __future__ import annotations

import re
import shutil
import stat
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

TOP = "submission"

_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class ZipLimits:
    """Limits past which a zip is refused as hostile (a zip bomb or an archive nobody should unpack)."""

    max_entries: int = 10_000
    max_ratio: float = 100.0  # uncompressed / compressed size of one entry
    ratio_min_bytes: int = 1 << 20  # the ratio is only checked for entries at least this large
    max_total_bytes: int = 64 << 30  # sum of uncompressed sizes


@dataclass(frozen=True)
class ZipMember:
    """A file entry of a submission zip, ``rel`` relative to the top folder ``submission/``."""

    rel: str
    entry: str
    size: int
    is_symlink: bool = False


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    mode = info.external_attr >> 16
    return info.create_system == 3 and stat.S_ISLNK(mode)


def entry_problem(info: zipfile.ZipInfo, limits: ZipLimits) -> str | None:
    """Why one entry makes the whole zip unsafe, or None."""
    name = info.filename
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        return f"zip entry {name!r}: absolute path (zip slip), refused"
    parts = re.split(r"[\\/]", name)
    if ".." in parts:
        return f"zip entry {name!r}: path escapes the zip's folder ('..', zip slip), refused"
    if _is_symlink(info):
        return f"zip entry {name!r}: symbolic link, refused"
    if info.flag_bits & 0x1:
        return f"zip entry {name!r}: encrypted, refused"
    if info.file_size >= limits.ratio_min_bytes:
        ratio = info.file_size / max(1, info.compress_size)
        if ratio > limits.max_ratio:
            return (
                f"zip entry {name!r}: compression ratio {ratio:.0f}:1 exceeds {limits.max_ratio:.0f}:1 "
                f"(zip bomb?), refused"
            )
    return None


def read_zip(path: Path, limits: ZipLimits) -> tuple[list[ZipMember], list[str]]:
    """List the files of a submission zip. Returns ``(members, problems)``.

    Any hostile entry (absolute path, ``..``, symlink, encrypted, huge compression ratio), too many
    entries or too many uncompressed bytes makes ``members`` empty: the zip is refused, not probed.
    Entries outside ``submission/`` are problems; directory entries are skipped.
    """
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        return [], [f"{path.name}: not a valid zip file ({e})"]
    except OSError as e:
        return [], [f"{path.name}: cannot read ({e.strerror or e})"]
    with zf:
        infos = zf.infolist()
    if len(infos) > limits.max_entries:
        return [], [f"{path.name}: {len(infos)} entries, more than the limit {limits.max_entries}, refused"]
    hostile = [p for p in (entry_problem(i, limits) for i in infos) if p]
    total = sum(i.file_size for i in infos)
    if total > limits.max_total_bytes:
        hostile.append(
            f"{path.name}: {total / 2**30:.1f} GiB uncompressed, more than the limit "
            f"{limits.max_total_bytes / 2**30:.0f} GiB, refused"
        )
    if hostile:
        return [], hostile
    problems: list[str] = []
    outside: list[str] = []
    members: list[ZipMember] = []
    seen: set[str] = set()
    for info in infos:
        name = info.filename
        if name in seen:
            problems.append(f"zip entry {name!r}: duplicate entry")
            continue
        seen.add(name)
        if info.is_dir():
            continue
        p = PurePosixPath(name)
        if len(p.parts) < 2 or p.parts[0] != TOP:
            outside.append(name)
            continue
        members.append(ZipMember(str(PurePosixPath(*p.parts[1:])), name, info.file_size))
    if outside and not members:  # one line, not one per file, for a zip made without the top folder
        problems.append(
            f"{path.name}: no top folder {TOP}/ (every file must be under {TOP}/; found {outside[0]!r}"
            + (f" and {len(outside) - 1} more)" if len(outside) > 1 else ")")
        )
    else:
        problems += [f"zip entry {n!r}: not inside the top folder {TOP}/" for n in outside]
    return members, problems


def write_zip(
    dest: Path,
    files: Iterable[tuple[str, Path]],
    on_file: Callable[[str], None] | None = None,
) -> None:
    """Write ``(rel, path)`` files into ``dest`` under ``submission/``, stored (no compression).

    Videos are already compressed; deflating them again gains ~nothing and costs time. Directory
    entries are added for ``submission/`` and every subfolder so that every unzip tool shows them.
    """
    files = sorted(files)
    dirs = {TOP + "/"}
    for rel, _ in files:
        parent = PurePosixPath(rel).parent
        while str(parent) not in ("", "."):
            dirs.add(f"{TOP}/{parent}/")
            parent = parent.parent
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for d in sorted(dirs):
            zf.mkdir(d.rstrip("/"), mode=0o755)
        for rel, src in files:
            info = zipfile.ZipInfo.from_file(src, f"{TOP}/{rel}")
            info.external_attr = 0o100644 << 16  # a plain readable file, whatever the local mode
            info.compress_type = zipfile.ZIP_STORED
            with open(src, "rb") as fin, zf.open(info, "w") as fout:
                shutil.copyfileobj(fin, fout, 1 << 20)
            if on_file is not None:
                on_file(rel)


def crc_check(path: Path) -> str | None:
    """A problem line when some entry's data does not match its CRC or cannot be read, else None."""
    with zipfile.ZipFile(path) as zf:
        try:
            bad = zf.testzip()
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:
            return f"{Path(path).name}: damaged zip ({e})"
    return None if bad is None else f"zip entry {bad!r}: CRC mismatch (the zip is damaged)"
