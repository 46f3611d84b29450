"""timeline_alignment on synthetic videos whose right answer is known.

A deterministic colour embedder stands in for CLIP where the test needs exact numbers: a frame embeds
as the one-hot of its dominant colour (red, green, blue) and a text as the one-hot of the colour word
it contains. A video whose colours follow the events' order must score the maximum (1.0, order accuracy
1.0); a shuffled one must score lower. The CLIP path is exercised with a tiny real CLIP.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ipvgkit.data.cases import Case, Event
from ipvgkit.media import encode_video, probe_video
from ipvgkit.metrics import MetricContext, VideoSample, get_metric
from ipvgkit.metrics.timeline import alignment_from_sims, event_windows
from tests.support.tiny_models import make_tiny_clip

COLOURS = {"red": (230, 20, 20), "green": (20, 230, 20), "blue": (20, 20, 230)}


class ColourEmbedder:
    """Images -> one-hot of the dominant channel; texts -> one-hot of the colour word."""

    def embed_images(self, frames: np.ndarray, batch_size: int = 16) -> np.ndarray:
        means = frames.reshape(len(frames), -1, 3).mean(axis=1)
        return np.eye(3)[np.argmax(means, axis=1)]

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        return np.stack([np.eye(3)[[c in t for c in COLOURS].index(True)] for t in texts])


def colour_video(path: Path, order: list[str], seconds_each: int = 1, fps: int = 8) -> Path:
    frames = []
    for c in order:
        frames += [np.full((32, 32, 3), COLOURS[c], np.uint8)] * (seconds_each * fps)
    return encode_video(np.stack(frames), path, fps=fps, crf=10)


def timeline_case(units: str = "seconds") -> Case:
    scale = 1.0 if units == "seconds" else 1 / 3
    events = [
        Event(0 * scale, 1 * scale, "a red light"),
        Event(1 * scale, 2 * scale, "the green field"),
        Event(2 * scale, 3 * scale, "blue water"),
    ]
    return Case("c", 2, [], "three colours", "v.mp4", timeline=events, timeline_units=units)


def _sample(case: Case, path: Path, metric) -> VideoSample:
    info = probe_video(path, count_frames=True)
    return VideoSample(case, path, info, metric.frames_for(case, info.n_frames, info.fps))


def _metric():
    m = get_metric("timeline_alignment", embedder=ColourEmbedder())
    m.load(MetricContext())
    return m


@pytest.mark.parametrize("units", ["seconds", "fraction"])
def test_right_order_scores_the_maximum(tmp_path, units):
    m = _metric()
    case = timeline_case(units)
    r = m.compute(_sample(case, colour_video(tmp_path / "v.mp4", ["red", "green", "blue"]), m))
    assert r.value == pytest.approx(1.0)
    assert r.extra["order_accuracy"] == 1.0
    assert r.extra["margins"] == pytest.approx([1.0, 1.0, 1.0])


def test_shuffled_video_scores_lower(tmp_path):
    m = _metric()
    case = timeline_case()
    right = m.compute(_sample(case, colour_video(tmp_path / "a.mp4", ["red", "green", "blue"]), m))
    wrong = m.compute(_sample(case, colour_video(tmp_path / "b.mp4", ["green", "blue", "red"]), m))
    assert wrong.value < right.value
    assert wrong.value == pytest.approx(-1.0)  # every event's text matches another window only
    assert wrong.extra["order_accuracy"] == 0.0
    half = m.compute(_sample(case, colour_video(tmp_path / "c.mp4", ["red", "blue", "green"]), m))
    assert wrong.value < half.value < right.value
    assert half.extra["order_accuracy"] == pytest.approx(1 / 3)


def test_windows_and_units():
    case = timeline_case("seconds")
    assert event_windows(case, 24, 8.0, 8) == [list(range(0, 8)), list(range(8, 16)), list(range(16, 24))]
    assert event_windows(case, 24, 8.0, 3) == [[0, 3, 7], [8, 11, 15], [16, 19, 23]]
    frac = timeline_case("fraction")
    assert event_windows(frac, 30, 8.0, 100) == [list(range(0, 10)), list(range(10, 20)), list(range(20, 30))]
    # a window past the end of the video holds no frame
    assert event_windows(case, 12, 8.0, 8)[2] == []


def test_alignment_from_sims_definition():
    sims = np.array([[0.9, 0.1], [0.2, 0.5]])  # sims[window, event]
    value, acc, margins = alignment_from_sims(sims)
    assert margins == pytest.approx([0.9 - 0.2, 0.5 - 0.1])
    assert value == pytest.approx(np.mean(margins)) and acc == 1.0


def test_not_applicable_and_too_short(tmp_path):
    m = _metric()
    plain = Case("c", 1, [], "p", "v.mp4")
    path = colour_video(tmp_path / "v.mp4", ["red", "green"])
    r = m.compute(_sample(plain, path, m))
    assert r.value is None and r.extra["not_applicable"] and not r.is_failure
    r2 = m.compute(_sample(timeline_case(), path, m))  # 2 s video: the third window is empty
    assert r2.value is not None and r2.extra["events_without_frames"] == 1
    short = colour_video(tmp_path / "s.mp4", ["red"])
    r3 = m.compute(_sample(timeline_case(), short, m))
    assert r3.value is None and r3.is_failure and "2 timeline events" in r3.error


def test_with_tiny_clip_from_models_dir(tmp_path):
    from ipvgkit.media import read_video
    from ipvgkit.metrics.clip import ClipEncoder

    make_tiny_clip(tmp_path / "models" / "clip-vit-base-patch32")
    m = get_metric("timeline_alignment", frames_per_event=4)
    m.load(MetricContext(models_dir=tmp_path / "models"))
    case = timeline_case()
    path = colour_video(tmp_path / "v.mp4", ["red", "green", "blue"])
    r = m.compute(_sample(case, path, m))
    # reference: the numpy formula on the CLIP embeddings of the same frames (4 per 1 s window at 8 fps)
    enc = ClipEncoder.shared(tmp_path / "models" / "clip-vit-base-patch32", "cpu")
    frames = read_video(path)
    wins = [[0, 2, 4, 7], [8, 10, 12, 15], [16, 18, 20, 23]]
    txt = enc.embed_texts([e.text for e in case.timeline])
    sims = np.stack([(enc.embed_images(frames[w]) @ txt.T).mean(axis=0) for w in wins])
    margins = [sims[e, e] - max(sims[w, e] for w in range(3) if w != e) for e in range(3)]
    assert r.value == pytest.approx(float(np.mean(margins)), abs=1e-6)
    hits = [int(np.argmax(sims[:, e]) == e) for e in range(3)]
    assert r.extra["order_accuracy"] == pytest.approx(np.mean(hits))
