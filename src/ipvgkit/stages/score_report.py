"""``report.html`` of ``ipvg score``: one self-contained file (inline CSS, SVG and base64 JPEG; no external assets).

Sections: the summary table (mean, count, failures, weight of each metric, the preset total), one
histogram per metric (inline SVG), and the worst cases by total, each with its reference image beside
a strip of frames sampled from its video.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

from ipvgkit.data.cases import Case
from ipvgkit.fsutil import atomic_write_text
from ipvgkit.metrics.base import Metric
from ipvgkit.stages.score_rows import ScoreRow, read_thumbs

WORST = 10
STRIP_FRAMES = 6
THUMB_H = 96

CSS = """
:root { --fg:#1d2330; --muted:#6b7385; --line:#e3e6ee; --accent:#3b6fd8; --bad:#c8423b; --bg:#f6f7fb; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color:var(--fg); background:var(--bg); }
main { max-width:1180px; margin:0 auto; padding:28px 24px 48px; }
h1 { font-size:22px; margin:0 0 4px; } h2 { font-size:17px; margin:32px 0 12px; }
.sub { color:var(--muted); margin-bottom:20px; }
.cards { display:flex; gap:12px; flex-wrap:wrap; margin:16px 0 8px; }
.card { background:#fff; border:1px solid var(--line); border-radius:10px; padding:12px 16px; min-width:150px; }
.card .k { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.04em; }
.card .v { font-size:22px; font-weight:600; margin-top:2px; }
.card .v.bad { color:var(--bad); }
table { border-collapse:collapse; width:100%; background:#fff; border:1px solid var(--line); border-radius:10px;
        overflow:hidden; }
th, td { text-align:left; padding:8px 12px; border-bottom:1px solid var(--line); vertical-align:top; }
th { background:#eef1f8; font-weight:600; font-size:13px; }
td.num { text-align:right; font-variant-numeric:tabular-nums; }
tr:last-child td { border-bottom:none; }
.hists { display:grid; grid-template-columns:repeat(auto-fill, minmax(340px, 1fr)); gap:14px; }
.hist { background:#fff; border:1px solid var(--line); border-radius:10px; padding:10px 12px; }
.hist h3 { font-size:14px; margin:0 0 6px; }
.case { background:#fff; border:1px solid var(--line); border-radius:10px; padding:12px 14px; margin-bottom:12px; }
.case .head { display:flex; justify-content:space-between; gap:12px; flex-wrap:wrap; }
.case .name { font-weight:600; } .case .total { font-weight:600; color:var(--bad); }
.case .prompt { color:var(--muted); margin:4px 0 8px; font-size:13px; }
.row { display:flex; gap:10px; align-items:flex-start; overflow-x:auto; }
.row img { height:96px; border-radius:6px; border:1px solid var(--line); }
.row .ref { border:2px solid var(--accent); }
.sep { width:1px; align-self:stretch; background:var(--line); margin:0 4px; }
.chips { display:flex; gap:6px; flex-wrap:wrap; margin-top:8px; }
.chip { background:#eef1f8; border-radius:999px; padding:2px 10px; font-size:12px; }
.chip.err { background:#fbe9e8; color:var(--bad); }
.note { color:var(--muted); font-size:13px; }
"""


def _fmt(v: float | None, digits: int = 4) -> str:
    if v is None:
        return "–"
    if abs(v) >= 100:
        return f"{v:.1f}"
    return f"{v:.{digits}f}"


def _jpeg_b64(img: np.ndarray, height: int = THUMB_H, quality: int = 72) -> str:
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(img))
    w = max(1, round(im.width * height / max(1, im.height)))
    im = im.resize((w, height), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def histogram_svg(values: list[float], bins: int = 20, width: int = 320, height: int = 130) -> str:
    """An inline SVG histogram of ``values`` with min/max/mean labels."""
    if not values:
        return '<p class="note">no values</p>'
    lo, hi = min(values), max(values)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    top = max(1, int(counts.max()))
    pad_l, pad_b, pad_t = 28, 22, 8
    plot_w, plot_h = width - pad_l - 6, height - pad_b - pad_t
    bw = plot_w / bins
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img">'
    ]
    for k, c in enumerate(counts):
        if c == 0:
            continue
        h = plot_h * c / top
        x = pad_l + k * bw
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{pad_t + plot_h - h:.1f}" width="{max(1.0, bw - 2):.1f}" '
            f'height="{h:.1f}" rx="2" fill="#3b6fd8"><title>[{edges[k]:.4g}, {edges[k + 1]:.4g}): {c}'
            f"</title></rect>"
        )
    mean = float(np.mean(values))
    mx = pad_l + plot_w * (mean - lo) / (hi - lo)
    anchor = "end" if mx > pad_l + plot_w * 0.6 else "start"
    base_y = pad_t + plot_h
    parts += [
        f'<line x1="{pad_l}" y1="{base_y}" x2="{pad_l + plot_w}" y2="{base_y}" stroke="#9aa1b2"/>',
        f'<line x1="{mx:.1f}" y1="{pad_t}" x2="{mx:.1f}" y2="{base_y}" stroke="#c8423b" '
        f'stroke-dasharray="4 3"><title>mean {mean:.4g}</title></line>',
        f'<text x="{pad_l}" y="{height - 6}" font-size="11" fill="#6b7385">{lo:.4g}</text>',
        f'<text x="{pad_l + plot_w}" y="{height - 6}" font-size="11" fill="#6b7385" '
        f'text-anchor="end">{hi:.4g}</text>',
        f'<text x="{mx + (-4 if anchor == "end" else 4):.1f}" y="{pad_t + 10}" font-size="11" fill="#c8423b" '
        f'stroke="#fff" stroke-width="3" paint-order="stroke" text-anchor="{anchor}">mean {mean:.4g}</text>',
        f'<text x="{pad_l - 4}" y="{pad_t + 9}" font-size="11" fill="#6b7385" text-anchor="end">{top}</text>',
        f'<text x="{pad_l - 4}" y="{base_y}" font-size="11" fill="#6b7385" text-anchor="end">0</text>',
        "</svg>",
    ]
    return "".join(parts)


def _strip(row: ScoreRow, out: Path) -> list[str]:
    """The row's stored thumbnails (empty when none were stored: the video could not be read)."""
    thumbs = read_thumbs(out, row.output_name)
    if thumbs is None:
        return []
    return ["data:image/jpeg;base64," + base64.b64encode(b).decode("ascii") for b in thumbs.frames.values()]


def _ref_thumb(case: Case | None) -> str | None:
    if case is None or not case.ref_images:
        return None
    from PIL import Image, ImageOps

    try:
        with Image.open(case.ref_images[0]) as im:
            return _jpeg_b64(np.asarray(ImageOps.exif_transpose(im).convert("RGB")))
    except (OSError, ValueError):
        return None


def _summary_table(summary: dict) -> str:
    rows = []
    for name, m in summary["metrics"].items():
        w = m.get("weight")
        weight = f"{w['weight']:g} on [{w['lo']:g}, {w['hi']:g}]" if w else "–"
        arrow = "↑" if m.get("higher_is_better", True) else "↓"
        nf = m.get("frames_no_face")
        rows.append(
            f"<tr><td>{html.escape(name)} <span class='note'>{arrow}</span></td>"
            f"<td class='num'>{_fmt(m['mean'])}</td><td class='num'>{m['n']}</td>"
            f"<td class='num'>{m['n_failed']}</td><td class='num'>{m['n_not_applicable']}</td>"
            f"<td class='num'>{'' if nf is None else nf}</td><td>{weight}</td></tr>"
        )
    for name, rm in (summary.get("run_metrics") or {}).items():
        val = rm.get("value") if isinstance(rm, dict) else None
        detail = ", ".join(f"{k}={v}" for k, v in rm.items() if k != "value") if isinstance(rm, dict) else ""
        rows.append(
            f"<tr><td>{html.escape(name)} <span class='note'>(run-level)</span></td>"
            f"<td class='num'>{_fmt(val)}</td><td colspan='5' class='note'>{html.escape(detail)}</td></tr>"
        )
    head = (
        "<tr><th>metric</th><th>mean</th><th>videos</th><th>failed</th><th>n/a</th>"
        "<th>frames without face</th><th>weight (normalised range)</th></tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>"


def _case_block(row: ScoreRow, case: Case | None, names: list[str], out: Path) -> str:
    ref = _ref_thumb(case)
    strip = _strip(row, out)
    imgs = []
    if ref:
        imgs.append(f'<img class="ref" src="{ref}" alt="reference" title="reference image">')
        imgs.append('<div class="sep"></div>')
    imgs += [f'<img src="{s}" alt="frame">' for s in strip]
    if not strip:
        imgs.append('<span class="note">video could not be read</span>')
    chips = []
    for n in names:
        v = row.metrics.get(n)
        err = row.errors.get(n)
        if v is None and err:
            chips.append(f'<span class="chip err">{html.escape(n)}: {html.escape(err[:80])}</span>')
        else:
            chips.append(f'<span class="chip">{html.escape(n)} {_fmt(v)}</span>')
    prompt = html.escape((case.prompt if case else "")[:300])
    return (
        f'<div class="case"><div class="head"><span class="name">{html.escape(row.output_name)}'
        f' <span class="note">({html.escape(str(row.case_id))})</span></span>'
        f'<span class="total">total {_fmt(row.total)}</span></div>'
        f'<div class="prompt">{prompt}</div><div class="row">{"".join(imgs)}</div>'
        f'<div class="chips">{"".join(chips)}</div></div>'
    )


def render_report(
    rows: list[ScoreRow], summary: dict, cases: list[Case], metrics: list[Metric], out: Path
) -> str:
    """The report as one HTML string."""
    names = [m.name for m in metrics]
    by_name = {c.output_name: c for c in cases}
    vids = summary["videos"]
    total = summary.get("total")
    cards = [
        ("preset", html.escape(str(summary.get("preset") or "custom")), ""),
        ("total (of the means)", _fmt(total), ""),
        ("videos scored", f"{vids['scored']} / {vids['cases']}", ""),
        ("missing videos", str(vids["missing"]), "bad" if vids["missing"] else ""),
        ("with failures", str(vids["with_failures"]), "bad" if vids["with_failures"] else ""),
    ]
    card_html = "".join(
        f'<div class="card"><div class="k">{k}</div><div class="v {c}">{v}</div></div>' for k, v, c in cards
    )
    hists = []
    for n in names:
        vals = [r.metrics[n] for r in rows if r.metrics.get(n) is not None]
        hists.append(f'<div class="hist"><h3>{html.escape(n)}</h3>{histogram_svg(vals)}</div>')
    totals = [r.total for r in rows if r.total is not None]
    if totals:
        hists.append(f'<div class="hist"><h3>total</h3>{histogram_svg(totals)}</div>')
    ranked = sorted((r for r in rows if r.total is not None), key=lambda r: r.total)[:WORST]
    if ranked:
        worst = "".join(_case_block(r, by_name.get(r.output_name), names, out) for r in ranked)
    else:
        worst = '<p class="note">no video has a total (no weighted metric, or all failed)</p>'
    missing = [r for r in rows if r.errors and not r.scored]
    missing_html = ""
    if missing:
        items = "".join(
            f"<tr><td>{html.escape(r.output_name)}</td>"
            f"<td>{html.escape(next(iter(r.errors.values())))}</td></tr>"
            for r in missing[:200]
        )
        missing_html = (
            f"<h2>Videos without scores ({len(missing)})</h2>"
            f"<table><tr><th>video</th><th>reason</th></tr>{items}</table>"
        )
    title = "ipvg score report"
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{title}</title>"
        f"<style>{CSS}</style></head><body><main>"
        f"<h1>{title}</h1><div class='sub'>{html.escape(summary.get('created', ''))} · metrics: "
        f"{html.escape(', '.join(names))}</div><div class='cards'>{card_html}</div>"
        f"<h2>Summary</h2>{_summary_table(summary)}"
        f"<h2>Distributions</h2><div class='hists'>{''.join(hists)}</div>"
        f"<h2>Worst {len(ranked)} cases by total</h2>{worst}{missing_html}"
        "</main></body></html>\n"
    )


def write_report(
    path: Path, rows: list[ScoreRow], summary: dict, cases: list[Case], metrics: list[Metric]
) -> Path:
    """Render and write ``report.html`` atomically (thumbnails from the folder it is written to)."""
    text = render_report(rows, summary, cases, metrics, Path(path).parent)
    return atomic_write_text(Path(path), text)


__all__ = ["histogram_svg", "render_report", "write_report"]
