"""Test-set formats B and C (SPEC §1): ``eval.json`` lists or dicts of cases, with reference image
paths resolved tolerantly (paths written on another machine are found by name under the JSON's folder).
Used by :func:`ipvgkit.data.testsets.load_testset`."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path, PurePosixPath
from typing import Any

from ipvgkit.data.cases import Case
from ipvgkit.data.images import check_reference
from ipvgkit.data.testsets import ACCEPTED, Format, TestSet
from ipvgkit.data.timeline import TimelineError, events_from_captions
from ipvgkit.errors import CaseError, InputError

_C_KEYS = ("img_paths", "temporal_captions", "global_prompt", "class_label")
_B_KEYS = ("img", "prompt")
_B_IMG_KEYS = ("img", "image", "img_path", "img_paths")
_B_TEXT_KEYS = ("prompt", "global_prompt", "caption")
_C_IMG_KEYS = ("img_paths", "img_path", "img", "images")
_C_TEXT_KEYS = ("global_prompt", "prompt")
_C_LABEL_KEYS = ("class_label", "class_labels")
_INDEX_LIMIT = 200_000  # files visited at most when searching the json's folder tree for a basename


def _read_json(path: Path) -> Any:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    duplicates: dict[int, list[str]] = {}

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict:
        obj = dict(pairs)
        if len(obj) < len(pairs):
            seen: set[str] = set()
            duplicates[id(obj)] = [k for k, _ in pairs if k in seen or seen.add(k)]
        return obj

    try:
        data = json.loads(text, object_pairs_hook=pairs_hook)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    if id(data) in duplicates:  # only the top-level object's keys are case keys
        dup = duplicates[id(data)]
        raise InputError(
            f"{path}: duplicate case key(s) {', '.join(map(repr, dup[:5]))}; keys must be unique"
        )
    return data


def _entries(data: Any, path: Path) -> list[tuple[str, Any]]:
    """(key, entry) pairs: the dict's keys, or 1-based positions for a list."""
    if isinstance(data, list):
        return [(str(i), e) for i, e in enumerate(data, start=1)]
    if isinstance(data, dict):
        if any(k in data for k in _C_KEYS + _B_KEYS):
            raise InputError(f"{path} holds a single case object, not a list or dict of cases; {ACCEPTED}")
        items = [(str(k), v) for k, v in data.items()]
        if items and all(k.isdigit() for k, _ in items):
            items.sort(key=lambda kv: int(kv[0]))
        return items
    raise InputError(f"{path} holds a JSON {type(data).__name__}, not a list or dict of cases; {ACCEPTED}")


def _detect_json_format(entries: list[tuple[str, Any]], path: Path) -> Format:
    objs = [e for _, e in entries if isinstance(e, dict)]
    if any(any(k in e for k in _C_KEYS) for e in objs):
        return "C"
    if any(any(k in e for k in _B_KEYS) for e in objs):
        return "B"
    what = (
        "no cases" if not entries else "no entry with img/prompt or img_paths/global_prompt/temporal_captions"
    )
    raise InputError(f"{path} holds {what}; {ACCEPTED}")


def load_json(path: Path, timeline_units: str, track: int | None) -> TestSet:
    data = _read_json(path)
    entries = _entries(data, path)
    fmt = _detect_json_format(entries, path)
    ts = TestSet(path=path, format=fmt)
    resolver = _PathResolver(path.parent)
    build = _case_b if fmt == "B" else _case_c
    for key, entry in entries:
        output = _output_name(key)
        if output is not None:
            ts.output_names.append(output)
        try:
            if output is None:
                raise CaseError(key, "key cannot be used as a video file name (no '/', '\\' or leading '.')")
            case = build(key, entry, output, resolver, timeline_units, track)
            for img in case.ref_images:
                check_reference(img, key)
            case.source = f"{path}#{key}"
            ts.cases.append(case)
        except CaseError as exc:
            ts.errors.append(exc)
    return ts


def _output_name(key: str) -> str | None:
    if not key.strip() or "/" in key or "\\" in key or key in (".", "..") or key.startswith("."):
        return None
    return f"{key}.mp4"


def _need_dict(key: str, entry: Any) -> dict:
    if not isinstance(entry, dict):
        raise CaseError(key, f"entry must be a JSON object, not {type(entry).__name__}")
    return entry


def _text_field(key: str, entry: dict, names: tuple[str, ...]) -> str:
    name = next((n for n in names if n in entry), None)
    if name is None:
        raise CaseError(key, f"missing {names[0]!r}")
    value = entry[name]
    if not isinstance(value, str):
        raise CaseError(key, f"{name!r} must be text, not {type(value).__name__}")
    if not value.strip():
        raise CaseError(key, f"empty {name!r}")
    return value.strip()


