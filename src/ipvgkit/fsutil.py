"""File-system helpers: atomic writes (temp file in the same folder, then rename), path tests, the
natural order of file and case names."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(dest: Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temp path beside ``dest``; on success it is renamed onto ``dest``, on error removed.

    The temp name starts with ``.`` and contains ``.tmp-`` so that half-written files are easy to
    recognise (and are never mistaken for finished outputs by resumable stages).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    suffix = dest.suffix if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.stem}.tmp-", suffix=suffix, dir=dest.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs get the usual permissions
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(dest: Path, data: bytes) -> Path:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)
    return Path(dest)


def atomic_write_text(dest: Path, text: str) -> Path:
    return atomic_write_bytes(dest, text.encode("utf-8"))


def is_temp_name(name: str) -> bool:
    """True for names produced by :func:`atomic_path` (half-written files)."""
    return name.startswith(".") and ".tmp-" in name


def is_inside(child: Path, parent: Path) -> bool:
    """True when ``child`` is ``parent`` or lies below it (both resolved: links and ``..`` followed)."""
    child, parent = Path(child).resolve(), Path(parent).resolve()
    return child == parent or parent in child.parents


def natural_key(text: str) -> tuple:
    """Sort key of names in natural order: ``"2"`` before ``"10"``, ``id2/prompt1`` before
    ``id10/prompt1``; letters compare without case, and names equal that way by their exact text (so
    the order never depends on the order the names came in)."""
    parts = re.split(r"(\d+)", text)
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p.lower()) for p in parts if p != ""), text
