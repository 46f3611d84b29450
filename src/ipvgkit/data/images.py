"""Reference images: the one check that a file is a readable image, done once per file version.

The test-set loaders check every reference image where a case is built; the backends' ``check`` asks
the same function again, which answers from its memo (keyed by path, size and modification time) without
opening the file a second time.
"""

from __future__ import annotations

from pathlib import Path

_MEMO: dict[tuple[str, int, int], str | None] = {}
_MEMO_LIMIT = 4096


def image_problem(path: Path) -> str | None:
    """None if ``path`` is a readable image, else a one-line reason (not found / cannot be read)."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        return f"reference image not found: {path}"
    if not path.is_file():
        return f"reference image not found: {path}"
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _MEMO:
        if len(_MEMO) >= _MEMO_LIMIT:
            _MEMO.clear()
        _MEMO[key] = _read_problem(path)
    return _MEMO[key]


def _read_problem(path: Path) -> str | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        lines = str(exc).strip().splitlines()
        reason = lines[0] if lines else type(exc).__name__
        return f"reference image {path} cannot be read: not a readable image ({type(exc).__name__}: {reason})"
    return None


def reference_problems(paths: list[Path]) -> list[str]:
    """The problems of a case's reference images (empty when every one is readable)."""
    return [p for p in (image_problem(Path(x)) for x in paths) if p]


__all__ = ["check_reference", "image_problem", "reference_problems"]


def check_reference(path: Path, key: str) -> None:
    """Raise the :func:`image_problem` of a case's reference image as that case's ``CaseError``."""
    from ipvgkit.errors import CaseError

    problem = image_problem(path)
    if problem:
        raise CaseError(key, problem)
