"""``compare.html`` of ``ipvg score compare``: one self-contained page (see :mod:`.score_compare`)."""

from __future__ import annotations

import numpy as np

from ipvgkit.stages.score_html import data_uri, esc, fmt, page
from ipvgkit.stages.score_rows import read_thumbs

SIDE_FRAMES = 4  # frames of each run shown for a case where the runs disagree


def _means_table(data: dict) -> str:
    names = [r["name"] for r in data["runs"]]
    head = "<tr><th>metric</th>" + "".join(f"<th>{esc(n)}</th>" for n in names) + "</tr>"
    rows = []
    for m, per in data["means"].items():
        hib = data["higher_is_better"][m]
        means = [per[n]["mean"] for n in names]
        got = [v for v in means if v is not None]
        best = (max(got) if hib else min(got)) if got else None
        cells = []
        for n in names:
            e = per[n]
            if e["mean"] is None:
                cells.append("<td class='num'>–</td>")
                continue
            b = " style='font-weight:600'" if e["mean"] == best and len(got) > 1 else ""
            cells.append(
                f"<td class='num'{b}>{fmt(e['mean'])} <span class='note'>[{fmt(e['lo'])}, {fmt(e['hi'])}]"
                f" n={e['n']}</span></td>"
            )
        label = "total (mean of per-case totals)" if m == "total" else m
        rows.append(
            f"<tr><td>{esc(label)} <span class='note'>{'↑' if hib else '↓'}</span></td>{''.join(cells)}</tr>"
        )
    totals = "".join(f"<td class='num'>{fmt(r['total'])}</td>" for r in data["runs"])
    rows.append(f"<tr><td>total of the means (summary.json)</td>{totals}</tr>")
    return f"<table class='means'><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


def _pairs_table(data: dict) -> str:
    head = "<tr><th>run A</th><th>run B</th><th>metric</th><th>A wins</th><th>B wins</th><th>ties</th><th>p (sign test)</th></tr>"
    rows = []
    for p in data["pairs"]:
        strong = " class='bad'" if p["p_value"] < 0.05 else ""
        rows.append(
            f"<tr><td>{esc(p['a'])}</td><td>{esc(p['b'])}</td><td>{esc(p['metric'])}</td>"
            f"<td class='num'>{p['wins']}</td><td class='num'>{p['losses']}</td><td class='num'>{p['ties']}</td>"
            f"<td class='num'{strong}>{p['p_value']:.4g}</td></tr>"
        )
    return f"<table class='pairs'><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


def _side_by_side(case: dict, runs: list) -> str:
    cols = []
    for r in runs:
        thumbs = read_thumbs(r.path, case["output_name"])
        if thumbs is None or not thumbs.frames:
            imgs = '<span class="note">no frames stored</span>'
        else:
            keys = list(thumbs.frames)
            pick = [keys[int(p)] for p in np.linspace(0, len(keys) - 1, min(SIDE_FRAMES, len(keys)))]
            imgs = "".join(
                f'<img src="{data_uri(thumbs.frames[i], "image/jpeg")}" alt="frame {i}">' for i in pick
            )
        v = case["values"].get(r.name)
        cols.append(
            f'<div><div class="name">{esc(r.name)} <span class="note">{esc(case["by"])} {fmt(v)}</span></div>'
            f'<div class="row">{imgs}</div></div>'
        )
    return (
        f'<div class="case"><div class="head"><span class="name">{esc(case["output_name"])}</span>'
        f'<span class="note">spread {fmt(case["spread"])}</span></div><div class="pair">{"".join(cols)}</div></div>'
    )


def render_compare(data: dict, runs: list) -> str:
    bs = data["bootstrap"]
    notes = "".join(f"<div>{esc(n)}</div>" for n in data["notes"])
    runs_html = ", ".join(
        f"{esc(r['name'])} ({r['cases']} cases, {esc(r['preset'] or 'custom')})" for r in data["runs"]
    )
    body = (
        f"<h1>ipvg score compare</h1><div class='sub'>{runs_html}</div>"
        + (f"<div class='notes'>{notes}</div>" if notes else "")
        + f"<h2>Means with {int(bs['level'] * 100)} % bootstrap intervals</h2>"
        f"<p class='note'>{bs['resamples']} resamples of the cases with replacement, seed {bs['seed']}, "
        f"percentile interval; the best run per row in bold.</p>{_means_table(data)}"
        f"<h2>Per-case wins and losses</h2><p class='note'>{esc(data['sign_test'])}; p &lt; 0.05 in red.</p>"
        f"{_pairs_table(data)}"
        f"<h2>Where the runs disagree most</h2>"
        + "".join(_side_by_side(c, runs) for c in data["disagreements"])
    )
    return page("ipvg score compare", body)
