"""``ipvg pack``: validate a challenge submission (SPEC §2), fix its encoding, write and verify the zip.

Library API:

- :func:`check_submission` validates a folder or an existing zip and returns a :class:`PackReport`
  (``problems`` make it invalid; ``warnings`` and ``notes`` do not). It writes nothing.
- :func:`pack_submission` validates, writes ``submission/...`` into a zip atomically, reopens and
  verifies it; raises :class:`PackCheckFailed` (a :class:`~ipvgkit.errors.CheckFailed`) on problems.
- :func:`fix_encoding` re-encodes non-conforming videos into a new folder (never in place).

Every problem line starts with the file's path relative to the submission folder. The pieces:
:mod:`~ipvgkit.stages.pack_walk` (folders, zips, probing), :mod:`~ipvgkit.stages.pack_rules` (the
rules), :mod:`~ipvgkit.stages.pack_fix` (``--fix-encoding``), :mod:`~ipvgkit.stages.pack_zip`.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ipvgkit.errors import CheckFailed, InputError, UsageError
from ipvgkit.fsutil import atomic_path, is_inside
from ipvgkit.media.probe import VideoFacts
from ipvgkit.progress import Progress, ensure
from ipvgkit.stages import pack_rules as rules
from ipvgkit.stages.pack_fix import FixReport, fix_encoding
from ipvgkit.stages.pack_rules import LAYOUTS, Expected, Layout, VideoExpectations
from ipvgkit.stages.pack_walk import Item, probe_items, walk_folder, zip_items
from ipvgkit.stages.pack_zip import ZipLimits, crc_check, write_zip

__all__ = [
    "FixReport",
    "Layout",
    "PackCheckFailed",
    "PackConfig",
    "PackReport",
    "VideoExpectations",
    "check_config",
    "check_submission",
    "fix_encoding",
    "pack_submission",
    "probe_items",
]


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
    expect: VideoExpectations = field(default_factory=VideoExpectations)

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, not {self.layout!r}")
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


# --------------------------------------------------------------------------------------------- check


def _evaluate(
    items: list[Item],
    report: PackReport,
    expected: Expected | None,
    opts: dict[str, Any],
    progress: Progress | None,
) -> PackReport:
    """Apply every SPEC §2 rule to the listed files and fill ``report`` (``opts``: layout, strict,
    workers, expect as given to :func:`check_submission`)."""
    videos, problems, notes = rules.classify(items, report.kind)
    report.problems += problems
    report.notes += notes
    names = [v.rel for v in videos]
    want = expected.names if expected is not None else None
    report.layout = rules.resolve_layout(opts["layout"], names, want)
    report.expected = len(set(want)) if want is not None else None
    if expected is not None:
        report.problems += expected.problems
    p, w = rules.name_findings(names, report.layout, want)
    report.problems += p
    report.warnings += w
    if not videos and not report.problems:
        report.problems.append("no videos found")
    report.videos = probe_items([(v.rel, v.path, v.entry) for v in videos], opts["workers"], progress)
    for f in report.videos:
        p, w = rules.video_findings(f, opts["strict"])
        report.problems += p
        report.warnings += w
    p, w = rules.expectation_findings(report.videos, opts["expect"], opts["strict"])
    report.problems += p
    report.warnings += w
    report.problems = rules.sorted_lines(report.problems)
    report.warnings = rules.sorted_lines(report.warnings)
    return report


def check_submission(
    path: Path,
    cases: Any = None,
    layout: Layout = "auto",
    strict: bool = False,
    workers: int = 0,
    timeline_units: str = "auto",
    limits: ZipLimits | None = None,
    progress: Progress | None = None,
    expect: VideoExpectations | None = VideoExpectations(),  # noqa: B008 - frozen
) -> PackReport:
    """Validate a submission folder or zip (SPEC §2) and return what was found; writes nothing.

    ``cases`` (a test-set path, a list of :class:`~ipvgkit.data.cases.Case` or of output names) makes
    every expected video required and every other video a problem; a case the test set defines but
    cannot load is a problem. ``expect`` (None: off) flags videos far from what the organisers expect.
    """
    path = Path(path)
    rules.check_layout(layout)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    expected = rules.expected_names(cases, timeline_units)
    opts = {"layout": layout, "strict": strict, "workers": workers, "expect": expect}
    if path.is_dir():
        items, problems, notes = walk_folder(path)
        report = PackReport(source=str(path), kind="folder", problems=problems, notes=notes)
        return _evaluate(items, report, expected, opts, progress)
    items, problems = zip_items(path, limits or ZipLimits())
    report = PackReport(source=str(path), kind="zip", problems=problems)
    if problems and not items:  # refused (hostile or unreadable): nothing is probed
        return report
    bad = crc_check(path)
    if bad:
        report.problems.append(bad)
    return _evaluate(items, report, expected, opts, progress)


def check_config(cfg: PackConfig, progress: Progress | None = None, cases: Any = None) -> PackReport:
    """:func:`check_submission` of ``cfg.submission`` with the options of ``cfg`` (``cases``, when
    given, replaces ``cfg.cases``: the names already loaded)."""
    return check_submission(
        cfg.submission, cfg.cases if cases is None else cases, cfg.layout, cfg.strict, cfg.workers,
        cfg.timeline_units, cfg.limits(), progress, cfg.expect,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------- pack


def _verify_zip(zip_path: Path, report: PackReport, workers: int, progress: Progress | None) -> list[str]:
    """Reopen a written zip: CRC of every entry, then probe every video entry and compare."""
    bad = crc_check(zip_path)
    if bad:
        return [f"{bad} after writing (disk full or failing?)"]
    items, problems = zip_items(zip_path, ZipLimits(max_ratio=float("inf"), max_total_bytes=1 << 62))
    if problems:
        return problems
    want = {v.name: v for v in report.videos}
    problems = [f"{n}: not in the written zip" for n in sorted(set(want) - {it.rel for it in items})]
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


def _check_pack_paths(cfg: PackConfig) -> tuple[Path, Path]:
    """``(submission, zip)`` of ``cfg``, or the usage/input error that stops the pack before any work."""
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
    if is_inside(out, src) or (cfg.fix_encoding is not None and is_inside(out, Path(cfg.fix_encoding))):
        raise UsageError(f"{out}: the zip must not be written inside the submission folder")
    if out.exists() and not cfg.overwrite:
        raise UsageError(f"{out} exists; pass --overwrite to replace it")
    return src, out


def _write_verified(out: Path, src: Path, report: PackReport, workers: int, progress: Progress) -> None:
    """Write the zip to a temp file, verify it, and only then rename it onto ``out``."""
    files = [(v.name, src / v.name) for v in report.videos]
    progress.phase("writing zip", len(files))
    with atomic_path(out, suffix=".zip") as tmp:
        write_zip(tmp, files, lambda _rel: progress.advance())
        problems = _verify_zip(tmp, report, workers, progress)
        if problems:
            report.problems = problems
            raise PackCheckFailed(f"the written zip failed verification; {out} not written", report)


def pack_submission(cfg: PackConfig, progress: Progress | None = None) -> PackReport:
    """Validate ``cfg.submission`` and write ``cfg.output`` (a zip with top folder ``submission/``).

    With ``cfg.fix_encoding`` the videos are first fixed into that folder, which is then packed.
    Raises :class:`PackCheckFailed` (no zip written) when any problem is found. The zip is written to
    a temp file, verified (CRC + probe of every entry) and only then renamed onto ``cfg.output``;
    the resolved config is saved beside it as ``<name>.pack.yaml``.
    """
    from dataclasses import replace

    from ipvgkit.config import save

    progress = ensure(progress)
    src, out = _check_pack_paths(cfg)
    expected = rules.expected_names(cfg.cases, cfg.timeline_units)
    fix_info = None
    if cfg.fix_encoding is not None:
        fix_info = fix_encoding(
            src, Path(cfg.fix_encoding), overwrite=cfg.overwrite, workers=cfg.workers, crf=cfg.crf,
            preset=cfg.preset, progress=progress,
        )  # fmt: skip
        src = Path(cfg.fix_encoding)
    report = check_config(replace(cfg, submission=src), progress, cases=expected)
    if fix_info:
        report.fix = fix_info.to_dict()
        report.problems = rules.sorted_lines(report.problems + fix_info.problems)
    if report.problems:
        raise PackCheckFailed(f"{len(report.problems)} problem(s) in {src}; no zip written", report)
    _write_verified(out, src, report, cfg.workers, progress)
    report.zip_path = str(out)
    report.config_path = str(save(cfg, out.with_suffix(".pack.yaml")))
    return report
