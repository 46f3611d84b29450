"""``timeline_alignment`` (Track 2, ipvgkit's own definition; see docs/metrics.md).

For a case with timeline events e = 1..E (event e happens in window W_e and is described by text t_e):

    sim(W, t)  = mean over the sampled frames f of window W of cos(image_emb(f), text_emb(t))
    margin_e   = sim(W_e, t_e) - max_{f != e} sim(W_f, t_e)
    value      = mean_e margin_e
    order_acc  = share of events e with argmax_f sim(W_f, t_e) == e      (reported in ``extra``)

Windows are turned into frames with the case's timeline units (seconds x fps, or fraction x n_frames);
a window keeps the frames i with start <= i < end, of which ``frames_per_event`` are sampled at
linspace. Events whose window holds no frame are left out (and counted). The embedder is CLIP ViT-B/32
by default; any object with ``embed_images(frames, batch_size)`` and ``embed_texts(texts)`` returning
L2-normalised rows can be passed instead.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from ipvgkit.data.cases import Case
from ipvgkit.data.timeline import events_in_frames
from ipvgkit.metrics.base import Metric, MetricContext, MetricResult, VideoSample
from ipvgkit.metrics.clip import CLIP_B32, ClipEncoder
from ipvgkit.metrics.registry import register
from ipvgkit.weights import ModelFile, locate


class Embedder(Protocol):
    """What timeline_alignment needs from an image-text model (rows L2-normalised)."""

    def embed_images(self, frames: np.ndarray, batch_size: int = 16) -> np.ndarray: ...

    def embed_texts(self, texts: list[str]) -> np.ndarray: ...


def event_bounds(case: Case, n_frames: int, fps: float) -> list[tuple[int, int]]:
    """Per timeline event, its window as frame indices ``[lo, hi)`` (clipped to the video; may be empty)."""
    out: list[tuple[int, int]] = []
    for f0, f1 in events_in_frames(case.timeline or [], case.timeline_units, n_frames, fps):
        lo, hi = max(0, math.ceil(f0 - 1e-9)), min(n_frames, math.ceil(f1 - 1e-9))
        out.append((lo, max(lo, hi)))
    return out


def event_windows(case: Case, n_frames: int, fps: float, per_event: int) -> list[list[int]]:
    """Per timeline event, the sampled frame indices inside its window (possibly empty)."""
    out: list[list[int]] = []
    for lo, hi in event_bounds(case, n_frames, fps):
        inside = list(range(lo, hi))
        if len(inside) > per_event:
            pos = np.linspace(0, len(inside) - 1, per_event)
            inside = [inside[int(p)] for p in pos]
        out.append(inside)
    return out


def alignment_from_sims(sims: np.ndarray) -> tuple[float, float, list[float]]:
    """(value, order accuracy, margins) from ``sims[w, e]`` = sim(window w, text of event e)."""
    n = sims.shape[0]
    margins, hits = [], 0
    for e in range(n):
        others = np.delete(sims[:, e], e)
        margins.append(float(sims[e, e] - others.max()))
        hits += int(int(np.argmax(sims[:, e])) == e)
    return float(np.mean(margins)), hits / n, margins


@register
class TimelineAlignment(Metric):
    """Does each timeline event happen in its own window? Margin of CLIP similarity (see module doc)."""

    name = "timeline_alignment"
    family = "timeline"
    description = "mean margin of CLIP sim(own window, event text) over the best other window; order accuracy"

    def __init__(self, frames_per_event: int = 8, embedder: Embedder | None = None):
        self.frames_per_event = frames_per_event
        self.embedder = embedder
        self.batch_size = 16

    def options(self) -> dict:
        return {"frames_per_event": self.frames_per_event}

    def model_files(self) -> list[ModelFile]:
        return [] if self.embedder is not None else [CLIP_B32]

    def frame_indices(self, n_frames: int) -> list[int]:
        # The frames depend on the case's timeline: see frames_for().
        return []

    def frames_for(self, case: Case, n_frames: int, fps: float) -> list[int]:
        wins = event_windows(case, n_frames, fps, self.frames_per_event)
        return sorted({i for w in wins for i in w})

    def load(self, ctx: MetricContext) -> None:
        self.batch_size = ctx.batch_size
        if self.embedder is None:
            self.embedder = ClipEncoder.shared(locate(CLIP_B32, ctx.models_dir), ctx.device)

    def compute(self, sample: VideoSample) -> MetricResult:
        if self.embedder is None:
            raise RuntimeError("timeline_alignment: load() was not called")
        case = sample.case
        if not case.timeline:
            return MetricResult.not_applicable("case has no timeline")
        wins = event_windows(case, sample.n_frames, float(sample.info.fps), self.frames_per_event)
        keep = [k for k, w in enumerate(wins) if w]
        dropped = len(wins) - len(keep)
        if len(keep) < 2:
            return MetricResult(
                None,
                {"events": len(wins), "events_without_frames": dropped},
                "needs at least 2 timeline events with frames inside the video",
            )
        flat = [i for k in keep for i in wins[k]]
        img = self.embedder.embed_images(sample.frames(flat), self.batch_size)
        txt = self.embedder.embed_texts([case.timeline[k].text for k in keep])
        sims = np.zeros((len(keep), len(keep)))
        pos = 0
        for w, k in enumerate(keep):
            e = img[pos : pos + len(wins[k])]
            pos += len(wins[k])
            sims[w] = (e @ txt.T).mean(axis=0)
        value, order_acc, margins = alignment_from_sims(sims)
        extra = {
            "order_accuracy": order_acc,
            "events": len(wins),
            "events_without_frames": dropped,
            "margins": margins,
            "own_window_sim": [float(sims[i, i]) for i in range(len(keep))],
        }
        return MetricResult(value, extra)
