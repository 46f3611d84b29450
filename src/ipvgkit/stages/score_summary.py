"""``summary.json`` of ``ipvg score``: per-metric means and counts, the preset's totals, run-level values
(``Metric.finalize``) and the notes a reader must see (e.g. Track 2 alignment not measured)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ipvgkit.metrics.base import Metric, MetricResult
from ipvgkit.stages.score_rows import ScoreRow

ALIGNMENT_METRIC = "timeline_alignment"
TRACK2_NOT_MEASURED = (
    "Track 2: {n} case(s) have a timeline but timeline_alignment (CLIP) did not run, so whether the "
    "events happen in their windows was not measured"
)


def add_totals(rows: list[ScoreRow], preset: str | None, names: list[str]) -> None:
    """Set each row's weighted, normalised total (None when a weighted metric has no value)."""
    from ipvgkit.metrics.presets import weighted_total, weights_for

    table = weights_for(preset, names)
    for r in rows:
        r.total = weighted_total(r.metrics, table)


def finalize(metrics: list[Metric], rows: list[ScoreRow], reused: int = 0) -> dict[str, dict]:
    """Run-level values (``Metric.finalize``) from every row's result, reused rows included.

    A metric that keeps per-run state (``fid``'s features) only saw the videos computed in this run:
    when rows were reused, its entry says so (``"videos_reused_not_included"``).
    """
    out: dict[str, dict] = {}
    for m in metrics:
        try:
            value = m.finalize([r.result(m.name) for r in rows])
        except Exception as e:  # noqa: BLE001 - reported in summary.json, the per-video scores stand
            value = {"error": f"{type(e).__name__}: {e}"}
        if value:
            if reused:
                value = {**value, "videos_reused_not_included": reused}
            out[m.name] = value
    return out


def _metric_entry(
    m: Metric, rows: list[ScoreRow], results: list[MetricResult], table: dict, timings: dict[str, float]
) -> dict:
    got = [v for v in (r.metrics.get(m.name) for r in rows) if v is not None]
    na = sum(1 for r in rows if r.not_applicable.get(m.name))
    entry: dict[str, Any] = {
        "mean": sum(got) / len(got) if got else None,
        "n": len(got),
        "n_failed": sum(1 for r in rows if m.name in r.errors) - na,
        "n_not_applicable": na,
        "higher_is_better": m.higher_is_better,
        **m.run_summary(results),
    }
    if m.name in table:
        w = table[m.name]
        entry["weight"] = {"weight": w.weight, "lo": w.lo, "hi": w.hi}
    no_face = [r.extra.get(m.name, {}).get("frames_no_face") for r in rows]
    no_face = [x for x in no_face if isinstance(x, int | float)]
    if no_face:
        entry["frames_no_face"] = int(sum(no_face))
    for key in ("image_processor", "logit_scale"):  # what ran (clipscore records both per row)
        seen = sorted({r.extra.get(m.name, {}).get(key) for r in rows} - {None})
        if seen:
            entry[key] = seen[0] if len(seen) == 1 else seen
    if m.name in timings:
        entry["seconds"] = round(timings[m.name], 3)
    return entry


def notes(names: list[str], n_timeline_cases: int) -> list[str]:
    """What the summary must say out loud about what was not measured."""
    out = []
    if n_timeline_cases and ALIGNMENT_METRIC not in names:
        out.append(TRACK2_NOT_MEASURED.format(n=n_timeline_cases))
    return out


def warnings(rows: list[ScoreRow], rotated_refs: list[str] | None = None) -> list[str]:
    """Quirks of the reference code that changed numbers in this run, said out loud; ``rotated_refs``:
    reference images with an EXIF rotation (scored as stored, like the reference code)."""
    out = []
    quirk = [r.output_name for r in rows if any("quirk" in e for e in r.extra.values())]
    if quirk:
        more = " ..." if len(quirk) > 5 else ""
        out.append(
            f"{len(quirk)} video(s) with no face in any sampled frame scored 0.0 on every face metric, "
            "as the 2025 reference code does (0 is the best feature distance: a faceless video is "
            f"rewarded); rows flagged no_face: {', '.join(quirk[:5])}{more}"
        )
    if rotated_refs:
        more = " ..." if len(rotated_refs) > 3 else ""
        out.append(
            f"{len(rotated_refs)} reference image(s) carry an EXIF rotation: scored with their pixels as "
            "stored (the 2025 reference code ignores EXIF), while ipvg generate used them upright; "
            f"save them upright to score what was generated from: {', '.join(rotated_refs[:3])}{more}"
        )
    return out


def summarise(
    rows: list[ScoreRow],
    metrics: list[Metric],
    preset: str | None,
    run_metrics: dict[str, dict],
    case_errors: list[str],
    timings: dict[str, float],
    n_timeline_cases: int = 0,
    rotated_refs: list[str] | None = None,
) -> dict:
    """``summary.json``: per-metric means over videos with a value, counts, totals, run-level values."""
    from ipvgkit.metrics.presets import run_total, weights_for

    names = [m.name for m in metrics]
    table = weights_for(preset, names)
    results = {m.name: [r.result(m.name) for r in rows] for m in metrics}
    per = {m.name: _metric_entry(m, rows, results[m.name], table, timings) for m in metrics}
    totals = [r.total for r in rows if r.total is not None]
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
            "scored": sum(1 for r in rows if r.scored),
            "missing": sum(1 for r in rows if r.missing),
            "with_failures": sum(1 for r in rows if r.failures()),
        },
        "notes": notes(names, n_timeline_cases),
        "case_errors": case_errors,
        "videos_no_face": sum(1 for r in rows if r.no_face),
        "warnings": warnings(rows, rotated_refs),
        "seconds": round(timings.get("_total", 0.0), 3),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
