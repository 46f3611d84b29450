"""``ipvg score compare``: finished score folders of the same test set, side by side.

:func:`run_compare` reads each folder's ``scores.jsonl`` and ``summary.json`` (``ipvg score``'s output),
checks that they scored the same cases (else an error naming the first case that differs), and writes
``compare.json`` and ``compare.html`` into the output folder:

- per metric and run: the mean over the cases with a value and its 95 % **bootstrap** interval
  (``RESAMPLES`` = 2000 resamples of the cases with replacement, numpy ``default_rng(SEED = 0)``,
  percentile interval), likewise the mean of the per-case preset totals, and each run's ``total`` of
  its summary;
- for each pair of runs and each metric (and the total): per-case wins, losses and ties (a win is a
  better value: higher, or lower for a lower-is-better metric; cases where either run has no value are
  left out) and the **paired two-sided sign test**: exact binomial, ties dropped,
  ``p = min(1, 2 * sum_{k <= min(w, l)} C(n, k) / 2^n)`` with ``n = w + l``;
- the cases where the runs disagree most (largest spread of the per-case total, else of the first
  metric), with each run's stored frames (``thumbs/``) side by side.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ipvgkit.errors import InputError, UsageError
from ipvgkit.fsutil import atomic_write_text
from ipvgkit.progress import Progress, ensure
from ipvgkit.stages.score_rows import SCORES_NAME, ScoreRow, read_rows

SUMMARY_NAME = "summary.json"
COMPARE_JSON = "compare.json"
COMPARE_HTML = "compare.html"
RESAMPLES = 2000
SEED = 0
LEVEL = 0.95
DISAGREE = 10  # cases shown where the runs disagree most
TOTAL = "total"  # the per-case preset total, compared like a metric


@dataclass
class Run:
    """One finished score folder."""

    name: str
    path: Path
    rows: list[ScoreRow]
    summary: dict

    def values(self, metric: str) -> list[float | None]:
        """Per case (in test-set order) the metric's value, or the preset total for ``TOTAL``."""
        if metric == TOTAL:
            return [r.total for r in self.rows]
        return [r.metrics.get(metric) for r in self.rows]


@dataclass
class CompareReport:
    out: Path
    runs: list[Run]
    data: dict = field(default_factory=dict)  # what compare.json holds


def load_run(path: Path) -> Run:
    """A finished score folder (InputError naming what is missing)."""
    path = Path(path)
    scores, summary = path / SCORES_NAME, path / SUMMARY_NAME
    if not scores.is_file() or not summary.is_file():
        raise InputError(f"{path}: not a finished score folder (needs {SCORES_NAME} and {SUMMARY_NAME})")
    rows = read_rows(scores)
    if not rows:
        raise InputError(f"{scores}: no rows")
    return Run(path.resolve().name, path, rows, json.loads(summary.read_text(encoding="utf-8")))


def check_same_cases(runs: list[Run]) -> None:
    """InputError naming the first case that one run has and another does not."""
    first = runs[0]
    names = [r.output_name for r in first.rows]
    for other in runs[1:]:
        theirs = [r.output_name for r in other.rows]
        if theirs == names:
            continue
        only_a = [n for n in names if n not in set(theirs)]
        only_b = [n for n in theirs if n not in set(names)]
        if only_a or only_b:
            case, has, lacks = (only_a[0], first, other) if only_a else (only_b[0], other, first)
            raise InputError(
                f"not the same test set: case {case} is in {has.name} ({has.path}) but not in "
                f"{lacks.name} ({lacks.path})"
            )
        other.rows = [dict(zip(theirs, other.rows, strict=True))[n] for n in names]  # same cases, other order


