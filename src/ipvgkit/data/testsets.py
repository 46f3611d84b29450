"""Test-set loaders: formats A, B and C of SPEC §1 -> one list of :class:`Case`.

- A: a folder of id folders (``id001/``) each holding reference image(s) and ``prompt1.txt`` ...
- B: a JSON list of ``{"img", "prompt"}`` (Track 1 ``eval.json``).
- C: a JSON list, or a dict keyed ``"1"``..``"N"``, of ``{"img_paths", "class_label", "global_prompt",
  "temporal_captions"}`` (Track 2 ``eval.json``).

:func:`load_testset` is tolerant: every malformed case becomes a :class:`CaseError` in
``TestSet.errors`` and the others load. :func:`load_cases` is strict and raises the first one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ipvgkit.data.cases import Case
from ipvgkit.data.images import check_reference
from ipvgkit.data.timeline import (
    UNITS_CHOICES,
    TimelineError,
    check_fraction,
    looks_like_fraction,
    split_prompt_timeline_units,
)
from ipvgkit.errors import CaseError, InputError, UsageError
from ipvgkit.fsutil import natural_key as _natural_key

Format = Literal["A", "B", "C"]
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
EVAL_JSON = "eval.json"
ACCEPTED = (
    "accepted test sets: (A) a folder of id folders (id001/) each with image(s) *.png|jpg|jpeg|webp and "
    "prompt1.txt...; (B) a JSON list of {img, prompt}; (C) a JSON list or dict of {img_paths, "
    "class_label, global_prompt, temporal_captions}; or a folder holding such an eval.json "
    "(see docs/formats.md)"
)
_PROMPT_RE = re.compile(r"prompt(\d*)\.txt", re.IGNORECASE)


@dataclass
class TestSet:
    """A loaded test set: valid ``cases``, malformed ones as ``errors``, in the file's order."""

    __test__ = False  # not a pytest test class

    path: Path
    format: Format
    cases: list[Case] = field(default_factory=list)
    errors: list[CaseError] = field(default_factory=list)
    output_names: list[str] = field(default_factory=list)

    def expected_outputs(self) -> list[str]:
        """Output names of every case, malformed ones included where the name is knowable."""
        return list(self.output_names)

    def raise_first_error(self) -> None:
        """Raise the first :class:`CaseError`, if any."""
        if self.errors:
            raise self.errors[0]

    def __len__(self) -> int:
        return len(self.cases)

    def __iter__(self) -> Iterator[Case]:
        return iter(self.cases)


def _check_options(timeline_units: str, track: int | None) -> None:
    if timeline_units not in UNITS_CHOICES:
        raise UsageError(
            f"--timeline-units must be one of {', '.join(UNITS_CHOICES)}, not {timeline_units!r}"
        )
    if track not in (None, 1, 2):
        raise UsageError(f"--track must be 1 or 2, not {track!r}")


def load_testset(path: str | os.PathLike, timeline_units: str = "auto", track: int | None = None) -> TestSet:
    """Load a test set in format A, B or C (recognised as in SPEC §1).

    ``path`` is an id/prompt folder, an ``eval.json`` or a folder holding one. ``timeline_units``
    (``auto``/``seconds``/``fraction``) says how timeline times are read; ``track`` forces the track of
    every case. Malformed cases land in ``.errors``; an unrecognisable input raises :class:`InputError`.
    """
    _check_options(timeline_units, track)
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"test set not found: {p}")
    try:
        return _load_any(p, timeline_units, track)
    except OSError as exc:
        where = exc.filename or p
        raise InputError(f"cannot read {where}: {exc.strerror or exc}") from None


def _load_any(p: Path, timeline_units: str, track: int | None) -> TestSet:
    """Dispatch an existing path to the loader of its format."""
    from ipvgkit.data.testset_json import load_json  # formats B and C (that module uses TestSet)

    if p.is_dir():
        if (p / EVAL_JSON).is_file():
            return load_json(p / EVAL_JSON, timeline_units, track)
        if _looks_like_format_a(p):
            return _load_format_a(p, timeline_units, track)
        jsons = sorted(p.glob("*.json"))
        hint = f" (it holds {', '.join(j.name for j in jsons[:3])}: pass the file itself)" if jsons else ""
        if not hint and _prompt_files(p):
            hint = f" (it looks like one id folder: pass its parent {p.parent})"
        raise InputError(f"{p} is not a test set{hint}; {ACCEPTED}")
    if p.suffix.lower() == ".json":
        return load_json(p, timeline_units, track)
    raise InputError(f"{p} is not a test set; {ACCEPTED}")


