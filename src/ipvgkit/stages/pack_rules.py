"""The rules of ``ipvg pack`` (SPEC §2) as pure functions: file kinds, layouts and names, per-video facts.

Each function returns problem/warning lines; nothing here reads a file except :func:`expected_names`,
which loads the test set. Every line starts with the file's path relative to the submission folder
(lines about the whole submission have no path and sort first: :func:`sorted_lines`).
"""

from __future__ import annotations

import re
import typing
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

from ipvgkit.errors import InputError, UsageError
from ipvgkit.stages.bookkeeping import claimed_video, written_by
from ipvgkit.stages.pack_walk import Item, is_stray, is_temp

if TYPE_CHECKING:
    from ipvgkit.media.probe import VideoFacts

Layout = Literal["auto", "id-prompt", "flat"]
LAYOUTS: tuple[str, ...] = typing.get_args(Layout)
LAYOUT_PATTERNS = {
    "id-prompt": (re.compile(r"^id\d{3,}/prompt[1-9]\d*\.mp4$"), "idNNN/promptK.mp4"),
    "flat": (re.compile(r"^[1-9]\d*\.mp4$"), "N.mp4"),
}


def check_layout(layout: str) -> None:
    """A :class:`UsageError` naming the choices when ``layout`` is not one of :data:`LAYOUTS`."""
    if layout not in LAYOUTS:
        raise UsageError(f"--layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")


def classify(
    items: Sequence[Item], kind: Literal["folder", "zip"]
) -> tuple[list[Item], list[str], list[str]]:
    """Sort a submission's files: ``(videos, problems, notes)``. OS litter and the stages'
    bookkeeping (:mod:`ipvgkit.stages.bookkeeping`) are left out of a folder's zip (notes) but are
    problems inside a zip."""
    videos: list[Item] = []
    problems: list[str] = []
    notes: list[str] = []
    for it in items:
        if is_stray(it.rel):
            if kind == "folder":
                notes.append(f"{it.rel}: OS metadata file, left out of the zip")
            else:
                problems.append(f"{it.rel}: OS metadata file in the zip (remove it)")
        elif who := written_by(it.rel):
            if kind == "folder":
                notes.append(f"{it.rel}: {who}'s bookkeeping file, left out of the zip")
            else:
                problems.append(f"{it.rel}: {who}'s bookkeeping file in the zip (remove it)")
        elif video := claimed_video(it.rel):
            problems.append(
                f"{it.rel}: ipvg generate is still working on {video}, or a run died on it "
                "(wait for it, or rerun ipvg generate: it takes over dead runs' claims)"
            )
        elif is_temp(PurePosixPath(it.rel).name):
            problems.append(f"{it.rel}: unexpected file (a temporary or partial file)")
        elif not it.rel.endswith(".mp4"):
            problems.append(f"{it.rel}: unexpected file (only .mp4 videos belong in a submission)")
        else:
            videos.append(it)
    return videos, problems, notes


# ------------------------------------------------------------------------------------------- videos


def video_findings(f: VideoFacts, strict: bool = False) -> tuple[list[str], list[str]]:
    """``(problems, warnings)`` for one probed video; ``strict`` turns the warnings into problems."""
    problems: list[str] = []
    warnings: list[str] = []
    if f.error:
        problems.append(f"{f.name}: {f.error}")
    if f.brand == "qt  ":
        problems.append(f"{f.name}: QuickTime .mov file (ftyp brand 'qt'), must be MP4 (use --fix-encoding)")
    elif f.container and "mp4" not in f.container.split(","):
        problems.append(f"{f.name}: container {f.container}, must be MP4 (use --fix-encoding)")
    if f.codec and f.codec != "h264":
        problems.append(f"{f.name}: codec {f.codec}, must be h264 (use --fix-encoding)")
    soft: list[str] = []
    if f.codec == "h264" and f.pix_fmt and f.pix_fmt != "yuv420p":
        soft.append(
            f"{f.name}: pix_fmt {f.pix_fmt}, yuv420p recommended (many players cannot play it; "
            f"use --fix-encoding)"
        )
    if f.width % 2 or f.height % 2:
        soft.append(
            f"{f.name}: odd dimensions {f.width}x{f.height} (many players reject them; use --fix-encoding)"
        )
    (problems if strict else warnings).extend(soft)
    return problems, warnings


