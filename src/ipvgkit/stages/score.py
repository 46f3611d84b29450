"""``ipvg score``: score a submission folder against a test set in one pass per video.

:func:`run_scoring` resolves the metrics (a preset or a list), checks that every model file they need
exists (before any video is read), loads the models once, then for each video: probes it, decodes the
union of the frames all metrics need ONCE (:class:`~ipvgkit.metrics.base.VideoSample`), and runs every
metric on it; metrics batch their model calls over several videos (``video_batch``). Outputs, in the
output folder:

- ``scores.jsonl``: one line per case (``case_id``, ``output_name``, ``metrics``, ``extra``, ``errors``,
  ``total``, the video's size and mtime and the metric signature used for resuming);
- ``summary.json``: per-metric means and counts, the preset's weighted total, run-level metrics;
- ``thumbs/<output_name>.json``: a few frames of each video, kept while it was scored;
- ``report.html``: a self-contained report (see :mod:`ipvgkit.stages.score_report`);
- ``score.yaml``: the resolved config.

Resuming: a case whose video is unchanged (size + mtime) and was scored with the same metric signature
and without failures is reused; ``overwrite`` recomputes everything.

The work is split along its seams: metric setup (:mod:`.score_setup`), the execution engine
(:mod:`.score_engine`), result rows, thumbnails and resuming (:mod:`.score_rows`), the summary
(:mod:`.score_summary`); this module holds the config and the orchestration.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ipvgkit.data.cases import Case
from ipvgkit.data.timeline import UNITS_CHOICES, UnitsChoice
from ipvgkit.errors import InputError, UsageError
from ipvgkit.fsutil import atomic_write_text
from ipvgkit.metrics.base import Metric, MetricContext
from ipvgkit.progress import Progress, ensure
from ipvgkit.stages.score_engine import (
    ChunkResult,
    Work,
    open_sample,
    parallel_processes,
    score_in_line,
    score_in_processes,
)
from ipvgkit.stages.score_rows import (
    MISSING_VIDEO,
    PARTIAL_NAME,
    SCORES_NAME,
    ScoreRow,
    drop_thumbs,
    dumps,
    missing_row,
    previous_rows,
    reusable,
    write_rows,
    write_thumbs,
)
from ipvgkit.stages.score_setup import (
    DEFAULT_PRESET,
    build_metrics,
    check_weights,
    resolve_metric_names,
    signature,
)
from ipvgkit.stages.score_summary import add_totals, finalize, summarise

CONFIG_NAME = "score.yaml"
SUMMARY_NAME = "summary.json"
REPORT_NAME = "report.html"


@dataclass
class ScoreConfig:
    """Everything ``ipvg score`` needs; saved as ``score.yaml`` in the output folder.

    Give either ``preset`` or ``metrics`` (both empty: the ``consisid`` preset). ``video_batch`` is how
    many videos share one batched model call; ``batch_size`` is the frames per model forward pass.
    """

    submission: Path | None = None
    cases: Path | None = None
    out: Path | None = None
    preset: str | None = None
    metrics: list[str] = field(default_factory=list)
    models_dir: Path | None = None
    device: str = "cpu"
    batch_size: int = 16
    video_batch: int = 4
    workers: int = 0  # threads for CPU work such as optical flow; 0 = the CPU count (at most 8)
    processes: int = 0  # CPU scoring processes over video chunks; 0 = automatic (see parallel_processes)
    bgr_quirk: bool = False
    timeline_units: UnitsChoice = UnitsChoice.auto
    overwrite: bool = False
    report: bool = True

    def __post_init__(self) -> None:
        if self.preset and self.metrics:
            raise UsageError("give either a preset or a metric list, not both")
        if self.batch_size < 1 or self.video_batch < 1:
            raise UsageError("batch_size and video_batch must be at least 1")
        if self.workers < 0:
            raise UsageError("workers must be 0 (automatic) or more")
        if self.processes < 0:
            raise UsageError("processes must be 0 (automatic) or more")
        if self.timeline_units not in UNITS_CHOICES:
            raise UsageError(
                f"timeline_units must be {', '.join(UNITS_CHOICES)}, got {self.timeline_units!r}"
            )


@dataclass
class ScoreReport:
    """What :func:`run_scoring` did: the rows of ``scores.jsonl``, ``summary.json`` and the counts."""

    out: Path
    preset: str | None
    metric_names: list[str]
    rows: list[ScoreRow]
    summary: dict
    scored: int = 0
    reused: int = 0
    missing: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # "output_name: metric: message"
    case_errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No missing video, no failed metric, no malformed case."""
        return not (self.missing or self.failed or self.case_errors)

    def problems(self) -> list[str]:
        out = [f"{name}: {MISSING_VIDEO}" for name in self.missing]
        return out + self.failed + self.case_errors

    def totals(self) -> dict[str, float | None]:
        """Per output name, the preset's weighted total (None when not computable)."""
        return {r.output_name: r.total for r in self.rows}


