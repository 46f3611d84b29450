"""HTML pieces shared by ``report.html`` and ``ipvg score compare``'s page: the stylesheet, the table
script (sorting and filtering, vanilla JS), histograms as inline SVG, number formatting, data URIs.

Everything is inline: a page built from these pieces loads no external file (no CDN, no fonts).
"""

from __future__ import annotations

import base64
import html
import math

import numpy as np

CSS = """
:root { --fg:#1d2330; --muted:#6b7385; --line:#e3e6ee; --accent:#3b6fd8; --bad:#c8423b; --good:#2f8a4c;
        --bg:#f6f7fb; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color:var(--fg); background:var(--bg); }
main { max-width:1240px; margin:0 auto; padding:28px 24px 48px; }
h1 { font-size:22px; margin:0 0 4px; } h2 { font-size:17px; margin:32px 0 12px; }
.sub { color:var(--muted); margin-bottom:20px; }
.cards { display:flex; gap:12px; flex-wrap:wrap; margin:16px 0 8px; }
.card { background:#fff; border:1px solid var(--line); border-radius:10px; padding:12px 16px; min-width:150px; }
.card .k { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.04em; }
.card .v { font-size:22px; font-weight:600; margin-top:2px; }
.card .v.bad { color:var(--bad); }
.notes { background:#fff7e6; border:1px solid #f0d9a8; border-radius:10px; padding:8px 14px; margin:12px 0; }
table { border-collapse:collapse; width:100%; background:#fff; border:1px solid var(--line); }
th, td { text-align:left; padding:6px 10px; border-bottom:1px solid var(--line); vertical-align:top; }
th { background:#eef1f8; font-weight:600; font-size:13px; }
th.sortable { cursor:pointer; user-select:none; white-space:nowrap; }
th.sortable::after { content:" \\2195"; color:var(--muted); }
th[data-dir="asc"]::after { content:" \\2191"; color:var(--accent); }
th[data-dir="desc"]::after { content:" \\2193"; color:var(--accent); }
td.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
td.bad, span.bad { color:var(--bad); } td.good { color:var(--good); }
.controls { display:flex; gap:10px; align-items:center; margin:8px 0; flex-wrap:wrap; }
.controls input, .controls select { font:inherit; padding:4px 8px; border:1px solid var(--line); border-radius:6px; }
.hists { display:grid; grid-template-columns:repeat(auto-fill, minmax(360px, 1fr)); gap:14px; }
.hist { background:#fff; border:1px solid var(--line); border-radius:10px; padding:10px 12px; }
.hist h3 { font-size:14px; margin:0 0 6px; }
.case { background:#fff; border:1px solid var(--line); border-radius:10px; padding:12px 14px; margin-bottom:12px; }
.case .head { display:flex; justify-content:space-between; gap:12px; flex-wrap:wrap; }
.case .name { font-weight:600; }
.prompt { color:var(--muted); margin:4px 0 8px; font-size:13px; }
.row { display:flex; gap:8px; align-items:flex-start; overflow-x:auto; }
.row img { height:72px; border-radius:4px; border:1px solid var(--line); }
.row .ref { border:2px solid var(--accent); }
video { max-height:200px; max-width:360px; border-radius:6px; background:#000; }
details summary { cursor:pointer; color:var(--accent); }
.chips { display:flex; gap:6px; flex-wrap:wrap; margin-top:8px; }
.chip { background:#eef1f8; border-radius:999px; padding:2px 10px; font-size:12px; }
.chip.err { background:#fbe9e8; color:var(--bad); }
.note { color:var(--muted); font-size:13px; }
.tl { position:relative; margin:8px 0 4px; }
.tl .axis { position:relative; height:26px; background:#eef1f8; border-radius:4px; }
.tl .ev { position:absolute; top:0; height:26px; border-radius:4px; color:#fff; font-size:11px; padding:4px 6px;
          overflow:hidden; white-space:nowrap; text-overflow:ellipsis; }
.tl .frames { position:relative; height:56px; margin-top:4px; }
.tl .win { position:absolute; top:0; height:56px; display:flex; gap:2px; justify-content:center;
           align-items:flex-start; border-top:3px solid; padding-top:3px; overflow:hidden; }
.tl .win img { max-height:48px; max-width:calc(33% - 2px); border-radius:3px; }
.tl .ticks { position:relative; height:14px; font-size:11px; color:var(--muted); }
.tl .ticks span { position:absolute; transform:translateX(-50%); white-space:nowrap; }
.tl .ticks span:first-child { transform:none; } .tl .ticks span:last-child { transform:translateX(-100%); }
.tl table { width:auto; margin-top:4px; font-size:12px; }
.pair { display:flex; gap:16px; flex-wrap:wrap; }
"""

