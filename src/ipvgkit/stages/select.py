"""Best-of-N: score several candidate submissions and copy, per case, the candidate with the best total.

:func:`run_selection` scores each candidate folder into ``OUT/<candidate-name>/`` (with the same
metrics, resumable like ``ipvg score``), then for every case copies the video of the candidate with the
highest preset total (ties: the first candidate given) into ``best_dir`` (temp file + rename) and writes
``OUT/selection.json`` (beside the candidates' score folders, not inside ``best_dir``: ``best_dir`` holds
only videos, so ``ipvg pack best_dir`` accepts it as it is). An existing different file in ``best_dir`` is only replaced with
``overwrite``; an identical one is left as it is.
"""

from __future__ import annotations

import dataclasses
import filecmp
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ipvgkit.errors import UsageError
from ipvgkit.fsutil import atomic_path, atomic_write_text
from ipvgkit.progress import Progress, ensure
from ipvgkit.stages import bookkeeping
from ipvgkit.stages.score import ScoreConfig, ScoreReport, run_scoring

SELECTION_NAME = bookkeeping.SELECTION


@dataclass
class SelectionReport:
    """Per case the chosen candidate (or None) and every candidate's total."""

    best_dir: Path
    candidates: list[str]
    selection: Path  # where selection.json was written (the score output folder)
    choices: dict[str, dict] = field(default_factory=dict)  # output_name -> {"chosen", "totals", "case_id"}
    reports: dict[str, ScoreReport] = field(default_factory=dict)
    copied: int = 0
    kept: int = 0
    unresolved: list[str] = field(default_factory=list)  # cases no candidate could be scored for

    @property
    def ok(self) -> bool:
        return not self.unresolved


def candidate_names(paths: list[Path]) -> list[str]:
    """Folder names of the candidates (UsageError when two share a name)."""
    names = [Path(p).resolve().name for p in paths]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UsageError(f"two candidates are both named {dup[0]!r}: give folders with distinct names")
    return names


def pick(totals: list[float | None]) -> int | None:
    """Index of the highest total; ties go to the first; None when no candidate has a total."""
    best, best_i = None, None
    for i, t in enumerate(totals):
        if t is not None and (best is None or t > best):
            best, best_i = t, i
    return best_i


def copy_atomic(src: Path, dest: Path, overwrite: bool) -> bool:
    """Copy ``src`` to ``dest`` (temp + rename). False when ``dest`` already holds the same bytes.

    A different existing ``dest`` raises :class:`UsageError` unless ``overwrite``.
    """
    if dest.exists():
        if filecmp.cmp(src, dest, shallow=False):
            return False
        if not overwrite:
            raise UsageError(
                f"{dest} exists and differs from the selected video (use --overwrite to replace it)"
            )
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
    return True


def run_selection(
    base: ScoreConfig, candidates: list[Path], best_dir: Path, progress: Progress | None = None
) -> SelectionReport:
    """Score each candidate (``base`` with its submission/out replaced) and fill ``best_dir``.

    ``progress`` gets one ``score <candidate>`` phase per candidate. ``best_dir`` receives only the
    chosen videos, so that ``ipvg pack best_dir`` takes it as it is; the record of the choice is
    ``base.out/selection.json``.
    """
    progress = ensure(progress)
    if len(candidates) < 1:
        raise UsageError("--select needs at least one candidate submission folder")
    if base.out is None:
        raise UsageError("an output folder is required (-o OUTDIR)")
    names = candidate_names(candidates)
    best_dir = Path(best_dir)
    for c in candidates:
        if Path(c).resolve() == best_dir.resolve():
            raise UsageError(f"--select folder {best_dir} is also a candidate")
    report = SelectionReport(best_dir=best_dir, candidates=names, selection=Path(base.out) / SELECTION_NAME)
    for name, folder in zip(names, candidates, strict=True):
        cfg = dataclasses.replace(base, submission=Path(folder), out=Path(base.out) / name)
        report.reports[name] = run_scoring(cfg, progress=_Renamed(progress, f"score {name}"))
    plan = _choose(report, names, candidates)
    _copy(plan, best_dir, base.overwrite, report)
    first = report.reports[names[0]]
    data = {
        "preset": first.preset,
        "metrics": first.metric_names,
        "best_dir": str(best_dir.resolve()),
        "candidates": {n: str(Path(c).resolve()) for n, c in zip(names, candidates, strict=True)},
        "cases": report.choices,
        "unresolved": report.unresolved,
    }
    atomic_write_text(report.selection, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    _drop_old_selection(best_dir, progress)
    return report


def _drop_old_selection(best_dir: Path, progress: Progress) -> None:
    """Remove the ``selection.json`` that earlier versions wrote into ``best_dir`` (pack refuses it)."""
    old = best_dir / SELECTION_NAME
    try:
        data = json.loads(old.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if isinstance(data, dict) and {"candidates", "cases"} <= set(data):
        old.unlink()
        progress.log(
            f"removed {old} (written by an earlier ipvg score --select; the record is now beside it)"
        )


class _Renamed(Progress):
    """Passes a stage's progress on with its ``score`` phase renamed (one bar per candidate)."""

    def __init__(self, inner: Progress, name: str) -> None:
        self.inner, self.name = inner, name

    def phase(self, name: str, total: int | None = None) -> None:
        self.inner.phase(self.name if name == "score" else f"{self.name}: {name}", total)

    def advance(self, n: int = 1) -> None:
        self.inner.advance(n)

    def status(self, text: str) -> None:
        self.inner.status(text)

    def log(self, msg: str) -> None:
        self.inner.log(msg)


def _choose(report: SelectionReport, names: list[str], candidates: list[Path]) -> list[tuple[Path, Path]]:
    """Per case the best candidate (into ``report.choices``); the (source, destination) copies."""
    per_cand = {n: {r.output_name: r for r in rep.rows} for n, rep in report.reports.items()}
    plan: list[tuple[Path, Path]] = []
    for row in report.reports[names[0]].rows:
        out_name = row.output_name
        totals = [getattr(per_cand[n].get(out_name), "total", None) for n in names]
        i = pick(totals)
        report.choices[out_name] = {
            "case_id": row.case_id,
            "chosen": names[i] if i is not None else None,
            "totals": dict(zip(names, totals, strict=True)),
        }
        if i is None:
            report.unresolved.append(out_name)
            continue
        plan.append((Path(candidates[i]) / out_name, report.best_dir / out_name))
    return plan


def _copy(plan: list[tuple[Path, Path]], best_dir: Path, overwrite: bool, report: SelectionReport) -> None:
    if not overwrite:  # refuse before copying anything
        clash = [d for s, d in plan if d.exists() and not filecmp.cmp(s, d, shallow=False)]
        if clash:
            raise UsageError(
                f"{len(clash)} file(s) in {best_dir} differ from the selection, e.g. {clash[0]} "
                "(use --overwrite to replace them)"
            )
    for src, dest in plan:
        if copy_atomic(src, dest, overwrite):
            report.copied += 1
        else:
            report.kept += 1