def load_score_cases(cfg: ScoreConfig) -> tuple[list[Case], list[str]]:
    """The test set's valid cases and one message per malformed case."""
    from ipvgkit.data.testsets import load_testset

    if cfg.cases is None:
        raise UsageError("--cases is required (an id/prompt folder or an eval.json)")
    ts = load_testset(cfg.cases, timeline_units=cfg.timeline_units)
    return list(ts.cases), [str(e) for e in ts.errors]


@dataclass
class _Plan:
    """The run before any video is scored: metrics, cases, reused and missing rows, the work left."""

    out: Path
    preset: str | None
    names: list[str]
    metrics: list[Metric]
    custom: bool
    cases: list[Case]
    case_errors: list[str]
    sig: str
    rows: dict[str, ScoreRow] = field(default_factory=dict)
    todo: Work = field(default_factory=list)
    reused: int = 0


def _plan(cfg: ScoreConfig, metrics: list[Metric] | None) -> _Plan:
    """Check the inputs and model files, save the config, sort the cases into reused/missing/to do."""
    from ipvgkit import config as config_mod

    if cfg.out is None:
        raise UsageError("an output folder is required (-o OUTDIR)")
    if cfg.submission is None:
        raise UsageError("a submission folder is required")
    submission = Path(cfg.submission)
    if not submission.is_dir():
        raise InputError(f"submission folder not found: {submission}")
    preset, names = resolve_metric_names(cfg.preset, cfg.metrics)
    custom = metrics is not None
    metrics = build_metrics(preset, names) if metrics is None else metrics
    names = [m.name for m in metrics]
    cases, case_errors = load_score_cases(cfg)
    check_weights(metrics, cfg.models_dir)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    config_mod.save(cfg, out / CONFIG_NAME)
    sig = signature(preset, metrics, cfg.bgr_quirk, cfg.models_dir)
    plan = _Plan(out, preset, names, metrics, custom, cases, case_errors, sig)
    prev = {} if cfg.overwrite else previous_rows(out)
    if cfg.overwrite and (out / PARTIAL_NAME).exists():
        (out / PARTIAL_NAME).unlink()
    for case in cases:
        path = submission / case.output_name
        if not path.is_file():
            plan.rows[case.output_name] = missing_row(case, path, sig, names)
            drop_thumbs(out, case.output_name)
        elif reusable(prev.get(case.output_name), path, sig):
            plan.rows[case.output_name] = prev[case.output_name]
            plan.reused += 1
        else:
            plan.todo.append((case, path))
    return plan


def _chunk_results(cfg: ScoreConfig, plan: _Plan) -> Iterator[ChunkResult]:
    """Score the work left, in chunks, in this process or in a process pool."""
    ctx = MetricContext(
        models_dir=cfg.models_dir,
        device=cfg.device,
        batch_size=cfg.batch_size,
        options={"bgr_quirk": cfg.bgr_quirk, "workers": cfg.workers},
    )
    todo = plan.todo
    procs = parallel_processes(cfg, plan.metrics, len(todo), custom=plan.custom)
    # with several processes, chunks small enough that every process gets about two of them
    size = cfg.video_batch if procs == 1 else max(1, min(cfg.video_batch, math.ceil(len(todo) / (2 * procs))))
    chunks = [todo[i : i + size] for i in range(0, len(todo), size)]
    procs = min(procs, len(chunks))
    if procs > 1:
        return score_in_processes(chunks, procs, plan.preset, plan.names, ctx, plan.sig)
    return score_in_line(chunks, plan.metrics, plan.names, ctx, plan.sig)