# Sorting and filtering for every ``table.cases``: click a header to sort (numbers by data-v, empty
# values last), type into ``#filter`` to keep the rows whose text contains it, ``#status`` to keep one
# status. The state can be given in the address: ``report.html#sort=total:desc&q=id001&status=failed``,
# and ``open=<output_name>`` opens that case.
TABLE_JS = """
(function () {
  var table = document.querySelector('table.cases'); if (!table) return;
  var body = table.tBodies[0], heads = table.tHead.rows[0].cells;
  var q = document.getElementById('filter'), st = document.getElementById('status');
  var shown = document.getElementById('shown');
  function key(row, i) {
    var c = row.cells[i], v = c.getAttribute('data-v');
    if (v === null) return c.textContent.trim().toLowerCase();
    return v === '' ? null : parseFloat(v);
  }
  function sortBy(i, dir) {
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a, i), y = key(b, i);
      if (x === null && y === null) return 0; if (x === null) return 1; if (y === null) return -1;
      var r = x < y ? -1 : x > y ? 1 : 0; return dir === 'asc' ? r : -r;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    for (var k = 0; k < heads.length; k++) heads[k].removeAttribute('data-dir');
    heads[i].setAttribute('data-dir', dir);
    table.setAttribute('data-sorted', heads[i].getAttribute('data-key') + ':' + dir);
  }
  function filter() {
    var text = q ? q.value.trim().toLowerCase() : '', want = st ? st.value : '', n = 0;
    Array.prototype.forEach.call(body.rows, function (r) {
      var ok = (!text || r.getAttribute('data-search').indexOf(text) >= 0) &&
               (!want || r.getAttribute('data-status') === want);
      r.style.display = ok ? '' : 'none'; if (ok) n++;
    });
    if (shown) shown.textContent = n + ' of ' + body.rows.length + ' cases shown';
  }
  Array.prototype.forEach.call(heads, function (h, i) {
    if (!h.classList.contains('sortable')) return;
    h.addEventListener('click', function () {
      sortBy(i, h.getAttribute('data-dir') === 'desc' ? 'asc' : 'desc');
    });
  });
  if (q) q.addEventListener('input', filter);
  if (st) st.addEventListener('change', filter);
  var state = {};
  location.hash.replace(/^#/, '').split('&').forEach(function (p) {
    var kv = p.split('='); if (kv[0]) state[kv[0]] = decodeURIComponent(kv[1] || '');
  });
  if (q && state.q) q.value = state.q;
  if (st && state.status) st.value = state.status;
  if (state.open) Array.prototype.forEach.call(body.rows, function (r) {
    if (r.getAttribute('data-name') !== state.open) return;
    var d = r.querySelector('details'); d.open = true; if (window.ipvgFill) window.ipvgFill(d);
  });
  if (state.sort) {
    var s = state.sort.split(':');
    for (var i = 0; i < heads.length; i++)
      if (heads[i].getAttribute('data-key') === s[0]) sortBy(i, s[1] === 'asc' ? 'asc' : 'desc');
  }
  filter();
})();
"""


def esc(text: object) -> str:
    return html.escape(str(text))


def fmt(v: float | None, digits: int = 4) -> str:
    if v is None:
        return "–"
    if abs(v) >= 100:
        return f"{v:.1f}"
    return f"{v:.{digits}f}"


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def num_cell(v: float | None, cls: str = "") -> str:
    """A sortable numeric table cell (``data-v`` empty for no value, sorted last)."""
    dv = "" if v is None else repr(float(v))
    return f'<td class="num {cls}" data-v="{dv}">{fmt(v)}</td>'