def conforms(f: VideoFacts) -> bool:
    """True when a video needs no re-encoding: readable H.264/yuv420p MP4 with even dimensions."""
    return (
        f.error is None
        and f.brand != "qt  "
        and f.container is not None
        and "mp4" in f.container.split(",")
        and f.codec == "h264"
        and f.pix_fmt == "yuv420p"
        and f.width % 2 == 0
        and f.height % 2 == 0
    )


@dataclass(frozen=True)
class VideoExpectations:
    """Videos far below what the organisers expect (the models they name make ~5 s of 81 frames at
    480p or more, SPEC §5; ConsisID 49 frames at 8 fps) are warnings, problems with ``--strict``. The one
    place these thresholds are declared; config key ``expect``."""

    min_duration_s: float = 2.0
    min_short_side: int = 256  # pixels, min(width, height)
    min_frames: int = 16

    def shortfalls(self, v: VideoFacts) -> list[tuple[int, str, str]]:
        """``(rule, what, fact)`` for each threshold ``v`` is under (rule: 0 duration, 1 size, 2 frames).
        A threshold of 0 is off; a duration or frame count of 0 is unknown, not short."""
        out = []
        if 0 < v.duration < self.min_duration_s:
            out.append((0, f"shorter than {self.min_duration_s:g} s", f"{v.duration:.2f} s long"))
        if min(v.width, v.height) < self.min_short_side:
            out.append(
                (1, f"smaller than {self.min_short_side} px on the short side", f"{v.width}x{v.height}")
            )
        if 0 < v.n_frames < self.min_frames:
            out.append((2, f"fewer than {self.min_frames} frames", f"{v.n_frames} frames"))
        return out


def expectation_findings(
    videos: Sequence[VideoFacts], expect: VideoExpectations | None, strict: bool = False
) -> tuple[list[str], list[str]]:
    """``(problems, warnings)`` for readable videos far from what the organisers expect: one warning per
    threshold with the count and the first names; with ``strict`` one problem per video instead."""
    if expect is None:
        return [], []
    good = [v for v in videos if v.error is None]
    problems: list[str] = []
    below: dict[int, tuple[str, list[str]]] = {}
    for v in good:
        for rule, what, fact in expect.shortfalls(v):
            problems.append(f"{v.name}: {fact}, {what} (far from what the organisers expect)")
            below.setdefault(rule, (what, []))[1].append(f"{v.name} ({fact})")
    if strict:
        return problems, []
    warnings = []
    for _rule, (what, names) in sorted(below.items()):
        more = f" and {len(names) - 3} more" if len(names) > 3 else ""
        warnings.append(
            f"{len(names)} of {len(good)} videos {what}, far from what the organisers expect "
            f"(--strict makes this a problem): {', '.join(names[:3])}{more}"
        )
    return [], warnings


# -------------------------------------------------------------------------------------------- names


@dataclass
class Expected:
    """What the test set expects: the output ``names`` (malformed cases included where the name is
    knowable) and one ``problems`` line per case it defines but cannot load."""

    names: list[str]
    problems: list[str] = field(default_factory=list)


def expected_names(cases: Any, timeline_units: str) -> Expected | None:
    """What the test set expects; ``cases`` is a test-set path, a ``TestSet``, an :class:`Expected`, a
    list of cases or of output names (None: no test set)."""
    if cases is None or isinstance(cases, Expected):
        return cases
    if isinstance(cases, (str, Path)):
        from ipvgkit.data.testsets import load_testset

        cases = load_testset(Path(cases), timeline_units=timeline_units)
    if hasattr(cases, "expected_outputs"):  # a TestSet: also names the cases its loader found malformed
        problems = [
            f"test set case {e.case_key} cannot be loaded ({e.detail}); its video cannot be checked "
            "(fix the test set: the organisers expect a video for every case)"
            for e in cases.errors
        ]
        return Expected([PurePosixPath(n).as_posix() for n in cases.expected_outputs()], problems)
    names = [c if isinstance(c, str) else c.output_name for c in cases]
    return Expected([PurePosixPath(n).as_posix() for n in names])


