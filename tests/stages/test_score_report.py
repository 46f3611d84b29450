"""report.html: every case in the table, the timeline strip, and sorting/filtering in a real headless
browser (chromium, when installed)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ipvgkit.media import encode_video
from ipvgkit.metrics import get_metric
from ipvgkit.metrics.timeline import TimelineAlignment
from ipvgkit.stages.score import ScoreConfig, run_scoring
from ipvgkit.stages.score_html import histogram_svg
from tests.stages.test_score import face_clip, make_submission, make_testset

BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
needs_browser = pytest.mark.skipif(
    BROWSER is None, reason="no chromium on PATH (apt-get install chromium to run the browser test)"
)


def dump_dom(page: Path, fragment: str = "") -> str:
    """The page's DOM after its scripts ran, from headless chromium."""
    cmd = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri() + fragment]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def _table_rows(dom: str) -> list[tuple[str, bool]]:
    """(data-name, hidden) of every row of the cases table, in DOM order."""
    body = dom[dom.index('<table class="cases"') :]
    body = body[: body.index("</table>")]
    rows = re.findall(r'<tr data-name="([^"]+)"([^>]*)>', body)
    return [(name, "display: none" in attrs) for name, attrs in rows]


@pytest.fixture
def run(tmp_path, tom_hanks):
    ts = make_testset(tmp_path, tom_hanks, n_ids=3, prompts=2)
    sub = make_submission(tmp_path, ts, tom_hanks, skip=("id002/prompt2.mp4",), shift=1)
    for k, name in enumerate(("id001/prompt2.mp4", "id003/prompt1.mp4")):  # some videos move more
        encode_video(face_clip(tom_hanks, shift=4 + 3 * k, seed=k), sub / name, fps=8)
    rep = run_scoring(
        ScoreConfig(submission=sub, cases=ts, out=tmp_path / "out", metrics=["motion_amplitude"])
    )
    return rep


def test_every_case_is_in_the_table_with_its_video(run):
    html = (run.out / "report.html").read_text()
    names = [r.output_name for r in run.rows]
    assert [n for n, _ in _table_rows(html)] == names
    assert html.count("data:video/mp4;base64,") == 5  # small run: each video embedded once
    assert "videos embedded in this file" in html
    assert 'data-status="missing"' in html and "Best " in html and "Worst " in html
    assert "<script src" not in html and "https://" not in html


def test_histogram_has_axis_labels_and_says_when_all_values_are_equal():
    svg = histogram_svg([0.1, 0.2, 0.2, 0.9], label="motion_amplitude")
    assert ">motion_amplitude</text>" in svg and ">videos</text>" in svg
    xs = [float(x) for x in re.findall(r'<text x="([\d.]+)" y="\d+" font-size="11" fill="#6b7385" '
                                       r'text-anchor="middle">[-\d.e]+</text>', svg)]  # fmt: skip
    assert len(xs) >= 2 and min(np.diff(xs)) >= 34  # tick labels never overlap
    same = histogram_svg([0.5] * 7)
    assert "all 7 videos" in same and "<svg" not in same


@needs_browser
def test_sorting_and_filtering_in_a_real_browser(run):
    page = run.out / "report.html"
    values = {r.output_name: r.metrics["motion_amplitude"] for r in run.rows}
    dom = dump_dom(page, "#sort=motion_amplitude:desc")
    assert 'data-sorted="motion_amplitude:desc"' in dom
    order = [n for n, _ in _table_rows(dom)]
    assert sorted(order) == sorted(values)  # every case, once
    scored = sorted((n for n in values if values[n] is not None), key=lambda n: -values[n])
    assert order == scored + ["id002/prompt2.mp4"]  # no value sorts last
    dom = dump_dom(page, "#sort=motion_amplitude:asc&q=id003")
    rows = _table_rows(dom)
    assert [n for n, _ in rows][:2] == sorted(scored, key=lambda n: values[n])[:2]
    assert {n for n, hidden in rows if not hidden} == {"id003/prompt1.mp4", "id003/prompt2.mp4"}
    assert "2 of 6 cases shown" in dom
    dom = dump_dom(page, "#status=missing")
    assert [n for n, hidden in _table_rows(dom) if not hidden] == ["id002/prompt2.mp4"]


