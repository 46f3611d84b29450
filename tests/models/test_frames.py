"""Frame arithmetic (SPEC §5) and timeline → latent frame mapping: pure functions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipvgkit.data.cases import Event
from ipvgkit.models import frames


def test_frame_counts():
    assert (
        frames.is_valid_frame_count(81) and frames.is_valid_frame_count(49) and frames.is_valid_frame_count(1)
    )
    assert not frames.is_valid_frame_count(80) and not frames.is_valid_frame_count(0)
    assert frames.num_latent_frames(81) == 21
    assert frames.num_latent_frames(49) == 13
    assert frames.num_latent_frames(9) == 3
    assert frames.nearest_valid_frame_count(80) == 81
    assert frames.nearest_valid_frame_count(78) == 77
    with pytest.raises(ValueError):
        frames.num_latent_frames(0)


def test_tokens_per_latent_frame_matches_spec():
    assert frames.tokens_per_latent_frame(480, 832) == 1560
    assert frames.tokens_per_latent_frame(32, 32) == 4


def test_latent_index_rule():
    assert [frames.latent_index(f) for f in range(10)] == [0, 1, 1, 1, 1, 2, 2, 2, 2, 3]
    assert frames.latent_index(4.5) == 2  # fractional pixel frames round up
    assert frames.latent_index(-1) == 0
    assert list(frames.pixel_frames_of_latent(0)) == [0]
    assert list(frames.pixel_frames_of_latent(2)) == [5, 6, 7, 8]


@given(st.integers(min_value=0, max_value=400))
def test_latent_index_inverts_pixel_frames(f):
    lat = frames.latent_index(f)
    assert f in frames.pixel_frames_of_latent(lat)


def test_consisid_constants():
    assert (frames.CONSISID_FRAMES, frames.CONSISID_WIDTH, frames.CONSISID_HEIGHT, frames.CONSISID_FPS) == (
        49,
        720,
        480,
        8.0,
    )
    assert frames.video_duration(49, 8) == pytest.approx(6.125)


def test_events_in_seconds_from_fractions():
    ev = [Event(0.0, 0.5, "a"), Event(0.5, 1.0, "b")]
    secs = frames.events_in_seconds(ev, "fraction", 81, 16.0)
    assert secs[0].end == pytest.approx(81 / 16 / 2)
    assert secs[1].end == pytest.approx(81 / 16)
    assert frames.events_in_seconds(ev, "seconds", 81, 16.0) == ev
    with pytest.raises(ValueError):
        frames.events_in_seconds(ev, "frames", 81, 16.0)


def test_event_of_latent_frames_two_events_81_frames():
    # 0-2 s and 2-5 s at 16 fps: pixel frame 32 (t = 2 s) starts event 2; latent 8 covers pixels 29..32
    ev = [Event(0, 2, "walks in"), Event(2, 5, "waves")]
    assign = frames.event_of_latent_frames(ev, "seconds", 81, 16.0)
    assert len(assign) == 21
    assert assign[:9] == [0] * 9  # latent 8: pixels 29,30,31 in event 0, 32 in event 1 → event 0
    assert assign[9:] == [1] * 12  # the last pixel frame (80, t = 5 s) belongs to the last event


def test_event_of_latent_frames_gap_and_fraction():
    ev = [Event(0.0, 0.25, "a"), Event(0.75, 1.0, "b")]
    assign = frames.event_of_latent_frames(ev, "fraction", 81, 16.0)
    assert -1 in assign  # the gap belongs to no event
    assert assign[0] == 0 and assign[-1] == 1


def test_timeline_problems():
    ok = [Event(0, 2, "a"), Event(2, 5, "b")]
    assert frames.timeline_problems(ok, "seconds", 81, 16.0) == []
    late = [Event(0, 2, "a"), Event(2, 6, "b")]
    (msg,) = frames.timeline_problems(late, "seconds", 81, 16.0)
    assert "after the video's end" in msg and "event 2" in msg
    overlap = [Event(0, 3, "a"), Event(2, 5, "b")]
    assert any("overlaps" in p for p in frames.timeline_problems(overlap, "seconds", 81, 16.0))
    backwards = [Event(3, 1, "a")]
    assert any("must be before end" in p for p in frames.timeline_problems(backwards, None, 81, 16.0))
    assert frames.timeline_problems([Event(0, 1, "a")], "fraction", 81, 16.0) == []


def test_soft_weights_ramp_at_borders():
    ev = [Event(0, 2, "a"), Event(2, 5, "b")]
    w = frames.soft_event_weights(ev, "seconds", 81, 16.0)
    assert w.shape == (21, 2)
    assert np.all(w > 0) and np.all(w <= 1)
    assert w[2, 0] > 0.99 and w[2, 1] < 1e-6  # deep inside event 0
    assert w[15, 1] > 0.99 and w[15, 0] < 1e-6
    # the border is at latent coordinate 8 (t = 2 s → pixel 32 → 32 / 4): frame 8 (centre 7.625) leans to
    # event 0, frame 9 (centre 8.625) to event 1, both keep a non-negligible weight for the other
    assert 0.5 < w[8, 0] < 0.9 and 0.1 < w[8, 1] < 0.5
    assert 0.5 < w[9, 1] < 0.95 and 0.05 < w[9, 0] < 0.5
    assert np.all(np.diff(w[:, 0]) <= 1e-12)  # event 0's weight only falls


def test_fold_timeline_prompt():
    ev = [Event(0, 1, "walks in."), Event(1, 2, "sits down"), Event(2, 3, "waves")]
    assert (
        frames.fold_timeline_prompt("A man in a kitchen.", ev)
        == "A man in a kitchen. First, walks in; then, sits down; finally, waves."
    )
    assert frames.fold_timeline_prompt("A dog", ev[:2]) == "A dog. First, walks in; then, sits down."
    assert frames.fold_timeline_prompt("A dog", []) == "A dog"