def bootstrap_mean(values: list[float], resamples: int = RESAMPLES, seed: int = SEED) -> tuple[float, float]:
    """The ``LEVEL`` percentile bootstrap interval of the mean of ``values`` (resampled with replacement)."""
    x = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(resamples, len(x)))].mean(axis=1)
    a = (1 - LEVEL) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact binomial sign test p-value (ties already dropped)."""
    n = wins + losses
    if n == 0:
        return 1.0
    k = min(wins, losses)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired(a: list[float | None], b: list[float | None], higher_is_better: bool) -> dict:
    """Wins of ``a`` over ``b``, losses, ties over the cases where both have a value; the sign test."""
    wins = losses = ties = 0
    for x, y in zip(a, b, strict=True):
        if x is None or y is None:
            continue
        d = (x - y) if higher_is_better else (y - x)
        if d > 0:
            wins += 1
        elif d < 0:
            losses += 1
        else:
            ties += 1
    return {"wins": wins, "losses": losses, "ties": ties, "p_value": sign_test(wins, losses)}


def _metric_names(runs: list[Run]) -> tuple[list[str], list[str]]:
    """(metrics every run has, notes about the others)."""
    per = [list(r.summary.get("metrics", {})) for r in runs]
    common = [m for m in per[0] if all(m in p for p in per[1:])]
    notes = []
    for r, p in zip(runs, per, strict=True):
        extra = [m for m in p if m not in common]
        if extra:
            notes.append(f"{r.name}: {', '.join(extra)} not in every run, left out")
    presets = {str(r.summary.get("preset")) for r in runs}
    if len(presets) > 1:
        notes.append(f"the runs used different presets ({', '.join(sorted(presets))}): totals differ in kind")
    return common, notes


def _higher(runs: list[Run], metric: str) -> bool:
    if metric == TOTAL:
        return True
    return bool(runs[0].summary["metrics"][metric].get("higher_is_better", True))


def _means(runs: list[Run], metrics: list[str]) -> dict:
    out: dict = {}
    for m in [*metrics, TOTAL]:
        out[m] = {}
        for r in runs:
            got = [v for v in r.values(m) if v is not None]
            lo, hi = bootstrap_mean(got) if got else (None, None)
            out[m][r.name] = {"mean": float(np.mean(got)) if got else None, "lo": lo, "hi": hi, "n": len(got)}
    return out


def _disagreements(runs: list[Run], metrics: list[str]) -> list[dict]:
    key = TOTAL if any(v is not None for r in runs for v in r.values(TOTAL)) else (metrics or [TOTAL])[0]
    found = []
    for i, row in enumerate(runs[0].rows):
        vals = {r.name: r.values(key)[i] for r in runs}
        got = [v for v in vals.values() if v is not None]
        if len(got) >= 2:
            found.append({"output_name": row.output_name, "case_id": row.case_id, "by": key,
                          "values": vals, "spread": max(got) - min(got)})  # fmt: skip
    found.sort(key=lambda d: -d["spread"])
    return found[:DISAGREE]


def compare_runs(runs: list[Run]) -> dict:
    """Everything ``compare.json`` holds (see the module docstring)."""
    metrics, notes = _metric_names(runs)
    pairs = []
    for i in range(len(runs)):
        for j in range(i + 1, len(runs)):
            for m in [*metrics, TOTAL]:
                a, b = runs[i].values(m), runs[j].values(m)
                pairs.append({"a": runs[i].name, "b": runs[j].name, "metric": m,
                              **paired(a, b, _higher(runs, m))})  # fmt: skip
    means = _means(runs, metrics)
    uneven = [m for m, per in means.items() if len({e["n"] for e in per.values()}) > 1]
    if uneven:
        notes.append(
            f"{', '.join(uneven)}: the runs have values for different numbers of cases (missing or failed "
            "videos), so their means are over different cases; wins and losses use the cases both have"
        )
    return {
        "runs": [
            {
                "name": r.name,
                "path": str(r.path.resolve()),
                "preset": r.summary.get("preset"),
                "cases": len(r.rows),
                "total": r.summary.get("total"),
            }
            for r in runs
        ],  # fmt: skip
        "metrics": metrics,
        "higher_is_better": {m: _higher(runs, m) for m in [*metrics, TOTAL]},
        "means": means,
        "pairs": pairs,
        "disagreements": _disagreements(runs, metrics),
        "bootstrap": {"resamples": RESAMPLES, "seed": SEED, "level": LEVEL, "interval": "percentile"},
        "sign_test": "paired, two-sided, exact binomial; ties dropped",
        "notes": notes,
    }


def run_compare(folders: list[Path], out: Path | None, progress: Progress | None = None) -> CompareReport:
    """Compare finished score folders; write ``compare.json`` and ``compare.html`` into ``out``."""
    from ipvgkit.stages.score_compare_html import render_compare

    progress = ensure(progress)
    if len(folders) < 2:
        raise UsageError("compare needs at least two score folders")
    if out is None:
        raise UsageError("an output folder is required (-o OUTDIR)")
    runs = [load_run(f) for f in folders]
    dup = sorted({r.name for r in runs if [x.name for x in runs].count(r.name) > 1})
    if dup:
        raise UsageError(f"two score folders are both named {dup[0]!r}: give folders with distinct names")
    check_same_cases(runs)
    progress.status("comparing")
    data = compare_runs(runs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / COMPARE_JSON, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    atomic_write_text(out / COMPARE_HTML, render_compare(data, runs))
    return CompareReport(out, runs, data)