def _path_list(key: str, entry: dict, names: tuple[str, ...]) -> list[str]:
    name = next((n for n in names if n in entry), None)
    if name is None:
        raise CaseError(key, f"missing {names[0]!r}")
    value = entry[name]
    values = [value] if isinstance(value, str) else value
    if (
        not isinstance(values, list)
        or not values
        or not all(isinstance(v, str) and v.strip() for v in values)
    ):
        raise CaseError(key, f"{name!r} must be a path or a non-empty list of paths, not {value!r}")
    return values


def _case_b(
    key: str, entry: Any, output: str, resolver: _PathResolver, timeline_units: str, track: int | None
) -> Case:
    entry = _need_dict(key, entry)
    raw = _path_list(key, entry, _B_IMG_KEYS)
    prompt = _text_field(key, entry, _B_TEXT_KEYS)
    known = {*_B_IMG_KEYS, *_B_TEXT_KEYS}
    return Case(
        case_id=key,
        track=track or 1,
        ref_images=[resolver.resolve(r, key) for r in raw],
        prompt=prompt,
        output_name=output,
        extra={k: v for k, v in entry.items() if k not in known},
    )


def _class_labels(key: str, entry: dict) -> list[str] | None:
    name = next((n for n in _C_LABEL_KEYS if n in entry), None)
    if name is None or entry[name] is None:
        return None
    value = entry[name]
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise CaseError(key, f"{name!r} must be a list of text labels, not {value!r}")
    return values


def _case_c(
    key: str, entry: Any, output: str, resolver: _PathResolver, timeline_units: str, track: int | None
) -> Case:
    entry = _need_dict(key, entry)
    raw = _path_list(key, entry, _C_IMG_KEYS)
    prompt = _text_field(key, entry, _C_TEXT_KEYS)
    labels = _class_labels(key, entry)
    captions = entry.get("temporal_captions")
    events, units = None, None
    if captions is not None:
        try:
            events, units = events_from_captions(captions, timeline_units)
        except TimelineError as exc:
            raise CaseError(key, f"temporal_captions: {exc}") from None
        events = events or None
    known = {*_C_IMG_KEYS, *_C_TEXT_KEYS, *_C_LABEL_KEYS, "temporal_captions"}
    return Case(
        case_id=key,
        track=track or 2,
        ref_images=[resolver.resolve(r, key) for r in raw],
        prompt=prompt,
        output_name=output,
        timeline=events,
        timeline_units=units,
        class_labels=labels,
        extra={k: v for k, v in entry.items() if k not in known},
    )


# ------------------------------------------------------------------------------------------ image paths


class _PathResolver:
    """Finds a reference image named in a JSON file, tolerating paths written for another machine.

    In order: the path as given (relative to the json's folder); with leading ``./``/``../`` stripped;
    the longest tail of the path that exists under the json's folder; ``images/<basename>``; and a
    unique file of that basename anywhere in the json's folder tree.
    """

    def __init__(self, base: Path):
        self.base = base.resolve()
        self._index: dict[str, list[Path]] | None = None

    def candidates(self, raw: str) -> list[Path]:
        """Every place ``raw`` may be, most literal first (without the folder-tree search)."""
        text = raw.strip()
        if text.startswith("file://"):
            text = text[len("file://") :]
        given = Path(text).expanduser()
        out = [given if given.is_absolute() else self.base / given]
        parts = [p for p in PurePosixPath(text.replace("\\", "/")).parts if p not in ("/", "")]
        if parts and re.fullmatch(r"[A-Za-z]:", parts[0]):  # a Windows drive
            parts = parts[1:]
        stripped = parts
        while stripped and stripped[0] in (".", ".."):
            stripped = stripped[1:]
        for k in range(len(stripped), 0, -1):
            out.append(self.base.joinpath(*stripped[-k:]))
        if stripped:
            out.append(self.base / "images" / stripped[-1])
        seen: set[Path] = set()
        return [c for c in out if not (c in seen or seen.add(c))]

    def resolve(self, raw: str, key: str) -> Path:
        """The existing file ``raw`` refers to, or :class:`CaseError` naming the case and the path."""
        cands = self.candidates(raw)
        for c in cands:
            if c.is_file():
                return c.resolve()
        name = PurePosixPath(raw.strip().replace("\\", "/")).name
        matches = self._find_basename(name) if name else []
        if len(matches) == 1:
            return matches[0].resolve()
        extra = (
            f"; {len(matches)} files named {name!r} under {self.base}, ambiguous" if len(matches) > 1 else ""
        )
        raise CaseError(
            key,
            f"reference image not found: {raw!r} (looked at {cands[0]} and {len(cands) - 1} more places{extra})",
        )

    def _find_basename(self, name: str) -> list[Path]:
        if self._index is None:
            self._index = {}
            visited = 0
            for dirpath, dirnames, filenames in os.walk(self.base):
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                for f in filenames:
                    self._index.setdefault(f, []).append(Path(dirpath) / f)
                visited += len(filenames)
                if visited > _INDEX_LIMIT:
                    break
        return self._index.get(name, [])
