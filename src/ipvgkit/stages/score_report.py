"""``report.html`` of ``ipvg score``: one self-contained file (inline CSS, JS, SVG, base64 images; no
external assets, no CDN).

Sections: headline cards and the summary's notes; the summary table (mean, count, failures, weight of
each metric, the preset total); one histogram per metric with labelled axes (a metric whose values are
all equal is said to be so); the best and the worst cases by total; and **every case** in a table that
sorts by any column (click its header) and filters by text and status, each row opening the case: its
video (embedded when all videos together are at most ``EMBED_LIMIT_MB``, else a link relative to the
report), the reference image and the frames stored while scoring, the metric values and, for Track 2
cases, the timeline strip. Nothing is decoded: frames come from ``thumbs/`` (see
:mod:`ipvgkit.stages.score_rows`).
"""

from __future__ import annotations

import json
from pathlib import Path

from ipvgkit.data.cases import Case
from ipvgkit.fsutil import atomic_write_text
from ipvgkit.metrics.base import Metric
from ipvgkit.stages.score_html import TABLE_JS, esc, fmt, histogram_svg, num_cell, page
from ipvgkit.stages.score_report_case import EMBED_LIMIT_MB, VideoMode, case_block, video_mode
from ipvgkit.stages.score_rows import ScoreRow, Thumbs, read_thumbs

# Fills the elements that reference the page's assets (data-i: src, data-p: poster) inside a part of the
# page when it is shown: the best/worst lists at once, a case of the table when it is opened.
ASSET_JS = """
(function () {
  var el = document.getElementById('assets'); var A = el ? JSON.parse(el.textContent) : {};
  function fill(root) {
    root.querySelectorAll('[data-i]').forEach(function (e) {
      if (!e.getAttribute('src')) e.setAttribute('src', A[e.getAttribute('data-i')]); });
    root.querySelectorAll('[data-p]').forEach(function (e) {
      if (!e.getAttribute('poster')) e.setAttribute('poster', A[e.getAttribute('data-p')]); });
  }
  window.ipvgFill = fill;
  document.querySelectorAll('.eager').forEach(fill);
  document.querySelectorAll('details').forEach(function (d) {
    d.addEventListener('toggle', function () { if (d.open) fill(d); });
  });
})();
"""
BEST_WORST = 5  # cases shown in full at the top of each end of the ranking
STATUSES = ("ok", "failed", "missing")


def row_status(row: ScoreRow) -> str:
    """``missing`` (no video), ``failed`` (a metric failed on it) or ``ok``."""
    return "missing" if row.missing else "failed" if row.failures() else "ok"


def _summary_table(summary: dict) -> str:
    rows = []
    for name, m in summary["metrics"].items():
        w = m.get("weight")
        weight = f"{w['weight']:g} on [{w['lo']:g}, {w['hi']:g}]" if w else "–"
        arrow = "↑" if m.get("higher_is_better", True) else "↓"
        nf = m.get("frames_no_face")
        rows.append(
            f"<tr><td>{esc(name)} <span class='note'>{arrow}</span></td>"
            f"<td class='num'>{fmt(m['mean'])}</td><td class='num'>{m['n']}</td>"
            f"<td class='num'>{m['n_failed']}</td><td class='num'>{m['n_not_applicable']}</td>"
            f"<td class='num'>{'' if nf is None else nf}</td><td>{weight}</td></tr>"
        )
    for name, rm in (summary.get("run_metrics") or {}).items():
        val = rm.get("value") if isinstance(rm, dict) else None
        detail = ", ".join(f"{k}={v}" for k, v in rm.items() if k != "value") if isinstance(rm, dict) else ""
        rows.append(
            f"<tr><td>{esc(name)} <span class='note'>(run-level)</span></td>"
            f"<td class='num'>{fmt(val)}</td><td colspan='5' class='note'>{esc(detail)}</td></tr>"
        )
    head = (
        "<thead><tr><th>metric</th><th>mean</th><th>videos</th><th>failed</th><th>n/a</th>"
        "<th>frames without face</th><th>weight (normalised range)</th></tr></thead>"
    )
    return f"<table class='summary'>{head}<tbody>{''.join(rows)}</tbody></table>"


def _cards(summary: dict) -> str:
    vids = summary["videos"]
    cards = [
        ("preset", esc(summary.get("preset") or "custom"), ""),
        ("total (of the means)", fmt(summary.get("total")), ""),
        ("videos scored", f"{vids['scored']} / {vids['cases']}", ""),
        ("missing videos", str(vids["missing"]), "bad" if vids["missing"] else ""),
        ("with failures", str(vids["with_failures"]), "bad" if vids["with_failures"] else ""),
    ]
    return "".join(
        f'<div class="card"><div class="k">{k}</div><div class="v {c}">{v}</div></div>' for k, v, c in cards
    )