def _row_html(dom: str, name: str) -> str:
    start = dom.index(f'<tr data-name="{name}"')
    return dom[start : dom.index("</tr>", start)]


@needs_browser
def test_a_case_opens_with_its_frames_and_video_in_a_real_browser(run):
    page = run.out / "report.html"
    closed = _row_html(dump_dom(page), "id003/prompt2.mp4")
    assert "data-i=" in closed and 'src="data:' not in closed  # filled when opened
    opened = _row_html(dump_dom(page, "#open=id003/prompt2.mp4"), "id003/prompt2.mp4")
    assert "<details open" in opened
    assert opened.count('src="data:image/jpeg;base64,') >= 1 + 8  # reference + stored frames
    assert 'src="data:video/mp4;base64,' in opened and 'poster="data:image/jpeg' in opened


class MeanColourEmbedder:
    """A real (if crude) image-text embedder: images by their mean colour, texts by a colour word."""

    COLOURS = {"red": [1.0, 0.1, 0.1], "blue": [0.1, 0.1, 1.0]}

    def embed_images(self, frames, batch_size=16):
        v = frames.reshape(len(frames), -1, 3).mean(1)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def embed_texts(self, texts):
        v = np.array([self.COLOURS[t.split()[-1]] for t in texts])
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def _track2(tmp_path, tom_hanks) -> tuple[Path, Path]:
    root = tmp_path / "t2"
    (root / "imgs").mkdir(parents=True)
    shutil.copy(tom_hanks, root / "imgs" / "a.png")
    entry = {
        "img_paths": ["imgs/a.png"],
        "class_label": ["man"],
        "global_prompt": "the screen turns red and then blue",
        "temporal_captions": [
            {"start": 0, "end": 0.5, "description": "it is red"},
            {"start": 0.5, "end": 1, "description": "it is blue"},
        ],
    }
    (root / "eval.json").write_text(json.dumps({"1": entry}))
    frames = np.zeros((16, 64, 64, 3), np.uint8)
    frames[:8, ..., 0] = 220
    frames[8:, ..., 2] = 220
    encode_video(frames, tmp_path / "sub" / "1.mp4", fps=8)
    return root / "eval.json", tmp_path / "sub"


def test_track2_timeline_strip_with_per_event_similarity(tmp_path, tom_hanks):
    cases, sub = _track2(tmp_path, tom_hanks)
    metrics = [TimelineAlignment(embedder=MeanColourEmbedder()), get_metric("timeline_contrast")]
    rep = run_scoring(ScoreConfig(submission=sub, cases=cases, out=tmp_path / "out"), metrics=metrics)
    assert rep.ok, rep.problems()
    html = (tmp_path / "out" / "report.html").read_text()
    strip = html[html.index('<div class="tl">') :]
    assert "1. it is red" in strip and "2. it is blue" in strip
    assert strip.count('<div class="win"') == 2 and 'alt="frame 0"' in strip
    sims = rep.rows[0].extra["timeline_alignment"]["own_window_sim"]
    assert f"{sims[0]:.4f}" in strip and f"{sims[1]:.4f}" in strip
    assert "contrast to next" in strip and "not measured" not in strip


def test_track2_without_alignment_says_it_was_not_measured(tmp_path, tom_hanks):
    cases, sub = _track2(tmp_path, tom_hanks)
    rep = run_scoring(ScoreConfig(submission=sub, cases=cases, out=tmp_path / "out", preset="offline"))
    assert any("Track 2" in n and "not measured" in n for n in rep.summary["notes"])
    assert rep.rows[0].metrics["timeline_contrast"] > 0.9  # red, then blue: a clean change at the boundary
    html = (tmp_path / "out" / "report.html").read_text()
    assert "timeline alignment not measured" in html and "Track 2: 1 case(s) have a timeline" in html