def page(title: str, body: str, script: str = "") -> str:
    """A whole self-contained HTML page."""
    js = f"<script>{script}</script>" if script else ""
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{esc(title)}</title>"
        f"<style>{CSS}</style></head><body><main>{body}</main>{js}</body></html>\n"
    )


def _nice_ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    """About ``n`` round tick values inside [lo, hi]."""
    step = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(step))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= step)
    first = math.ceil(lo / step - 1e-9) * step
    return [first + k * step for k in range(int((hi - first) / step + 1e-9) + 1)]


def histogram_svg(
    values: list[float], label: str = "value", bins: int = 20, width: int = 340, height: int = 170
) -> str:
    """An inline SVG histogram with labelled axes (x: ``label``, y: videos) and the mean marked.

    When every value is the same there is nothing to bin: a sentence says so instead.
    """
    if not values:
        return '<p class="note">no values</p>'
    lo, hi = min(values), max(values)
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):
        return f'<p class="note all-equal">all {len(values)} videos: {fmt(lo)} (every value is the same)</p>'
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    top = max(1, int(counts.max()))
    pad_l, pad_r, pad_t, pad_b = 44, 12, 22, 40
    plot_w, plot_h = width - pad_l - pad_r, height - pad_t - pad_b
    base_y, bw = pad_t + plot_h, plot_w / bins
    px = lambda v: pad_l + plot_w * (v - lo) / (hi - lo)  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">']
    for k, c in enumerate(counts):
        if c:
            h = plot_h * c / top
            parts.append(
                f'<rect x="{pad_l + k * bw + 1:.1f}" y="{base_y - h:.1f}" width="{max(1.0, bw - 2):.1f}" '
                f'height="{h:.1f}" fill="#3b6fd8"><title>[{edges[k]:.4g}, {edges[k + 1]:.4g}): {c}</title></rect>'
            )
    grey = 'font-size="11" fill="#6b7385"'
    parts.append(f'<line x1="{pad_l}" y1="{base_y}" x2="{pad_l + plot_w}" y2="{base_y}" stroke="#9aa1b2"/>')
    parts.append(f'<line x1="{pad_l}" y1="{pad_t}" x2="{pad_l}" y2="{base_y}" stroke="#9aa1b2"/>')
    ticks = _nice_ticks(lo, hi)
    min_gap = 34  # px between tick label centres, so that labels never overlap
    last = -1e9
    for t in ticks:
        x = px(t)
        if x - last < min_gap or x > pad_l + plot_w - 10:
            continue
        last = x
        parts.append(f'<line x1="{x:.1f}" y1="{base_y}" x2="{x:.1f}" y2="{base_y + 4}" stroke="#9aa1b2"/>')
        parts.append(f'<text x="{x:.1f}" y="{base_y + 15}" {grey} text-anchor="middle">{t:.3g}</text>')
    parts += [
        f'<text x="{pad_l + plot_w / 2:.1f}" y="{height - 4}" {grey} text-anchor="middle">{esc(label)}</text>',
        f'<text x="{pad_l - 5}" y="{pad_t + 4}" {grey} text-anchor="end">{top}</text>',
        f'<text x="{pad_l - 5}" y="{base_y}" {grey} text-anchor="end">0</text>',
        f'<text transform="translate(12 {pad_t + plot_h / 2:.1f}) rotate(-90)" {grey} '
        'text-anchor="middle">videos</text>',
    ]
    mean = float(np.mean(values))
    mx = px(mean)
    anchor = "end" if mx > pad_l + plot_w * 0.6 else "start"
    parts += [
        f'<line x1="{mx:.1f}" y1="{pad_t}" x2="{mx:.1f}" y2="{base_y}" stroke="#c8423b" stroke-dasharray="4 3"/>',
        f'<text x="{mx + (-4 if anchor == "end" else 4):.1f}" y="{pad_t - 8}" font-size="11" fill="#c8423b" '
        f'text-anchor="{anchor}">mean {mean:.4g}</text>',
        "</svg>",
    ]
    return "".join(parts)
