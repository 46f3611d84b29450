"""Frame arithmetic of the video models (SPEC §5), as pure functions.

Wan's VAE compresses time 4x: ``F`` pixel frames (``F = 4k + 1``) become ``(F - 1) / 4 + 1`` latent frames.
Pixel frame ``f`` belongs to latent frame 0 if ``f == 0``, else to ``ceil(f / 4)``; so latent frame
``l >= 1`` covers pixel frames ``4l - 3 .. 4l``. A time ``t`` (seconds) is pixel frame ``t * fps``; a
timeline given in fractions of the video is first turned into seconds with ``t * duration`` where
``duration = num_frames / fps``.

Timeline events are mapped to latent frames two ways:

* hard (``event_of_latent_frames``): each latent frame gets the event that covers most of its pixel
  frames (ties go to the earlier event), or -1 when none of its pixel frames lies inside an event;
* soft (``soft_event_weights``): a weight in (0, 1] per latent frame and event, the product of two
  sigmoid ramps ``sigmoid((c - a) / tau) * sigmoid((b - c) / tau)`` where ``a``/``b`` are the event's
  start/end in latent-frame units (``t * fps / 4``), ``c`` is the centre of the latent frame's pixel
  frames in the same units and ``tau`` defaults to 0.25 (the ramp rises from 12% to 88% over one
  latent frame). An event starting at 0 has no start ramp and one reaching the last pixel frame's time
  ``(F - 1) / fps`` has no end ramp (the video's own edges are not event borders).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ipvgkit.data import timeline
from ipvgkit.data.cases import Event

TEMPORAL_FACTOR = 4  # Wan VAE: 4 pixel frames per latent frame (after the first)
SPATIAL_FACTOR = 8  # Wan VAE: 8x8 pixels per latent pixel
PATCH = (1, 2, 2)  # Wan transformer patch (t, h, w)
SIZE_MULTIPLE = SPATIAL_FACTOR * PATCH[1]  # height/width must be multiples of 16

# ConsisID (CogVideoX-5B based) works at one fixed size.
CONSISID_FRAMES = 49
CONSISID_HEIGHT = 480
CONSISID_WIDTH = 720
CONSISID_FPS = 8.0


def is_valid_frame_count(num_frames: int) -> bool:
    """True when ``num_frames`` has the form ``4k + 1`` (k >= 0)."""
    return num_frames >= 1 and (num_frames - 1) % TEMPORAL_FACTOR == 0


def nearest_valid_frame_count(num_frames: int) -> int:
    """The closest ``4k + 1`` frame count (rounding down on ties), at least 1."""
    k = max(0, round((num_frames - 1) / TEMPORAL_FACTOR - 1e-9))
    return TEMPORAL_FACTOR * k + 1


def num_latent_frames(num_frames: int) -> int:
    """Latent frames for ``num_frames`` pixel frames: ``(F - 1) // 4 + 1``."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    return (num_frames - 1) // TEMPORAL_FACTOR + 1


def latent_index(pixel_frame: float) -> int:
    """Latent frame of pixel frame ``f``: 0 if ``f <= 0``, else ``ceil(f / 4)`` (fractional ``f`` allowed)."""
    if pixel_frame <= 0:
        return 0
    return math.ceil(pixel_frame / TEMPORAL_FACTOR - 1e-9)


def pixel_frames_of_latent(latent: int) -> range:
    """The pixel frames that latent frame ``latent`` covers: ``[0]`` for 0, else ``4l-3 .. 4l``."""
    if latent < 0:
        raise ValueError(f"latent frame must be >= 0, got {latent}")
    if latent == 0:
        return range(0, 1)
    return range(TEMPORAL_FACTOR * latent - (TEMPORAL_FACTOR - 1), TEMPORAL_FACTOR * latent + 1)