def _histograms(rows: list[ScoreRow], names: list[str]) -> str:
    hists = []
    for n in names:
        vals = [r.metrics[n] for r in rows if r.metrics.get(n) is not None]
        hists.append(f'<div class="hist"><h3>{esc(n)}</h3>{histogram_svg(vals, label=n)}</div>')
    totals = [r.total for r in rows if r.total is not None]
    if totals:
        hists.append(f'<div class="hist"><h3>total</h3>{histogram_svg(totals, label="total")}</div>')
    return f"<div class='hists'>{''.join(hists)}</div>"


def _cases_table(
    rows: list[ScoreRow], by_name: dict[str, Case], names: list[str], thumbs: dict, mode: VideoMode
) -> str:
    """Every case: one sortable, filterable row each; its details open the full case view."""
    heads = [
        '<th class="sortable" data-key="case">case</th>',
        '<th class="sortable" data-key="total">total</th>',
    ]
    heads += [f'<th class="sortable" data-key="{esc(n)}">{esc(n)}</th>' for n in names]
    heads.append('<th class="sortable" data-key="status">status</th>')
    body = []
    for r in rows:
        case = by_name.get(r.output_name)
        status = row_status(r)
        search = esc(f"{r.output_name} {r.case_id} {case.prompt if case else ''}".lower())
        cells = "".join(num_cell(r.metrics.get(n)) for n in names)
        detail = case_block(r, case, names, thumbs.get(r.output_name), mode)
        body.append(
            f'<tr data-name="{esc(r.output_name)}" data-status="{status}" data-search="{search}">'
            f"<td><details><summary>{esc(r.output_name)}</summary>{detail}</details></td>"
            f"{num_cell(r.total)}{cells}<td class='{'' if status == 'ok' else 'bad'}'>{status}</td></tr>"
        )
    options = "".join(f'<option value="{s}">{s}</option>' for s in STATUSES)
    controls = (
        '<div class="controls"><input id="filter" type="search" placeholder="filter: name, id or prompt">'
        f'<select id="status"><option value="">every status</option>{options}</select>'
        f'<span id="shown" class="note">{len(rows)} cases</span>'
        '<span class="note">click a column header to sort; click a case to open it</span></div>'
    )
    return (
        f'{controls}<table class="cases"><thead><tr>{"".join(heads)}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _best_worst(rows, by_name, names, thumbs, mode) -> str:
    ranked = sorted((r for r in rows if r.total is not None), key=lambda r: r.total, reverse=True)
    if not ranked:
        return '<p class="note">no video has a total (no weighted metric, or all failed)</p>'
    k = min(BEST_WORST, (len(ranked) + 1) // 2)
    best, worst = ranked[:k], ranked[k:][-k:][::-1]

    def blocks(rs: list[ScoreRow]) -> str:
        return "".join(
            case_block(r, by_name.get(r.output_name), names, thumbs.get(r.output_name), mode) for r in rs
        )

    out = f"<h2>Best {len(best)} cases by total</h2><div class='best eager'>{blocks(best)}</div>"
    if worst:
        out += f"<h2>Worst {len(worst)} cases by total</h2><div class='worst eager'>{blocks(worst)}</div>"
    return out


def render_report(
    rows: list[ScoreRow],
    summary: dict,
    cases: list[Case],
    metrics: list[Metric],
    thumbs: dict[str, Thumbs],
    mode: VideoMode,
) -> str:
    """The report as one HTML string (``thumbs``: the stored thumbnails by output name)."""
    names = [m.name for m in metrics]
    by_name = {c.output_name: c for c in cases}
    notes = summary.get("notes") or []
    notes_html = (
        '<div class="notes">' + "".join(f"<div>{esc(n)}</div>" for n in notes) + "</div>" if notes else ""
    )
    body = (
        f"<h1>ipvg score report</h1><div class='sub'>{esc(summary.get('created', ''))} · metrics: "
        f"{esc(', '.join(names))} · {esc(mode.describe())}</div><div class='cards'>{_cards(summary)}</div>"
        f"{notes_html}<h2>Summary</h2>{_summary_table(summary)}"
        f"<h2>Distributions</h2>{_histograms(rows, names)}"
        f"{_best_worst(rows, by_name, names, thumbs, mode)}"
        f"<h2>All {len(rows)} cases</h2>{_cases_table(rows, by_name, names, thumbs, mode)}"
    )
    assets = json.dumps(mode.assets).replace("</", "<\\/")
    body += f'<script type="application/json" id="assets">{assets}</script>'
    return page("ipvg score report", body, ASSET_JS + TABLE_JS)


def write_report(
    path: Path, rows: list[ScoreRow], summary: dict, cases: list[Case], metrics: list[Metric]
) -> Path:
    """Render and write ``report.html`` atomically; thumbnails are read from the folder it is written to."""
    path = Path(path)
    thumbs = {r.output_name: t for r in rows if (t := read_thumbs(path.parent, r.output_name)) is not None}
    text = render_report(rows, summary, cases, metrics, thumbs, video_mode(rows, path.parent))
    return atomic_write_text(path, text)


__all__ = ["EMBED_LIMIT_MB", "histogram_svg", "render_report", "row_status", "write_report"]