def load_cases(path: str | os.PathLike, timeline_units: str = "auto", track: int | None = None) -> list[Case]:
    """Strict :func:`load_testset`: the cases, or the first malformed case raised as :class:`CaseError`."""
    testset = load_testset(path, timeline_units=timeline_units, track=track)
    testset.raise_first_error()
    return testset.cases


# ---------------------------------------------------------------------------------------------- format A


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")


def _prompt_files(folder: Path) -> list[Path]:
    files = [f for f in folder.iterdir() if f.is_file() and _PROMPT_RE.fullmatch(f.name)]
    return sorted(files, key=lambda f: _natural_key(f.name))


def _id_folders(root: Path) -> list[Path]:
    """Sub-folders that hold a prompt file or an image (hidden folders and ``__MACOSX`` skipped)."""
    found = []
    for d in root.iterdir():
        if not d.is_dir() or d.name.startswith((".", "__")):
            continue
        try:
            if any(_is_image(f) or _PROMPT_RE.fullmatch(f.name) for f in d.iterdir()):
                found.append(d)
        except OSError:
            continue
    return sorted(found, key=lambda d: _natural_key(d.name))


def _looks_like_format_a(root: Path) -> bool:
    return any(_prompt_files(d) for d in _id_folders(root))


def _read_text(path: Path, key: str) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CaseError(key, f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise CaseError(key, f"cannot read {path}: {exc.strerror or exc}") from None


def _load_format_a(root: Path, timeline_units: str, track: int | None) -> TestSet:
    ts = TestSet(path=root, format="A")
    for folder in _id_folders(root):
        images = sorted((f for f in folder.iterdir() if _is_image(f)), key=lambda f: _natural_key(f.name))
        prompts = _prompt_files(folder)
        if not prompts:
            ts.errors.append(CaseError(folder.name, f"no prompt1.txt ... in {folder}"))
            continue
        for prompt_file in prompts:
            key = f"{folder.name}/{prompt_file.stem}"
            output = f"{folder.name}/{prompt_file.stem}.mp4"
            ts.output_names.append(output)
            try:
                if not images:
                    raise CaseError(key, f"no reference image (*.png|jpg|jpeg|webp) in {folder}")
                for img in images:
                    check_reference(img, key)
                ts.cases.append(_case_a(key, output, prompt_file, images, timeline_units, track))
            except CaseError as exc:
                ts.errors.append(exc)
    if not ts.cases and not ts.errors:
        raise InputError(f"{root} holds no cases; {ACCEPTED}")
    return ts


def _case_a(
    key: str, output: str, prompt_file: Path, images: list[Path], timeline_units: str, track: int | None
) -> Case:
    text = _read_text(prompt_file, key).strip()
    if not text:
        raise CaseError(key, f"empty prompt in {prompt_file}")
    try:
        prompt, events, with_suffix = split_prompt_timeline_units(text)
        units = None
        if events:
            if timeline_units == "auto":
                units = "seconds" if with_suffix or not looks_like_fraction(events) else "fraction"
            else:
                units = timeline_units
            if units == "fraction":
                check_fraction(events)
    except TimelineError as exc:
        raise CaseError(key, f"{prompt_file.name}: {exc}") from None
    if events and not prompt:
        prompt = ". ".join(e.text for e in events)
    return Case(
        case_id=key,
        track=track or (2 if events else 1),
        ref_images=[i.resolve() for i in images],
        prompt=prompt,
        output_name=output,
        timeline=events,
        timeline_units=units,  # type: ignore[arg-type]
        source=str(prompt_file),
    )


# ------------------------------------------------------------------------------------------ formats B, C


__all__ = ["ACCEPTED", "IMAGE_SUFFIXES", "TestSet", "load_cases", "load_testset"]
