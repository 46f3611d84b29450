"""Timeline strings and temporal captions (SPEC §1): parser, validation, units rule, round trips."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipvgkit.data.cases import Event
from ipvgkit.data.timeline import (
    TimelineError,
    events_from_captions,
    format_time,
    format_timeline,
    parse_timeline,
    parse_timeline_units,
    split_prompt_timeline,
    timeline_summary,
    validate_events,
)
from ipvgkit.errors import InputError

BRIEF = [Event(0, 2, "walks in"), Event(2, 5, "waves at the camera")]


@pytest.mark.parametrize(
    "text",
    [
        "0-2s: [walks in]; 2-5s: [waves at the camera]",
        "0-2s: walks in; 2-5s: waves at the camera",
        "0s-2s: [walks in]; 2s-5s: [waves at the camera]",
        "0 - 2 s : [walks in] ;  2 - 5 s : [waves at the camera]",
        "0\u20132s: [walks in]; 2\u20145s: [waves at the camera]",
        "0-2: [walks in]\n2-5: [waves at the camera]\n",
        "  \n0-2s: [walks in]\r\n2-5s: [waves at the camera];  ",
        "0.0-2.00s: [walks in], 2-5s: [waves at the camera]",
        "0-2sec: [walks in]; 2-5 seconds: [waves at the camera]",
        "0-2s [walks in] 2-5s [waves at the camera]",
        "0-2s walks in\n2-5s waves at the camera",
    ],
)
def test_brief_variants_parse_to_the_same_events(text):
    assert parse_timeline(text) == BRIEF


def test_decimals_and_semicolons_inside_brackets():
    events = parse_timeline("0.5-1.25s: [sits; then smiles]; 1.25-3.75s: [stands up, waves]")
    assert events == [Event(0.5, 1.25, "sits; then smiles"), Event(1.25, 3.75, "stands up, waves")]


def test_nested_brackets_are_kept_inside_the_description():
    assert parse_timeline("0-1s: [holds a sign [STOP]]") == [Event(0, 1, "holds a sign [STOP]")]


def test_a_time_range_inside_brackets_is_not_an_event():
    assert parse_timeline("0-3s: [counts 1-2: then stops]") == [Event(0, 3, "counts 1-2: then stops")]


def test_seconds_suffix_is_reported():
    assert parse_timeline_units("0-2s: [a]; 2-5s: [b]")[1] is True
    assert parse_timeline_units("0-0.5: [a]; 0.5-1: [b]")[1] is False


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("0-2s: [walks in]; 1-5s: [waves]", "event 2 '1-5: waves': overlaps with event 1"),
        ("2-5s: [waves]; 0-2s: [walks in]", "event 2 '0-2: walks in': is out of order"),
        ("3-1s: [falls]", "event 1 '3-1: falls': start (3) must be before end (1)"),
        ("2-2s: [blinks]", "event 1 '2-2: blinks': start (2) must be before end (2)"),
        ("0-2s: []; 2-3s: [x]", "event 1 '0-2: ': empty description"),
        ("0-1s: [a]; 1-2s:", "event 2 '1-2: ': empty description"),
        ("-1-2s: [jumps]", "event 1 '-1-2: jumps': negative time"),
        ("a man walks", "no timeline events found"),
        ("", "no timeline events found"),
        ("0-2s: [walks in", "unbalanced '['"),
        ("0-2s: walks] in", "unbalanced ']'"),
        ("Intro. 0-2s: [walks in]", "unexpected text 'Intro.' before the first timeline event"),
    ],
)
def test_malformed_timelines_name_the_event(text, needle):
    with pytest.raises(TimelineError) as info:
        parse_timeline(text)
    msg = str(info.value)
    assert needle in msg
    assert "\n" not in msg
    assert isinstance(info.value, ValueError) and isinstance(info.value, InputError)


def test_touching_events_are_fine_and_parse_can_skip_validation():
    validate_events([Event(0, 1, "a"), Event(1, 2, "b")])
    assert parse_timeline("3-1s: [x]", validate=False) == [Event(3, 1, "x")]


def test_validate_rejects_non_finite_times():
    with pytest.raises(TimelineError, match="finite"):
        validate_events([Event(0, float("inf"), "a")])
    with pytest.raises(TimelineError, match="finite"):
        validate_events([Event(float("nan"), 1, "a")])


def test_format_timeline_writes_the_brief_form():
    assert format_timeline(BRIEF) == "0-2s: [walks in]; 2-5s: [waves at the camera]"
    assert format_timeline([Event(0, 0.25, "a")], unit="") == "0-0.25: [a]"
    assert format_time(1e-7) == "0.0000001" and format_time(3.0) == "3"


def test_format_timeline_rejects_unbalanced_brackets():
    with pytest.raises(TimelineError, match="event 1 .*unbalanced"):
        format_timeline([Event(0, 1, "a ] b")])


def test_split_prompt_timeline():
    prompt, events = split_prompt_timeline("A man in a park. 0-2s: [walks in]; 2-5s: [waves]")
    assert prompt == "A man in a park."
    assert events == [Event(0, 2, "walks in"), Event(2, 5, "waves")]
    prompt, events = split_prompt_timeline("A man in a park.\n0-2s walks in\n2-5s waves")
    assert (prompt, events) == ("A man in a park.", [Event(0, 2, "walks in"), Event(2, 5, "waves")])


@pytest.mark.parametrize(
    "prompt",
    [
        "A man in a park waves at the camera.",
        "A 3-4 year old child plays with a [red] ball.",
        "She runs 5-10 km every day, 2-3 s later she stops",
        "A sign that says [OPEN",
    ],
)
def test_plain_prompts_have_no_timeline(prompt):
    assert split_prompt_timeline(prompt) == (prompt.strip(), None)


def test_split_prompt_with_a_malformed_timeline_raises():
    with pytest.raises(TimelineError, match="event 2"):
        split_prompt_timeline("A man. 0-3s: [walks in]; 2-5s: [waves]")


# ------------------------------------------------------------------------------ temporal captions


def _caps(*spans):
    return [{"start": s, "end": e, "description": f"event {i}"} for i, (s, e) in enumerate(spans)]


def test_captions_auto_fraction_and_seconds():
    events, units = events_from_captions(_caps((0, 0.4), (0.4, 1)))
    assert units == "fraction" and events[1] == Event(0.4, 1.0, "event 1")
    events, units = events_from_captions(_caps((0, 2), (2, 5)))
    assert units == "seconds" and events[-1].end == 5
    # [0, 1] exactly is a fraction under the SPEC rule; one value above 1 makes it seconds
    assert events_from_captions(_caps((0, 1)))[1] == "fraction"
    assert events_from_captions(_caps((0, 0.5), (0.5, 1.5)))[1] == "seconds"


def test_captions_units_override():
    assert events_from_captions(_caps((0, 0.4), (0.4, 1)), units="seconds")[1] == "seconds"
    assert events_from_captions(_caps((0, 0.4)), units="fraction")[1] == "fraction"
    with pytest.raises(TimelineError, match=r"event 2 .*within \[0, 1\]"):
        events_from_captions(_caps((0, 1), (1, 3)), units="fraction")
    with pytest.raises(TimelineError, match="units must be one of"):
        events_from_captions(_caps((0, 1)), units="frames")


def test_captions_accept_text_keys_and_numeric_strings():
    events, units = events_from_captions(
        [{"start": "0", "end": "2s", "text": " a "}, {"start": 2, "end": 4.5, "caption": "b"}]
    )
    assert events == [Event(0, 2, "a"), Event(2, 4.5, "b")] and units == "seconds"
    assert events_from_captions([]) == ([], None)


@pytest.mark.parametrize(
    ("captions", "needle"),
    [
        ([{"start": 0, "end": 1}], "event 1 .*missing description"),
        ([{"end": 1, "description": "a"}], "event 1 .*missing start"),
        ([{"start": 0, "end": "soon", "description": "a"}], "event 1 .*end must be a number"),
        ([{"start": True, "end": 2, "description": "a"}], "event 1 .*start must be a number"),
        ([{"start": 0, "end": 1, "description": 3}], "event 1 .*description must be text"),
        (["0-1: a"], "event 1 .*must be an object"),
        (_caps((0, 3), (2, 5)), "event 2 .*overlaps"),
        (_caps((0, 3), (3, 2)), "event 2 .*start \\(3\\) must be before end \\(2\\)"),
        (_caps((-1, 3)), "event 1 .*negative time"),
        ([{"start": 0, "end": 2, "description": "  "}], "event 1 .*empty description"),
        ("0-1: a", "must be a list"),
    ],
)
def test_malformed_captions(captions, needle):
    with pytest.raises(TimelineError, match=needle):
        events_from_captions(captions)


def test_timeline_summary():
    assert timeline_summary(BRIEF, "seconds") == "2 events, 0-5 s"
    assert timeline_summary([Event(0, 0.5, "a")], "fraction") == "1 event, 0-0.5 of video"
    assert timeline_summary(None, None) == "-"


# ------------------------------------------------------------------------------ properties

_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="[]"),
    min_size=1,
    max_size=30,
).map(lambda s: " ".join(s.split()))
_TIME = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)


@st.composite
def valid_timelines(draw):
    """Sorted, non-overlapping events (touching allowed) with non-empty, bracket-free descriptions."""
    cuts = sorted(set(draw(st.lists(_TIME, min_size=2, max_size=12))))
    if len(cuts) < 2:
        cuts = [0.0, 1.0]
    events = []
    i = 0
    while i + 1 < len(cuts):
        text = draw(_TEXT.filter(bool))
        events.append(Event(cuts[i], cuts[i + 1], text))
        i += draw(st.sampled_from([1, 2]))  # touching or with a gap
    return events


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=valid_timelines(), unit=st.sampled_from(["s", ""]))
def test_format_parse_round_trip(events, unit):
    text = format_timeline(events, unit=unit)
    assert parse_timeline(text) == events
    prompt, split = split_prompt_timeline("A person on a street. " + text)
    assert prompt == "A person on a street." and split == events


@settings(max_examples=150, deadline=None)
@given(
    a=st.tuples(_TIME, _TIME).map(sorted),
    b=st.tuples(_TIME, _TIME).map(sorted),
    text=_TEXT.filter(bool),
)
def test_overlapping_or_unsorted_events_are_rejected(a, b, text):
    first, second = Event(a[0], a[1], text), Event(b[0], b[1], text)
    valid = first.start < first.end and second.start < second.end and second.start >= first.end
    if valid:
        validate_events([first, second])
    else:
        with pytest.raises(TimelineError):
            validate_events([first, second])


@settings(max_examples=100, deadline=None)
@given(events=valid_timelines(), shift=st.floats(min_value=1e-3, max_value=10), data=st.data())
def test_overlap_inserted_into_valid_timeline_is_rejected(events, shift, data):
    if len(events) < 2:
        events = [*events, Event(events[-1].end, events[-1].end + 1, "x")]
    i = data.draw(st.integers(min_value=1, max_value=len(events) - 1))
    prev = events[i - 1]
    bad = Event(prev.end - min(shift, prev.end - prev.start), events[i].end + shift, events[i].text)
    with pytest.raises(TimelineError, match=f"event {i + 1} "):
        validate_events([*events[:i], bad, *events[i + 1 :]])
    with pytest.raises(TimelineError, match=f"event {i + 1} "):
        parse_timeline(format_timeline([*events[:i], bad, *events[i + 1 :]]))


@settings(max_examples=100, deadline=None)
@given(neg=st.floats(min_value=-1e6, max_value=-1e-6), end=_TIME, text=_TEXT.filter(bool))
def test_negative_times_are_rejected(neg, end, text):
    with pytest.raises(TimelineError, match="event 1 .*negative time"):
        validate_events([Event(neg, end, text)])
    with pytest.raises(TimelineError, match="negative time"):
        parse_timeline(format_timeline([Event(neg, end, text)]))


_NOISE = st.text(alphabet=st.sampled_from(list("0123456789.-–—:;,[] \nsabc\t")), max_size=60)


@settings(max_examples=400, deadline=None)
@given(text=st.one_of(st.text(max_size=80), _NOISE))
def test_parser_raises_only_timeline_errors(text):
    for fn in (parse_timeline, split_prompt_timeline):
        try:
            fn(text)
        except TimelineError as exc:
            assert "\n" not in str(exc)


@pytest.mark.parametrize(
    "text", ["1" + " " * 50_000 + "x", "1-2" + " " * 50_000, "1 - " * 20_000, "[" * 20_000]
)
def test_parser_is_linear_on_long_runs(text):
    import contextlib
    import time

    t0 = time.perf_counter()
    with contextlib.suppress(TimelineError):
        split_prompt_timeline(text)
    assert time.perf_counter() - t0 < 1.0
