"""One case in ``report.html``: its video (embedded or linked), the stored frame thumbnails, the metric
chips and, for a Track 2 case, the timeline strip (events as coloured bars over time, the frames
sampled inside each window, the per-event similarity where ``timeline_alignment`` ran)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ipvgkit.data.cases import Case
from ipvgkit.stages.score_html import data_uri, esc, fmt
from ipvgkit.stages.score_rows import EVENT_FRAMES, ScoreRow, Thumbs, jpeg_bytes

EMBED_LIMIT_MB = 20  # videos are embedded in report.html when all of them together are at most this big
COLOURS = ("#3b6fd8", "#e07b39", "#2f8a4c", "#9b59b6", "#c8423b", "#16a2a8", "#b8860b", "#6b7385")
ALIGNMENT = "timeline_alignment"
CONTRAST = "timeline_contrast"


@dataclass
class VideoMode:
    """How the report shows videos (embedded as base64, or links relative to the report's folder), and
    the page's assets: every image or embedded video is stored once (``assets``: key -> data URI) and
    referenced by key from the elements (``data-i`` for a src, ``data-p`` for a poster); the page's
    script fills them in when their part of the page is shown."""

    embed: bool
    report_dir: Path
    total_mb: float
    assets: dict[str, str] = field(default_factory=dict)
    refs: dict[str, bytes | None] = field(default_factory=dict)  # reference image path -> thumbnail

    def key(self, data: bytes, mime: str) -> str:
        """The key of ``data`` among the page's assets (the same bytes are stored once)."""
        k = "a" + hashlib.sha1(data).hexdigest()[:16]
        if k not in self.assets:
            self.assets[k] = data_uri(data, mime)
        return k

    def img(self, data: bytes, **attrs: str) -> str:
        extra = "".join(f' {k}="{esc(v)}"' for k, v in attrs.items())
        return f'<img data-i="{self.key(data, "image/jpeg")}"{extra}>'

    def describe(self) -> str:
        if self.embed:
            return f"videos embedded in this file ({self.total_mb:.2f} MB; limit {EMBED_LIMIT_MB} MB)"
        return (
            f"videos linked relative to this file ({self.total_mb:.1f} MB is over the {EMBED_LIMIT_MB} MB "
            "embedding limit): keep report.html where it is relative to the submission folder"
        )


def video_mode(rows: list[ScoreRow], report_dir: Path) -> VideoMode:
    total = sum(r.video_size or 0 for r in rows if not r.missing) / 1e6
    return VideoMode(total <= EMBED_LIMIT_MB, Path(report_dir), total)


def video_html(row: ScoreRow, mode: VideoMode, thumbs: Thumbs | None = None) -> str:
    if row.missing or not row.video:
        return '<span class="note">no video</span>'
    if mode.embed:
        try:
            src = f'data-i="{mode.key(Path(row.video).read_bytes(), "video/mp4")}"'
        except OSError as e:
            return f'<span class="note">video not readable ({esc(e.strerror or e)})</span>'
    else:
        src = f'src="{esc(Path(os.path.relpath(row.video, mode.report_dir)).as_posix())}"'
    first = next(iter(thumbs.frames.values()), None) if thumbs else None
    poster = f' data-p="{mode.key(first, "image/jpeg")}"' if first else ""
    return f'<video controls preload="metadata"{poster} {src}></video>'


def ref_thumb(case: Case | None, mode: VideoMode) -> bytes | None:
    """The case's first reference image as a thumbnail (made once per image file)."""
    if case is None or not case.ref_images:
        return None
    path = str(case.ref_images[0])
    if path not in mode.refs:
        from PIL import Image

        try:
            with Image.open(path) as im:  # as stored: what the metrics scored (metrics.base.ref_images)
                mode.refs[path] = jpeg_bytes(np.asarray(im.convert("RGB")))
        except (OSError, ValueError):
            mode.refs[path] = None
    return mode.refs[path]


def strip_html(thumbs: Thumbs | None, ref: bytes | None, mode: VideoMode) -> str:
    imgs = [mode.img(ref, **{"class": "ref", "alt": "reference", "title": "reference image"})] if ref else []
    if thumbs is None:
        imgs.append('<span class="note">no frames stored (the video could not be read)</span>')
    else:
        for i, b in thumbs.frames.items():
            t = f"frame {i}" + (f", {i / thumbs.fps:.2f} s" if thumbs.fps else "")
            imgs.append(mode.img(b, alt=t, title=t))
    return f'<div class="row">{"".join(imgs)}</div>'


def chips_html(row: ScoreRow, names: list[str]) -> str:
    chips = []
    for n in names:
        v, err = row.metrics.get(n), row.errors.get(n)
        if v is None and err:
            cls = "chip" if row.not_applicable.get(n) else "chip err"
            chips.append(f'<span class="{cls}">{esc(n)}: {esc(err[:80])}</span>')
        else:
            chips.append(f'<span class="chip">{esc(n)} {fmt(v)}</span>')
    return f'<div class="chips">{"".join(chips)}</div>'


def _per_event(row: ScoreRow, bounds: list[tuple[int, int]]) -> tuple[list[str], list[str], str]:
    """Per event: the similarity and the margin cells, and a sentence when alignment was not measured."""
    n = len(bounds)
    sims, margins = ["–"] * n, ["–"] * n
    if ALIGNMENT not in row.metrics:
        return (
            sims,
            margins,
            "timeline alignment not measured (timeline_alignment did not run; it needs CLIP)",
        )
    ex = row.extra.get(ALIGNMENT, {})
    if row.metrics[ALIGNMENT] is None:
        return sims, margins, f"timeline alignment failed: {row.errors.get(ALIGNMENT, 'no value')}"
    kept = [k for k, (lo, hi) in enumerate(bounds) if hi > lo]
    for j, k in enumerate(kept):
        if j < len(ex.get("own_window_sim", [])):
            sims[k] = f"{ex['own_window_sim'][j]:.4f}"
        if j < len(ex.get("margins", [])):
            margins[k] = f"{ex['margins'][j]:+.4f}"
    acc = ex.get("order_accuracy")
    note = f"alignment {fmt(row.metrics[ALIGNMENT])}" + (
        f", order accuracy {acc:.2f}" if acc is not None else ""
    )
    return sims, margins, note


def timeline_html(case: Case | None, row: ScoreRow, thumbs: Thumbs | None, mode: VideoMode) -> str:
    """The timeline strip of a Track 2 case ("" for a case without a timeline)."""
    if case is None or not case.timeline:
        return ""
    if thumbs is None or thumbs.n_frames < 1:
        return '<p class="note">timeline: no frames stored for this video</p>'
    from ipvgkit.metrics.timeline import event_bounds

    n, fps = thumbs.n_frames, thumbs.fps
    bounds = event_bounds(case, n, fps)
    pct = lambda i: 100.0 * i / n  # noqa: E731
    bars = "".join(
        f'<div class="ev" style="left:{pct(lo):.2f}%;width:{max(0.5, pct(hi) - pct(lo)):.2f}%;'
        f'background:{COLOURS[k % len(COLOURS)]}" title="{esc(ev.text)}">{k + 1}. {esc(ev.text)}</div>'
        for k, (ev, (lo, hi)) in enumerate(zip(case.timeline, bounds, strict=True))
    )
    boxes = []
    for k, (lo, hi) in enumerate(bounds):
        inside = [i for i in thumbs.frames if lo <= i < hi]
        if len(inside) > EVENT_FRAMES:
            inside = [inside[round(p)] for p in np.linspace(0, len(inside) - 1, EVENT_FRAMES)]
        imgs = "".join(
            mode.img(thumbs.frames[i], alt=f"frame {i}", title=f"event {k + 1}: frame {i} ({i / fps:.2f} s)")
            for i in inside
        )
        boxes.append(
            f'<div class="win" style="left:{pct(lo):.2f}%;width:{pct(hi) - pct(lo):.2f}%;'
            f'border-color:{COLOURS[k % len(COLOURS)]}">{imgs}</div>'
        )
    dur = n / fps if fps else 0.0
    ticks = "".join(f'<span style="left:{p}%">{dur * p / 100:.1f} s</span>' for p in (0, 50, 100))
    sims, margins, note = _per_event(row, bounds)
    contrast = row.extra.get(CONTRAST, {}).get("boundaries") if CONTRAST in row.metrics else None
    rows = []
    for k, (ev, (lo, hi)) in enumerate(zip(case.timeline, bounds, strict=True)):
        window = f"{lo / fps:.2f}–{hi / fps:.2f} s" if fps else f"frames {lo}–{hi}"
        has = contrast and k < len(contrast) and contrast[k] is not None
        c = f"<td class='num'>{contrast[k]:.3f}</td>" if has else "<td></td>"
        rows.append(
            f'<tr><td><span style="color:{COLOURS[k % len(COLOURS)]}">■</span> {k + 1}</td>'
            f"<td>{esc(ev.text[:120])}</td><td>{window}</td><td class='num'>{hi - lo}</td>"
            f"<td class='num'>{sims[k]}</td><td class='num'>{margins[k]}</td>{c if contrast else ''}</tr>"
        )
    head = (
        "<tr><th>event</th><th>text</th><th>window</th><th>frames</th><th>similarity (own window)</th>"
        "<th>margin</th>" + ("<th>contrast to next</th>" if contrast else "") + "</tr>"
    )
    return (
        f'<div class="tl"><div class="axis">{bars}</div><div class="frames">{"".join(boxes)}</div>'
        f'<div class="ticks">{ticks}</div><p class="note tl-note">{esc(note)}</p>'
        f"<table>{head}{''.join(rows)}</table></div>"
    )


def case_block(
    row: ScoreRow, case: Case | None, names: list[str], thumbs: Thumbs | None, mode: VideoMode
) -> str:
    """The full view of one case (best/worst lists and the details of the table)."""
    prompt = esc((case.prompt if case else "")[:300])
    return (
        f'<div class="case"><div class="head"><span class="name">{esc(row.output_name)}'
        f' <span class="note">({esc(row.case_id)})</span></span>'
        f'<span class="total">total {fmt(row.total)}</span></div><div class="prompt">{prompt}</div>'
        f'<div class="pair">{video_html(row, mode, thumbs)}{strip_html(thumbs, ref_thumb(case, mode), mode)}</div>'
        f"{timeline_html(case, row, thumbs, mode)}{chips_html(row, names)}</div>"
    )
