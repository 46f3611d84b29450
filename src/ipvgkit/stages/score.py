"""``ipvg score``: score a submission folder against a test set in one pass per video.

:func:`run_scoring` resolves the metrics (a preset or a list), checks that every model file they need
exists (before any video is read), loads the models once, then for each video: probes it, decodes the
union of the frames all metrics need ONCE (:class:`~ipvgkit.metrics.base.VideoSample`), and runs every
metric on it; metrics batch their model calls over several videos (``video_batch``). Outputs, in the
output folder:

- ``scores.jsonl``: one line per case (``case_id``, ``output_name``, ``metrics``, ``extra``, ``errors``,
  ``total``, the video's size and mtime and the metric signature used for resuming);
- ``summary.json``: per-metric means and counts, the preset's weighted total, run-level metrics;
- ``report.html``: a self-contained report (see :mod:`ipvgkit.stages.score_report`);
- ``score.yaml``: the resolved config.

Resuming: a case whose video is unchanged (size + mtime) and was scored with the same metric signature
and without failures is reused; ``overwrite`` recomputes everything.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ipvgkit.data.cases import Case
from ipvgkit.data.timeline import UNITS_CHOICES, UnitsChoice
from ipvgkit.errors import InputError, IpvgError, MissingWeightsError, UsageError
from ipvgkit.fsutil import atomic_write_text
from ipvgkit.metrics.base import Metric, MetricContext, MetricResult, VideoSample

CONFIG_NAME = "score.yaml"
SCORES_NAME = "scores.jsonl"
SUMMARY_NAME = "summary.json"
REPORT_NAME = "report.html"
PARTIAL_NAME = ".scores.partial.jsonl"
MISSING_VIDEO = "missing video"
DEFAULT_PRESET = "consisid"
MAX_REF_CACHES = 32  # reference sets whose images/detections/embeddings are kept for following videos


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
    rows: list[dict]
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
        return {r["output_name"]: r.get("total") for r in self.rows}


# ------------------------------------------------------------------------------------------ metric setup


def resolve_metric_names(cfg: ScoreConfig) -> tuple[str | None, list[str]]:
    """(preset or None, metric names) chosen by the config; unknown names raise UsageError."""
    from ipvgkit.metrics import known_metrics
    from ipvgkit.metrics.presets import preset_metrics

    if cfg.metrics:
        names = list(dict.fromkeys(m.strip() for m in cfg.metrics if m.strip()))
        known = known_metrics()
        bad = [n for n in names if n not in known]
        if bad:
            raise UsageError(f"unknown metric {bad[0]!r} (known: {', '.join(known)})")
        return None, names
    preset = cfg.preset or DEFAULT_PRESET
    return preset, preset_metrics(preset)


def build_metrics(preset: str | None, names: list[str]) -> list[Metric]:
    """Metric instances with the preset's options (e.g. opens2v's 32-frame FaceSim-Cur)."""
    from ipvgkit.metrics import get_metric
    from ipvgkit.metrics.presets import PRESET_OPTIONS

    opts = PRESET_OPTIONS.get(preset or "", {})
    return [get_metric(n, **opts.get(n, {})) for n in names]


def check_weights(metrics: list[Metric], models_dir: Path | None) -> None:
    """Raise :class:`MissingWeightsError` for the first missing model file of any metric (all checked)."""
    from ipvgkit.weights import find

    missing = []
    for m in metrics:
        for mf in m.model_files():
            path, searched = find(mf, models_dir)
            if path is None:
                missing.append((m.name, mf, searched))
    if missing:
        name, mf, searched = missing[0]
        others = sorted({f"{mf2.relpath} ({n})" for n, mf2, _ in missing[1:] if mf2.relpath != mf.relpath})
        label = f"{mf.relpath} (needed by {name}" + (f"; also missing: {', '.join(others)}" if others else "")
        raise MissingWeightsError(label + ")", searched, mf.source)


def signature(preset: str | None, metrics: list[Metric], bgr_quirk: bool) -> str:
    """A short hash of everything that changes the numbers: metric names, their options, options."""
    data = {"metrics": {m.name: m.options() for m in metrics}, "bgr_quirk": bool(bgr_quirk)}
    return hashlib.sha1(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------- resuming


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    if not path.is_file():
        return rows
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by an interruption
        if isinstance(obj, dict) and "output_name" in obj:
            rows.append(obj)
    return rows


def previous_rows(out: Path) -> dict[str, dict]:
    """Rows of an earlier run (``scores.jsonl``, then the newer partial log of an interrupted run)."""
    prev: dict[str, dict] = {}
    for name in (SCORES_NAME, PARTIAL_NAME):
        for r in _read_jsonl(out / name):
            prev[r["output_name"]] = r
    return prev


def _video_stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def reusable(row: dict | None, path: Path, sig: str) -> bool:
    """True when ``row`` scored this very file (size + mtime) with the same metrics and nothing failed."""
    if not row or row.get("signature") != sig:
        return False
    stamp = _video_stamp(path)
    if stamp is None or [row.get("video_size"), row.get("video_mtime_ns")] != list(stamp):
        return False
    failed = [k for k, v in (row.get("errors") or {}).items() if not (row.get("not_applicable") or {}).get(k)]
    return not failed


# ------------------------------------------------------------------------------------------ rows


def _finite(v: Any) -> float | None:
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def make_row(case: Case, path: Path, sig: str, results: dict[str, MetricResult], seconds: float) -> dict:
    """One ``scores.jsonl`` line."""
    stamp = _video_stamp(path)
    metrics, extra, errors, na = {}, {}, {}, {}
    for name, r in results.items():
        value = _finite(r.value)
        metrics[name] = value
        if r.extra:
            extra[name] = r.extra
        if r.error or (r.value is not None and value is None):
            errors[name] = r.error or f"non-finite value {r.value!r}"
        if r.extra.get("not_applicable"):
            na[name] = True
    return {
        "case_id": case.case_id,
        "output_name": case.output_name,
        "metrics": metrics,
        "extra": extra,
        "errors": errors,
        "not_applicable": na,
        "total": None,
        "video": str(Path(path).resolve()),
        "video_size": stamp[0] if stamp else None,
        "video_mtime_ns": stamp[1] if stamp else None,
        "signature": sig,
        "seconds": round(seconds, 4),
    }


def _error_results(names: list[str], message: str) -> dict[str, MetricResult]:
    return {n: MetricResult(None, {}, message) for n in names}


def _safe_compute(metric: Metric, sample: VideoSample) -> MetricResult:
    try:
        return metric.compute(sample)
    except IpvgError as e:
        return MetricResult(None, {}, str(e).splitlines()[0])
    except Exception as e:  # noqa: BLE001 - one bad video must not stop the batch; recorded in its row
        return MetricResult(None, {}, f"{type(e).__name__}: {e}")


def run_metric_batch(metric: Metric, samples: list[VideoSample]) -> list[MetricResult]:
    """``compute_batch`` on all samples; if it raises, each sample alone (so one bad video fails alone)."""
    try:
        res = metric.compute_batch(samples)
        if len(res) != len(samples):
            raise RuntimeError(f"{metric.name}: compute_batch returned {len(res)} results for {len(samples)}")
        return res
    except Exception:  # noqa: BLE001 - retried per video below, where the error is recorded
        return [_safe_compute(metric, s) for s in samples]


def open_sample(case: Case, path: Path, metrics: list[Metric], ref_cache: dict | None = None) -> VideoSample:
    """Probe the video, then decode the union of every metric's frames in one pass.

    ``ref_cache`` is the store of ``ref_*`` cache entries shared with other videos of the same references.
    """
    from ipvgkit.errors import MediaError
    from ipvgkit.media import probe_video, read_video

    info = probe_video(path, count_frames=True)
    if info.n_frames < 1:
        raise InputError(f"{path}: no frames")

    def union(n_frames: int) -> set[int]:
        needed: set[int] = set()
        for m in metrics:
            needed.update(i for i in m.frames_for(case, n_frames, float(info.fps)) if 0 <= i < n_frames)
        return needed

    needed = union(info.n_frames)
    sample = VideoSample(case, path, info, needed, ref_cache=ref_cache)
    try:
        sample.frames(sorted(needed))  # the one decoding pass
    except MediaError as e:
        if "fewer frames" not in str(e):
            raise
        # the container's frame count was wrong: count the frames by decoding them all, then start over
        frames = read_video(path)
        info = dataclasses.replace(info, n_frames=len(frames))
        needed = union(info.n_frames)
        sample = VideoSample(
            case, path, info, needed, preloaded={i: frames[i] for i in needed}, ref_cache=ref_cache
        )
        sample.decode_passes = 1
    return sample


# ------------------------------------------------------------------------------------------ summary


def summarise(
    rows: list[dict],
    metrics: list[Metric],
    preset: str | None,
    run_metrics: dict[str, dict],
    case_errors: list[str],
    timings: dict[str, float],
) -> dict:
    """``summary.json``: per-metric means over videos with a value, counts, totals, run-level values."""
    from ipvgkit.metrics.presets import run_total, weights_for

    names = [m.name for m in metrics]
    table = weights_for(preset, names)
    per: dict[str, dict] = {}
    results = {m.name: _row_results(m.name, rows) for m in metrics}
    for m in metrics:
        vals = [r["metrics"].get(m.name) for r in rows]
        got = [v for v in vals if v is not None]
        na = sum(1 for r in rows if (r.get("not_applicable") or {}).get(m.name))
        entry: dict[str, Any] = {
            "mean": sum(got) / len(got) if got else None,
            "n": len(got),
            "n_failed": sum(1 for r in rows if m.name in r["errors"]) - na,
            "n_not_applicable": na,
            "higher_is_better": m.higher_is_better,
            **m.run_summary(results[m.name]),
        }
        if m.name in table:
            w = table[m.name]
            entry["weight"] = {"weight": w.weight, "lo": w.lo, "hi": w.hi}
        no_face = [r["extra"].get(m.name, {}).get("frames_no_face") for r in rows]
        no_face = [x for x in no_face if isinstance(x, int | float)]
        if no_face:
            entry["frames_no_face"] = int(sum(no_face))
        if m.name in timings:
            entry["seconds"] = round(timings[m.name], 3)
        per[m.name] = entry
    totals = [r["total"] for r in rows if r.get("total") is not None]
    missing = [r["output_name"] for r in rows if r["errors"] and MISSING_VIDEO in r["errors"].values()]
    total = run_total(preset, metrics, results)
    return {
        "preset": preset,
        "metrics": per,
        "total": total["value"],
        "total_detail": total,
        "total_mean_over_videos": sum(totals) / len(totals) if totals else None,
        "weights": {k: {"weight": w.weight, "lo": w.lo, "hi": w.hi} for k, w in table.items()},
        "run_metrics": run_metrics,
        "videos": {
            "cases": len(rows),
            "scored": sum(1 for r in rows if any(v is not None for v in r["metrics"].values())),
            "missing": len(missing),
            "with_failures": sum(
                1 for r in rows if any(k not in (r.get("not_applicable") or {}) for k in r["errors"])
            ),
        },
        "case_errors": case_errors,
        "seconds": round(timings.get("_total", 0.0), 3),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _json_default(obj: Any) -> Any:
    """JSON for what metrics may leave in ``extra``: numpy scalars and arrays, paths."""
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def to_json(obj: Any, **kw: Any) -> str:
    """``json.dumps`` that accepts numpy values (as metrics' ``extra`` may hold them)."""
    return json.dumps(obj, ensure_ascii=False, default=_json_default, **kw)


def _write_rows(path: Path, rows: list[dict]) -> None:
    atomic_write_text(path, "".join(to_json(r) + "\n" for r in rows))


# ------------------------------------------------------------------------------------------ main


def load_score_cases(cfg: ScoreConfig) -> tuple[list[Case], list[str]]:
    """The test set's valid cases and one message per malformed case."""
    from ipvgkit.data.testsets import load_testset

    if cfg.cases is None:
        raise UsageError("--cases is required (an id/prompt folder or an eval.json)")
    ts = load_testset(cfg.cases, timeline_units=cfg.timeline_units)
    return list(ts.cases), [str(e) for e in ts.errors]


def run_scoring(
    cfg: ScoreConfig,
    on_progress: Callable[[int, int, str], None] | None = None,
    metrics: list[Metric] | None = None,
) -> ScoreReport:
    """Score ``cfg.submission`` against ``cfg.cases`` into ``cfg.out`` (see the module docstring).

    ``on_progress(done, total, output_name)`` is called after each video. ``metrics`` replaces the
    resolved metric list with ready instances (library use: custom embedders, tests).
    """
    from ipvgkit import config as config_mod
    from ipvgkit.metrics.setup import files_used

    t_start = time.perf_counter()
    if cfg.out is None:
        raise UsageError("an output folder is required (-o OUTDIR)")
    if cfg.submission is None:
        raise UsageError("a submission folder is required")
    submission = Path(cfg.submission)
    if not submission.is_dir():
        raise InputError(f"submission folder not found: {submission}")
    preset, names = resolve_metric_names(cfg)
    custom_metrics = metrics is not None
    if metrics is None:
        metrics = build_metrics(preset, names)
    else:
        names = [m.name for m in metrics]
    cases, case_errors = load_score_cases(cfg)
    check_weights(metrics, cfg.models_dir)

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    config_mod.save(cfg, out / CONFIG_NAME)
    sig = signature(preset, metrics, cfg.bgr_quirk)
    prev = {} if cfg.overwrite else previous_rows(out)
    partial = out / PARTIAL_NAME
    if cfg.overwrite and partial.exists():
        partial.unlink()

    rows: dict[str, dict] = {}
    todo: list[tuple[Case, Path]] = []
    reused = 0
    for case in cases:
        path = submission / case.output_name
        if not path.is_file():
            rows[case.output_name] = make_row(case, path, sig, _error_results(names, MISSING_VIDEO), 0.0)
        elif reusable(prev.get(case.output_name), path, sig):
            rows[case.output_name] = prev[case.output_name]
            reused += 1
        else:
            todo.append((case, path))

    timings: dict[str, float] = {}
    done = len(cases) - len(todo)
    if on_progress:
        on_progress(done, len(cases), "")
    if todo:
        ctx = MetricContext(
            models_dir=cfg.models_dir,
            device=cfg.device,
            batch_size=cfg.batch_size,
            options={"bgr_quirk": cfg.bgr_quirk, "workers": cfg.workers},
        )
        procs = parallel_processes(cfg, metrics, len(todo), custom=custom_metrics)
        # with several processes, chunks small enough that every process gets about two of them
        size = (
            cfg.video_batch
            if procs == 1
            else max(1, min(cfg.video_batch, math.ceil(len(todo) / (2 * procs))))
        )
        chunks = [todo[i : i + size] for i in range(0, len(todo), size)]
        procs = min(procs, len(chunks))
        if procs > 1:
            chunk_rows = _score_in_processes(chunks, procs, preset, names, ctx, sig, timings)
        else:
            for m in metrics:
                t0 = time.perf_counter()
                m.load(ctx)
                timings[f"load:{m.name}"] = time.perf_counter() - t0
            ref_caches: dict = {}
            chunk_rows = (_score_chunk(c, metrics, names, sig, timings, ref_caches) for c in chunks)
        with partial.open("a", encoding="utf-8") as log:
            for chunk_result in chunk_rows:
                for row in chunk_result:
                    rows[row["output_name"]] = row
                    log.write(to_json(row) + "\n")
                    log.flush()
                    done += 1
                    if on_progress:
                        on_progress(done, len(cases), row["output_name"])

    ordered = [rows[c.output_name] for c in cases]
    _add_totals(ordered, preset, names)
    run_metrics = _finalize(metrics, ordered, reused)
    timings["_total"] = time.perf_counter() - t_start
    summary = summarise(ordered, metrics, preset, run_metrics, case_errors, timings)
    summary["model_files"] = files_used(metrics, cfg.models_dir)
    _write_rows(out / SCORES_NAME, ordered)
    atomic_write_text(out / SUMMARY_NAME, to_json(summary, indent=2) + "\n")
    if partial.exists():
        partial.unlink()
    if cfg.report:
        from ipvgkit.stages.score_report import write_report

        write_report(out / REPORT_NAME, ordered, summary, cases, metrics)

    missing = [r["output_name"] for r in ordered if MISSING_VIDEO in r["errors"].values()]
    failed = [
        f"{r['output_name']}: {k}: {msg}"
        for r in ordered
        if r["output_name"] not in missing
        for k, msg in r["errors"].items()
        if not (r.get("not_applicable") or {}).get(k)
    ]
    return ScoreReport(
        out=out,
        preset=preset,
        metric_names=names,
        rows=ordered,
        summary=summary,
        scored=len(todo),
        reused=reused,
        missing=missing,
        failed=failed,
        case_errors=case_errors,
    )


def parallel_processes(cfg: ScoreConfig, metrics: list[Metric], n_chunks: int, custom: bool = False) -> int:
    """How many processes score video chunks in parallel (``n_chunks``: how many pieces of work there are).

    One process (everything in line) on a GPU, with metric instances passed in by a caller, when a
    metric keeps run-level state across videos (``finalize``, e.g. ``fid``), when a metric is not
    ``process_parallel`` (torch/onnxruntime models use every core already and are not worth a copy per
    process); else ``cfg.processes``, or automatically the CPU count when there are several chunks.
    Workers are forked only from a single-threaded process, else spawned (``ipvgkit.procs``), and each
    loads its own models, so a pool only pays off for several videos.
    """
    import os

    if custom or n_chunks < 2 or not cfg.device.startswith("cpu"):
        return 1
    if any(type(m).finalize is not Metric.finalize or not m.process_parallel for m in metrics):
        return 1
    wanted = cfg.processes or (os.cpu_count() or 1)
    return max(1, min(wanted, n_chunks, 16))


_WORKER: dict[str, Any] = {}


def _worker_init(preset: str | None, names: list[str], ctx: MetricContext) -> None:
    """Runs once in each scoring process: build and load its own metrics."""
    import cv2

    cv2.setNumThreads(1)  # one process per core already
    metrics = build_metrics(preset, names)
    ctx = dataclasses.replace(ctx, options={**ctx.options, "workers": 1})
    for m in metrics:
        m.load(ctx)
    _WORKER.update(metrics=metrics, ref_caches={})


def _worker_chunk(chunk: list[tuple[Case, Path]], names: list[str], sig: str) -> tuple[list[dict], dict]:
    timings: dict[str, float] = {}
    rows = _score_chunk(chunk, _WORKER["metrics"], names, sig, timings, _WORKER["ref_caches"])
    return rows, timings


def _score_in_processes(
    chunks: list[list[tuple[Case, Path]]],
    procs: int,
    preset: str | None,
    names: list[str],
    ctx: MetricContext,
    sig: str,
    timings: dict[str, float],
):
    """Yield each chunk's rows as the processes finish them (in order); add their timings up."""
    from concurrent.futures import ProcessPoolExecutor

    from ipvgkit.procs import pool_context, spawnable_main

    with ProcessPoolExecutor(
        max_workers=procs,
        mp_context=pool_context(),
        initializer=_worker_init,
        initargs=(preset, names, ctx),
    ) as pool:
        with spawnable_main():
            futures = [pool.submit(_worker_chunk, c, names, sig) for c in chunks]
        for fut in futures:
            rows, t = fut.result()
            for k, v in t.items():
                timings[k] = timings.get(k, 0.0) + v
            yield rows


def _ref_key(case: Case) -> tuple[str, ...]:
    return tuple(str(Path(p).resolve()) for p in case.ref_images)


def _score_chunk(
    chunk: list[tuple[Case, Path]],
    metrics: list[Metric],
    names: list[str],
    sig: str,
    timings: dict,
    ref_caches: dict | None = None,
) -> list[dict]:
    """Open every video of the chunk once, run each metric over all of them, return their rows.

    ``ref_caches`` (run-level, keyed by the reference image paths) holds the ``ref_*`` cache entries
    (reference images, detections, embeddings) shared by all videos with the same reference images.
    """
    t0 = time.perf_counter()
    samples: list[VideoSample] = []
    results: dict[str, dict[str, MetricResult]] = {}
    ref_caches = {} if ref_caches is None else ref_caches
    for case, path in chunk:
        try:
            key = _ref_key(case)
            if key not in ref_caches:
                ref_caches[key] = {}
                while len(ref_caches) > MAX_REF_CACHES:
                    ref_caches.pop(next(iter(ref_caches)))
            samples.append(open_sample(case, path, metrics, ref_caches[key]))
        except IpvgError as e:
            results[case.output_name] = _error_results(names, str(e).splitlines()[0])
        except Exception as e:  # noqa: BLE001 - an unreadable video is reported in its row, not fatal
            results[case.output_name] = _error_results(names, f"{type(e).__name__}: {e}")
    timings["decode"] = timings.get("decode", 0.0) + time.perf_counter() - t0
    for s in samples:
        results[s.case.output_name] = {}
    if samples:
        for m in metrics:
            t1 = time.perf_counter()
            for s, r in zip(samples, run_metric_batch(m, samples), strict=True):
                results[s.case.output_name][m.name] = r
            timings[m.name] = timings.get(m.name, 0.0) + time.perf_counter() - t1
    per_video = (time.perf_counter() - t0) / max(1, len(chunk))
    rows = [make_row(case, path, sig, results[case.output_name], per_video) for case, path in chunk]
    for s in samples:
        s.release()
    return rows


def _add_totals(rows: list[dict], preset: str | None, names: list[str]) -> None:
    from ipvgkit.metrics.presets import weighted_total, weights_for

    table = weights_for(preset, names)
    for r in rows:
        r["total"] = weighted_total(r["metrics"], table)


def _row_results(name: str, rows: list[dict]) -> list[MetricResult]:
    """Every row's result of metric ``name`` (as the metric computed it)."""
    return [
        MetricResult(r["metrics"].get(name), r["extra"].get(name, {}), r["errors"].get(name)) for r in rows
    ]


def _finalize(metrics: list[Metric], rows: list[dict], reused: int = 0) -> dict[str, dict]:
    """Run-level values (``Metric.finalize``) from every row's result, reused rows included.

    A metric that keeps per-run state (``fid``'s features) only saw the videos computed in this run:
    when rows were reused, its entry says so (``"videos_reused_not_included"``).
    """
    out: dict[str, dict] = {}
    for m in metrics:
        results = _row_results(m.name, rows)
        try:
            value = m.finalize(results)
        except Exception as e:  # noqa: BLE001 - reported in summary.json, the per-video scores stand
            value = {"error": f"{type(e).__name__}: {e}"}
        if value:
            if reused:
                value = {**value, "videos_reused_not_included": reused}
            out[m.name] = value
    return out