def tokens_per_latent_frame(height: int, width: int) -> int:
    """Transformer tokens per latent frame: ``(H / 16) * (W / 16)`` for Wan (1560 at 480x832)."""
    return (height // SIZE_MULTIPLE) * (width // SIZE_MULTIPLE)


def video_duration(num_frames: int, fps: float) -> float:
    """Length of the video in seconds, ``num_frames / fps`` (what a container reports)."""
    return num_frames / fps


def events_in_seconds(events: Sequence[Event], units: str | None, num_frames: int, fps: float) -> list[Event]:
    """The events with times in seconds (:func:`ipvgkit.data.timeline.events_in_seconds` for a video of
    ``num_frames`` at ``fps``)."""
    return timeline.events_in_seconds(events, units, video_duration(num_frames, fps))


def timeline_problems(events: Sequence[Event], units: str | None, num_frames: int, fps: float) -> list[str]:
    """Why a timeline cannot drive a video of ``num_frames`` at ``fps`` (empty list when it can): the
    events' own problems (:func:`ipvgkit.data.timeline.event_problems`) and every event that ends after
    the video (``end > num_frames / fps``, with a 1 ms tolerance)."""
    try:
        secs = events_in_seconds(events, units, num_frames, fps)
    except ValueError as exc:
        return [str(exc)]
    problems = timeline.event_problems(events)
    dur = video_duration(num_frames, fps)
    for i, (ev, orig) in enumerate(zip(secs, events, strict=True), start=1):
        if ev.end > dur + 1e-3:
            problems.append(
                f"event {i} {timeline.describe_event(orig)}: ends at {ev.end:.3f}s, after the video's end "
                f"({dur:.3f}s = {num_frames} frames at {fps:g} fps)"
            )
    return problems


def _event_of_time(t: float, secs: Sequence[Event]) -> int:
    """Index of the event whose [start, end) holds ``t``; an event ending exactly at ``t`` holds it
    when no event starts there (so the last frame of a video belongs to the last event); else -1."""
    eps = 1e-9
    for j, ev in enumerate(secs):
        if ev.start - eps <= t < ev.end - eps:
            return j
    for j, ev in enumerate(secs):
        if abs(t - ev.end) <= eps:
            return j
    return -1


def event_of_latent_frames(
    events: Sequence[Event], units: str | None, num_frames: int, fps: float
) -> list[int]:
    """Hard assignment: for each latent frame, the index of its event, or -1 (see module docstring)."""
    secs = events_in_seconds(events, units, num_frames, fps)
    out: list[int] = []
    for lat in range(num_latent_frames(num_frames)):
        votes: dict[int, int] = {}
        for f in pixel_frames_of_latent(lat):
            j = _event_of_time(f / fps, secs)
            if j >= 0:
                votes[j] = votes.get(j, 0) + 1
        out.append(min(votes, key=lambda j: (-votes[j], j)) if votes else -1)
    return out


def latent_frame_centre(latent: int) -> float:
    """Centre of latent frame ``latent`` in latent units (pixel frame / 4): 0 for frame 0, else ``l - 3/8``."""
    frames = pixel_frames_of_latent(latent)
    return (frames.start + frames.stop - 1) / 2 / TEMPORAL_FACTOR


def soft_event_weights(
    events: Sequence[Event], units: str | None, num_frames: int, fps: float, tau: float = 0.25
) -> np.ndarray:
    """Soft assignment ``(latent_frames, n_events)``: sigmoid ramps at event borders (module docstring)."""
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    secs = events_in_seconds(events, units, num_frames, fps)
    n_lat = num_latent_frames(num_frames)
    centres = np.array([latent_frame_centre(lat) for lat in range(n_lat)], dtype=np.float64)
    last_t = (num_frames - 1) / fps  # time of the last pixel frame
    w = np.ones((n_lat, len(secs)), dtype=np.float64)
    for j, ev in enumerate(secs):
        if ev.start > 1e-9:  # no ramp at the video's own start / end
            w[:, j] *= _sigmoid((centres - ev.start * fps / TEMPORAL_FACTOR) / tau)
        if ev.end < last_t - 1e-9:
            w[:, j] *= _sigmoid((ev.end * fps / TEMPORAL_FACTOR - centres) / tau)
    return w


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function, positive (no underflow to 0) down to x ~ -745."""
    return np.exp(-np.logaddexp(0.0, -x))


def fold_timeline_prompt(prompt: str, events: Sequence[Event]) -> str:
    """The ``prompt`` timeline mode: one prompt ``"<prompt>. First, e1; then, e2; finally, e3."``."""
    base = prompt.strip().rstrip(".")
    texts = [e.text.strip().rstrip(".") for e in events if e.text.strip()]
    if not texts:
        return prompt
    parts = []
    for i, text in enumerate(texts):
        if i == 0:
            parts.append(f"First, {text}")
        elif i == len(texts) - 1 and len(texts) > 2:
            parts.append(f"finally, {text}")
        else:
            parts.append(f"then, {text}")
    folded = "; ".join(parts) + "."
    return f"{base}. {folded}" if base else folded