def _layout_of_names(names: Sequence[str]) -> str:
    return "id-prompt" if any("/" in n for n in names) else "flat"


def resolve_layout(layout: str, videos: Sequence[str], expected: Sequence[str] | None) -> str | None:
    """The layout to check against: the test set's when known, else the one most names follow."""
    if expected is not None:
        if not expected:
            raise InputError("the test set has no cases")
        want = _layout_of_names(expected)
        if layout != "auto" and layout != want:
            raise UsageError(
                f"--layout {layout} does not match the test set, whose videos are named like {expected[0]}"
            )
        return want
    if layout != "auto":
        return layout
    counts = {k: sum(1 for n in videos if rx.match(n)) for k, (rx, _) in LAYOUT_PATTERNS.items()}
    best = max(counts, key=lambda k: counts[k])
    return best if counts[best] else None


def name_findings(
    videos: Sequence[str], layout: str | None, expected: Sequence[str] | None
) -> tuple[list[str], list[str]]:
    """Layout conformity, missing and unexpected videos: ``(problems, warnings)``."""
    if expected is not None:
        return _against_testset(videos, expected), []
    if layout is None:
        if videos:
            return [
                "cannot tell the layout: no video is named idNNN/promptK.mp4 or N.mp4 (see docs/pack.md)"
            ], []
        return [], []
    rx, pattern = LAYOUT_PATTERNS[layout]
    ok = [n for n in videos if rx.match(n)]
    problems = [
        f"{n}: name does not match the {layout} layout ({pattern})" for n in videos if not rx.match(n)
    ]
    return problems, gap_warnings(ok, layout)


def _against_testset(videos: Sequence[str], expected: Sequence[str]) -> list[str]:
    exp = set(expected)
    missing = exp - set(videos)
    near = {_loose(n): n for n in missing}
    problems = []
    for n in videos:
        if n not in exp:
            guess = near.get(_loose(n))
            hint = f"; named {guess} in the test set?" if guess else ""
            problems.append(f"{n}: unexpected video (not in the test set{hint})")
    return problems + [f"{n}: missing" for n in sorted(missing)]


def _loose(name: str) -> str:
    """A name with case and leading zeros ignored (``ID01/Prompt1.MP4`` ~ ``id001/prompt1.mp4``)."""
    return re.sub(r"\d+", lambda m: str(int(m.group())), name.lower())


def gap_warnings(names: Sequence[str], layout: str) -> list[str]:
    """Without a test set, hint at likely missing videos (numbering gaps, ids with fewer prompts)."""
    hint = "pass --cases to check against the test set"
    if not names:
        return []
    if layout == "flat":
        nums = {int(n[:-4]) for n in names}
        gaps = [f"{k}.mp4" for k in range(1, max(nums) + 1) if k not in nums]
        if gaps:
            shown = ", ".join(gaps[:10]) + (f" and {len(gaps) - 10} more" if len(gaps) > 10 else "")
            return [f"numbering has gaps ({shown} absent); {hint}"]
        return []
    per_id = Counter(n.split("/")[0] for n in names)
    freq = Counter(per_id.values())
    usual = max(freq, key=lambda k: (freq[k], k))  # the commonest count; on a tie, the larger one
    return [
        f"{i}/: {k} video(s), most ids have {usual}; {hint}" for i, k in sorted(per_id.items()) if k != usual
    ]


def sorted_lines(lines: list[str]) -> list[str]:
    """Problems grouped by path, in path order (lines without a path first)."""

    def key(line: str) -> tuple[int, str]:
        head = line.split(": ", 1)[0]
        return (0, "") if " " in head else (1, head)

    return sorted(lines, key=key)
