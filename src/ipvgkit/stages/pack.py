"""``ipvg pack``: validate a challenge submission (SPEC §2), fix its encoding, write and verify the zip.

Library API:

- :func:`check_submission` validates a folder or an existing zip and returns a :class:`PackReport`
  (``problems`` make it invalid; ``warnings`` and ``notes`` do not). It writes nothing.
- :func:`pack_submission` validates, writes ``submission/...`` into a zip atomically, reopens and
  verifies it; raises :class:`PackCheckFailed` (a :class:`~ipvgkit.errors.CheckFailed`) on problems.
- :func:`fix_encoding` re-encodes non-conforming videos into a new folder (never in place).

Every problem line starts with the file's path relative to the submission folder.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from ipvgkit.errors import CheckFailed, InputError, MediaError, UsageError
from ipvgkit.fsutil import atomic_path, is_temp_name
from ipvgkit.media.probe import VideoFacts, close_zips, probe_item
from ipvgkit.stages.pack_zip import ZipLimits, crc_check, read_zip, write_zip

Layout = Literal["auto", "id-prompt", "flat"]
ProgressFn = Callable[[str, int, int], None]  # (phase, done, total)

LAYOUT_PATTERNS = {
    "id-prompt": (re.compile(r"^id\d{3,}/prompt[1-9]\d*\.mp4$"), "idNNN/promptK.mp4"),
    "flat": (re.compile(r"^[1-9]\d*\.mp4$"), "N.mp4"),
}
STRAY_NAMES = {".ds_store", "thumbs.db", "desktop.ini", "ehthumbs.db", ".localized", "icon\r"}
STRAY_DIRS = {"__MACOSX", ".Spotlight-V100", ".Trashes", ".fseventsd", ".TemporaryItems"}
# What ``ipvg generate`` keeps in its output folder beside the videos (stages/generate.py: CONFIG_NAME,
# LOG_NAME, per-rank logs): left out of the zip with a note, so a generate folder packs as it is.
BOOKKEEPING = re.compile(r"^(generate\.yaml|generation(\.rank\d+)?\.jsonl)$")
_TEMP_SUFFIXES = (".tmp", ".temp", ".part", ".partial", ".crdownload", ".download", ".swp", ".bak", "~")
# Below this many videos, probing in-process is faster than starting worker processes.
_POOL_MIN_FILES = 12


@dataclass
class PackConfig:
    """Resolved options of ``ipvg pack`` (saved beside the zip as ``RUN.pack.yaml``)."""

    submission: Path
    output: Path | None = None
    cases: Path | None = None
    layout: Layout = "auto"
    timeline_units: str = "auto"
    strict: bool = False
    overwrite: bool = False
    fix_encoding: Path | None = None
    workers: int = 0  # 0: one per CPU
    crf: int = 18  # --fix-encoding quality (libx264)
    preset: str = "medium"
    max_entries: int = 10_000
    max_ratio: float = 100.0
    max_total_gib: float = 64.0

    def __post_init__(self) -> None:
        if self.layout not in ("auto", "id-prompt", "flat"):
            raise ValueError(f"layout must be auto, id-prompt or flat, not {self.layout!r}")
        if self.workers < 0:
            raise ValueError("workers must be >= 0 (0: one per CPU)")

    def limits(self) -> ZipLimits:
        return ZipLimits(
            max_entries=self.max_entries,
            max_ratio=self.max_ratio,
            max_total_bytes=int(self.max_total_gib * 2**30),
        )


def _spread(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


@dataclass
class PackReport:
    """Outcome of a check or a pack. ``problems`` empty means the submission is valid."""

    source: str
    kind: Literal["folder", "zip"]
    layout: str | None = None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    videos: list[VideoFacts] = field(default_factory=list)
    expected: int | None = None  # number of videos the test set expects, when --cases was given
    zip_path: str | None = None
    config_path: str | None = None
    fix: dict | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def good_videos(self) -> list[VideoFacts]:
        return [v for v in self.videos if v.error is None]

    def summary(self) -> dict[str, Any]:
        """Count, total size and the min/median/max of duration, fps, width, height and frames."""
        good = self.good_videos()
        res = Counter(f"{v.width}x{v.height}" for v in good)
        return {
            "videos": len(self.videos),
            "expected": self.expected,
            "total_bytes": sum(v.size_bytes for v in self.videos),
            "duration_s": _spread([v.duration for v in good]),
            "fps": _spread([v.fps for v in good]),
            "width": _spread([v.width for v in good]),
            "height": _spread([v.height for v in good]),
            "frames": _spread([v.n_frames for v in good]),
            "resolutions": dict(res.most_common()),
            "codecs": dict(Counter(v.codec for v in good if v.codec).most_common()),
            "pix_fmts": dict(Counter(v.pix_fmt for v in good if v.pix_fmt).most_common()),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "source": self.source,
            "kind": self.kind,
            "layout": self.layout,
            "zip": self.zip_path,
            "config": self.config_path,
            "summary": self.summary(),
            "problems": list(self.problems),
            "warnings": list(self.warnings),
            "notes": list(self.notes),
            "fix": self.fix,
            "videos": [v.to_dict() for v in self.videos],
        }


class PackCheckFailed(CheckFailed):
    """A submission has problems; ``report`` holds everything that was found."""

    def __init__(self, message: str, report: PackReport):
        self.report = report
        super().__init__(message, report.problems)


# ---------------------------------------------------------------------------------------------- files


def is_stray(rel: str) -> bool:
    """OS litter that never belongs in a submission (.DS_Store, __MACOSX, Thumbs.db, ._* ...)."""
    parts = PurePosixPath(rel).parts
    name = parts[-1]
    return any(p in STRAY_DIRS for p in parts[:-1]) or name.lower() in STRAY_NAMES or name.startswith("._")


def _is_temp(name: str) -> bool:
    low = name.lower()
    return is_temp_name(name) or low.endswith(_TEMP_SUFFIXES) or name.startswith(("~$", ".#", ".~"))


@dataclass
class _Item:
    rel: str
    path: str  # the file, or the zip holding it
    entry: str | None = None  # zip entry name


def _walk_folder(root: Path) -> tuple[list[_Item], list[str], list[str]]:
    """Files of a submission folder: ``(items, problems, notes)``; symlinks are problems, never followed."""
    items: list[_Item] = []
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
                items.append(_Item(rel, str(full)))
    return items, problems, notes


def _zip_items(path: Path, limits: ZipLimits) -> tuple[list[_Item], list[str]]:
    members, problems = read_zip(path, limits)
    return [_Item(m.rel, str(path), m.entry) for m in members], problems


# --------------------------------------------------------------------------------------------- probing


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def probe_items(
    items: Sequence[tuple],
    workers: int = 0,
    progress: ProgressFn | None = None,
    phase: str = "checking videos",
) -> list[VideoFacts]:
    """Probe many videos (``items`` as for :func:`probe_item`), in a process pool sized to the CPU
    count (in-process for a handful), in the order given."""
    n = len(items)
    workers = workers or default_workers()
    results: list[VideoFacts] = []
    if progress:
        progress(phase, 0, n)
    if workers <= 1 or n < _POOL_MIN_FILES:
        try:
            for it in items:
                results.append(probe_item(it))
                if progress:
                    progress(phase, len(results), n)
        finally:
            close_zips()
        return results
    from concurrent.futures import ProcessPoolExecutor

    chunk = max(1, min(16, n // (workers * 8)))
    from ipvgkit.procs import pool_context, spawnable_main

    with ProcessPoolExecutor(max_workers=min(workers, n), mp_context=pool_context()) as ex:
        with spawnable_main():
            mapped = ex.map(probe_item, items, chunksize=chunk)
        for facts in mapped:
            results.append(facts)
            if progress:
                progress(phase, len(results), n)
    return results


# ---------------------------------------------------------------------------------------------- rules


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


def _expected_names(cases: Any, timeline_units: str) -> list[str] | None:
    """Output names the test set expects; ``cases`` is a test-set path, a ``TestSet``, a list of cases
    or of output names."""
    if cases is None:
        return None
    if isinstance(cases, (str, Path)):
        from ipvgkit.data.testsets import load_testset

        cases = load_testset(Path(cases), timeline_units=timeline_units)
    if hasattr(cases, "expected_outputs"):  # a TestSet: also names the cases its loader found malformed
        return [PurePosixPath(n).as_posix() for n in cases.expected_outputs()]
    names = [c if isinstance(c, str) else c.output_name for c in cases]
    return [PurePosixPath(n).as_posix() for n in names]


def _layout_of_names(names: Sequence[str]) -> str:
    return "id-prompt" if any("/" in n for n in names) else "flat"


def _resolve_layout(layout: str, videos: Sequence[str], expected: Sequence[str] | None) -> str | None:
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


def _name_findings(
    videos: Sequence[str], layout: str | None, expected: Sequence[str] | None
) -> tuple[list[str], list[str]]:
    """Layout conformity, missing and unexpected videos: ``(problems, warnings)``."""
    problems: list[str] = []
    warnings: list[str] = []
    if expected is not None:
        exp = set(expected)
        have = set(videos)
        missing = exp - have
        near = {_loose(n): n for n in missing}
        for n in videos:
            if n not in exp:
                guess = near.get(_loose(n))
                hint = f"; named {guess} in the test set?" if guess else ""
                problems.append(f"{n}: unexpected video (not in the test set{hint})")
        problems += [f"{n}: missing" for n in sorted(missing)]
        return problems, warnings
    if layout is None:
        if videos:
            problems.append(
                "cannot tell the layout: no video is named idNNN/promptK.mp4 or N.mp4 (see docs/pack.md)"
            )
        return problems, warnings
    rx, pattern = LAYOUT_PATTERNS[layout]
    ok = [n for n in videos if rx.match(n)]
    problems += [
        f"{n}: name does not match the {layout} layout ({pattern})" for n in videos if not rx.match(n)
    ]
    warnings += _gap_warnings(ok, layout)
    return problems, warnings


def _loose(name: str) -> str:
    """A name with case and leading zeros ignored (``ID01/Prompt1.MP4`` ~ ``id001/prompt1.mp4``)."""
    return re.sub(r"\d+", lambda m: str(int(m.group())), name.lower())


def _gap_warnings(names: Sequence[str], layout: str) -> list[str]:
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


def _evaluate(
    items: list[_Item],
    kind: Literal["folder", "zip"],
    report: PackReport,
    expected: list[str] | None,
    layout: str,
    strict: bool,
    workers: int,
    progress: ProgressFn | None,
) -> PackReport:
    """Apply every SPEC §2 rule to the listed files and fill ``report``."""
    videos: list[_Item] = []
    for it in items:
        if is_stray(it.rel):
            if kind == "folder":
                report.notes.append(f"{it.rel}: OS metadata file, left out of the zip")
            else:
                report.problems.append(f"{it.rel}: OS metadata file in the zip (remove it)")
        elif BOOKKEEPING.match(it.rel):
            if kind == "folder":
                report.notes.append(f"{it.rel}: ipvg generate's bookkeeping file, left out of the zip")
            else:
                report.problems.append(f"{it.rel}: ipvg generate's bookkeeping file in the zip (remove it)")
        elif _is_temp(PurePosixPath(it.rel).name):
            report.problems.append(f"{it.rel}: unexpected file (a temporary or partial file)")
        elif not it.rel.endswith(".mp4"):
            report.problems.append(f"{it.rel}: unexpected file (only .mp4 videos belong in a submission)")
        else:
            videos.append(it)
    names = [v.rel for v in videos]
    report.layout = _resolve_layout(layout, names, expected)
    report.expected = len(set(expected)) if expected is not None else None
    p, w = _name_findings(names, report.layout, expected)
    report.problems += p
    report.warnings += w
    if not videos and not report.problems:
        report.problems.append("no videos found")
    report.videos = probe_items([(v.rel, v.path, v.entry) for v in videos], workers, progress)
    for f in report.videos:
        p, w = video_findings(f, strict)
        report.problems += p
        report.warnings += w
    report.problems = _sorted_lines(report.problems)
    report.warnings = _sorted_lines(report.warnings)
    return report


def _sorted_lines(lines: list[str]) -> list[str]:
    """Problems grouped by path, in path order (lines without a path first)."""

    def key(line: str) -> tuple[int, str]:
        head = line.split(": ", 1)[0]
        return (0, "") if " " in head else (1, head)

    return sorted(lines, key=key)


# ------------------------------------------------------------------------------------------------ API


def check_submission(
    path: Path,
    cases: Any = None,
    layout: Layout = "auto",
    strict: bool = False,
    workers: int = 0,
    timeline_units: str = "auto",
    limits: ZipLimits | None = None,
    progress: ProgressFn | None = None,
) -> PackReport:
    """Validate a submission folder or zip (SPEC §2) and return what was found; writes nothing.

    ``cases`` (a test-set path, a list of :class:`~ipvgkit.data.cases.Case` or of output names) makes
    every expected video required and every other video a problem.
    """
    path = Path(path)
    if layout not in ("auto", "id-prompt", "flat"):
        raise UsageError(f"--layout must be auto, id-prompt or flat, not {layout!r}")
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    expected = _expected_names(cases, timeline_units)
    limits = limits or ZipLimits()
    if path.is_dir():
        items, problems, notes = _walk_folder(path)
        report = PackReport(source=str(path), kind="folder", problems=problems, notes=notes)
        return _evaluate(items, "folder", report, expected, layout, strict, workers, progress)
    items, problems = _zip_items(path, limits)
    report = PackReport(source=str(path), kind="zip", problems=problems)
    if problems and not items:  # refused (hostile or unreadable): nothing is probed
        return report
    bad = crc_check(path)
    if bad:
        report.problems.append(bad)
    return _evaluate(items, "zip", report, expected, layout, strict, workers, progress)


def _inside(child: Path, parent: Path) -> bool:
    child, parent = child.resolve(), parent.resolve()
    return child == parent or parent in child.parents


def _verify_zip(zip_path: Path, report: PackReport, workers: int, progress: ProgressFn | None) -> list[str]:
    """Reopen a written zip: CRC of every entry, then probe every video entry and compare."""
    bad = crc_check(zip_path)
    if bad:
        return [f"{bad} after writing (disk full or failing?)"]
    items, problems = _zip_items(zip_path, ZipLimits(max_ratio=float("inf"), max_total_bytes=1 << 62))
    if problems:
        return problems
    want = {v.name: v for v in report.videos}
    got = {it.rel for it in items}
    problems = [f"{n}: not in the written zip" for n in sorted(set(want) - got)]
    # The CRC check above proves the stored bytes are the ones checked (first frame decoded) in the
    # folder, so the entries are only probed (structure, stream facts, index), not decoded again.
    facts = probe_items(
        [(it.rel, it.path, it.entry, False) for it in items], workers, progress, "verifying zip"
    )
    for f in facts:
        ref = want.get(f.name)
        if f.error:
            problems.append(f"{f.name}: in the written zip: {f.error}")
        elif ref is None:
            problems.append(f"{f.name}: in the written zip but not in the submission")
        elif (f.codec, f.width, f.height, f.n_frames, f.size_bytes) != (
            ref.codec,
            ref.width,
            ref.height,
            ref.n_frames,
            ref.size_bytes,
        ):
            problems.append(f"{f.name}: differs between the folder and the written zip")
    return problems


def pack_submission(cfg: PackConfig, progress: ProgressFn | None = None) -> PackReport:
    """Validate ``cfg.submission`` and write ``cfg.output`` (a zip with top folder ``submission/``).

    With ``cfg.fix_encoding`` the videos are first fixed into that folder, which is then packed.
    Raises :class:`PackCheckFailed` (no zip written) when any problem is found. The zip is written to
    a temp file, verified (CRC + probe of every entry) and only then renamed onto ``cfg.output``;
    the resolved config is saved beside it as ``<name>.pack.yaml``.
    """
    from ipvgkit.config import save

    src = Path(cfg.submission)
    if cfg.output is None:
        raise UsageError("pack needs an output zip: -o RUN.zip (or use --check to only validate)")
    out = Path(cfg.output)
    if out.suffix.lower() != ".zip":
        raise UsageError(f"{out}: the output must end in .zip")
    if not src.exists():
        raise InputError(f"{src}: no such folder")
    if not src.is_dir():
        raise UsageError(f"{src}: not a folder (to validate an existing zip use `ipvg pack --check {src}`)")
    if _inside(out, src) or (cfg.fix_encoding is not None and _inside(out, Path(cfg.fix_encoding))):
        raise UsageError(f"{out}: the zip must not be written inside the submission folder")
    if out.exists() and not cfg.overwrite:
        raise UsageError(f"{out} exists; pass --overwrite to replace it")
    expected = _expected_names(cfg.cases, cfg.timeline_units)
    fix_info = None
    if cfg.fix_encoding is not None:
        fix_info = fix_encoding(
            src, Path(cfg.fix_encoding), overwrite=cfg.overwrite, workers=cfg.workers, crf=cfg.crf,
            preset=cfg.preset, progress=progress,
        )  # fmt: skip
        src = Path(cfg.fix_encoding)
    report = check_submission(
        src, expected, cfg.layout, cfg.strict, cfg.workers, cfg.timeline_units, cfg.limits(), progress
    )
    if fix_info:
        report.fix = fix_info.to_dict()
        report.problems = _sorted_lines(report.problems + fix_info.problems)
    if report.problems:
        raise PackCheckFailed(f"{len(report.problems)} problem(s) in {src}; no zip written", report)
    files = [(v.name, src / v.name) for v in report.videos]
    total = len(files)
    done = 0

    def on_file(_rel: str) -> None:
        nonlocal done
        done += 1
        if progress:
            progress("writing zip", done, total)

    with atomic_path(out, suffix=".zip") as tmp:
        write_zip(tmp, files, on_file)
        problems = _verify_zip(tmp, report, cfg.workers, progress)
        if problems:
            report.problems = problems
            raise PackCheckFailed(f"the written zip failed verification; {out} not written", report)
    report.zip_path = str(out)
    report.config_path = str(save(cfg, out.with_suffix(".pack.yaml")))
    return report


# ----------------------------------------------------------------------------------------- fix encoding


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


def fix_encoding(
    src: Path,
    dst: Path,
    overwrite: bool = False,
    workers: int = 0,
    crf: int = 18,
    preset: str = "medium",
    progress: ProgressFn | None = None,
) -> FixReport:
    """Write a fixed copy of submission ``src`` into the new folder ``dst`` (``src`` is never changed).

    Conforming videos are hardlinked (or copied); others are decoded and re-encoded to H.264/yuv420p
    at their own fps (odd sizes padded to even). Files that cannot be decoded (empty, truncated) and
    non-video files are copied unchanged so that the following check reports them; OS metadata files
    are left out. Files already in ``dst`` are kept unless ``overwrite`` (rerun to resume).
    """
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise InputError(f"{src}: no such folder")
    if _inside(dst, src):
        raise UsageError(f"--fix-encoding {dst}: must be a new folder outside the submission folder {src}")
    if _inside(src, dst):
        raise UsageError(f"--fix-encoding {dst}: must not contain the submission folder {src}")
    items, problems, _notes = _walk_folder(src)  # symlinks are not copied: they stay problems
    items = [it for it in items if not is_stray(it.rel)]
    todo = [it for it in items if overwrite or not _up_to_date(Path(it.path), dst / it.rel)]
    done = {it.rel for it in todo}
    result = FixReport(kept=sorted(it.rel for it in items if it.rel not in done), problems=problems)
    if dst.is_dir():  # leftovers of an earlier run whose source is gone would be packed silently
        wanted = {it.rel for it in items}
        old, _p, _n = _walk_folder(dst)
        result.problems += [
            f"{it.rel}: in {dst} but no longer in the submission folder (delete it, or use a new DIR2)"
            for it in old
            if it.rel not in wanted and not is_stray(it.rel) and not BOOKKEEPING.match(it.rel)
        ]
    vids = [it for it in todo if it.rel.lower().endswith(".mp4")]
    facts = {f.name: f for f in probe_items([(v.rel, v.path, None) for v in vids], workers, progress)}
    phase = "fixing encoding"
    for i, it in enumerate(todo, 1):
        target = dst / it.rel
        target.parent.mkdir(parents=True, exist_ok=True)
        f = facts.get(it.rel)
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
        if progress:
            progress(phase, i, len(todo))
    return result