def _execute(cfg: ScoreConfig, plan: _Plan, progress: Progress) -> dict[str, float]:
    """Score ``plan.todo``; each row goes to the partial log (and its thumbnails to disk) as it comes."""
    timings: dict[str, float] = {}
    progress.phase("score", len(plan.cases))
    progress.advance(len(plan.cases) - len(plan.todo))
    if not plan.todo:
        return timings
    with (plan.out / PARTIAL_NAME).open("a", encoding="utf-8") as log:
        for res in _chunk_results(cfg, plan):
            for k, v in res.timings.items():
                timings[k] = timings.get(k, 0.0) + v
            for row in res.rows:
                thumbs = res.thumbs.get(row.output_name)
                if thumbs is not None:
                    write_thumbs(plan.out, row.output_name, thumbs)
                else:
                    drop_thumbs(plan.out, row.output_name)
                plan.rows[row.output_name] = row
                log.write(dumps(row.to_json()) + "\n")
                log.flush()
                progress.status(row.output_name)
                progress.advance()
    return timings


def run_scoring(
    cfg: ScoreConfig, progress: Progress | None = None, metrics: list[Metric] | None = None
) -> ScoreReport:
    """Score ``cfg.submission`` against ``cfg.cases`` into ``cfg.out`` (see the module docstring).

    ``progress`` gets a ``score`` phase counting cases (reused ones at once); ``metrics`` replaces the
    resolved metric list with ready instances (library use: custom embedders, tests).
    """
    from ipvgkit.metrics.base import exif_rotated
    from ipvgkit.metrics.setup import files_used

    t_start = time.perf_counter()
    progress = ensure(progress)
    plan = _plan(cfg, metrics)
    timings = _execute(cfg, plan, progress)
    ordered = [plan.rows[c.output_name] for c in plan.cases]
    add_totals(ordered, plan.preset, plan.names)
    run_metrics = finalize(plan.metrics, ordered, plan.reused)
    timings["_total"] = time.perf_counter() - t_start
    n_timeline = sum(1 for c in plan.cases if c.timeline)
    rotated = sorted({str(p) for c in plan.cases for p in c.ref_images if exif_rotated(p)})
    summary = summarise(
        ordered, plan.metrics, plan.preset, run_metrics, plan.case_errors, timings, n_timeline, rotated
    )
    summary["model_files"] = files_used(plan.metrics, cfg.models_dir)
    for note in summary["notes"]:
        progress.log(f"note: {note}")
    write_rows(plan.out / SCORES_NAME, ordered)
    atomic_write_text(plan.out / SUMMARY_NAME, dumps(summary, indent=2) + "\n")
    if (plan.out / PARTIAL_NAME).exists():
        (plan.out / PARTIAL_NAME).unlink()
    if cfg.report:
        from ipvgkit.stages.score_report import write_report

        progress.phase("report", None)
        write_report(plan.out / REPORT_NAME, ordered, summary, plan.cases, plan.metrics)
    missing = [r.output_name for r in ordered if r.missing]
    failed = [
        f"{r.output_name}: {k}: {msg}" for r in ordered if not r.missing for k, msg in r.failures().items()
    ]
    return ScoreReport(
        out=plan.out,
        preset=plan.preset,
        metric_names=plan.names,
        rows=ordered,
        summary=summary,
        scored=len(plan.todo),
        reused=plan.reused,
        missing=missing,
        failed=failed,
        case_errors=plan.case_errors,
    )


__all__ = [
    "CONFIG_NAME",
    "DEFAULT_PRESET",
    "MISSING_VIDEO",
    "PARTIAL_NAME",
    "REPORT_NAME",
    "SCORES_NAME",
    "SUMMARY_NAME",
    "ScoreConfig",
    "ScoreReport",
    "ScoreRow",
    "build_metrics",
    "load_score_cases",
    "open_sample",
    "parallel_processes",
    "run_scoring",
]
