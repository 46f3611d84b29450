"""Timeline strings and temporal captions -> validated lists of :class:`Event` (SPEC §1).

The brief writes a timeline as ``0-2s: [walks in]; 2-5s: [waves at the camera]``. The parser accepts
brackets or none, ``s`` (or ``sec``/``seconds``) or none on either time, ``0s-2s``, decimals, ``-``,
``–`` (en dash) or ``—`` (em dash) between the times, and ``;``, ``,`` or newlines between events.
A time range must be followed by ``:`` or ``[``, or start a line (or follow ``;``) and carry a unit
(``0-2s walks in``). Every problem is a one-line
:class:`TimelineError` that names the offending event (1-based index and its text).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from enum import StrEnum

from ipvgkit.data.cases import Event, TimelineUnits
from ipvgkit.errors import InputError


class UnitsChoice(StrEnum):
    """How timeline start/end times are read: seconds, fractions of the video, or ``auto`` (SPEC §1 rule)."""

    auto = "auto"
    seconds = "seconds"
    fraction = "fraction"


UNITS_CHOICES: tuple[str, ...] = tuple(m.value for m in UnitsChoice)

_NUM = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_UNIT = r"(?:seconds?|secs?|s)(?![A-Za-z])"
_DASH = r"[-\u2010\u2011\u2012\u2013\u2014\u2015\u2212~]"
# A time range that opens an event: "0-2s:", "0s - 2s :", "1.5–3 [" (the "[" is not consumed), or a
# "loose" one with neither ("0-2s walks in"). Written without adjacent optional whitespace runs, so
# matching stays linear on long runs of spaces.
_HEAD = re.compile(
    rf"(?<![\w.])(?P<start>{_NUM})\s*(?:(?P<u1>{_UNIT})\s*)?{_DASH}\s*(?P<end>{_NUM})\s*"
    rf"(?:(?P<u2>{_UNIT})\s*)?(?:(?P<colon>:)|(?=\[)|(?<=[ \t])(?=\S))"
)
_SEPARATORS = " \t\r\n;,"


class TimelineError(InputError, ValueError):
    """A timeline string or a list of temporal captions is malformed (one-line message)."""


def _short(text: str, limit: int = 60) -> str:
    """``text`` on one line (whitespace collapsed), cut to ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def format_time(value: float) -> str:
    """A time as the shortest plain decimal that parses back to exactly ``value`` (``2.0`` -> ``2``)."""
    if float(value).is_integer():
        return str(int(value))
    text = format(Decimal(repr(float(value))), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def describe_event(event: Event) -> str:
    """A short one-line form of one event for messages: ``'2-5: waves at the camera'``."""
    try:
        span = f"{format_time(event.start)}-{format_time(event.end)}"
    except (ValueError, OverflowError, ArithmeticError):
        span = f"{event.start}-{event.end}"
    return f"'{span}: {_short(event.text, 50)}'"


def _bracket_depths(text: str) -> list[int]:
    """Bracket nesting depth before each character; raises on an unbalanced ``[`` or ``]``."""
    depths, depth, opened = [], 0, []
    for i, ch in enumerate(text):
        depths.append(depth)
        if ch == "[":
            depth += 1
            opened.append(i)
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise TimelineError(
                    f"unbalanced ']' in timeline near {_short(text[max(0, i - 30) : i + 1])!r}"
                )
            opened.pop()
    if depth:
        i = opened[0]
        raise TimelineError(f"unbalanced '[' in timeline near {_short(text[i : i + 40])!r}")
    return depths


def _heads(text: str) -> list[re.Match[str]]:
    """Every time-range head outside brackets, in order."""
    depths = _bracket_depths(text)
    return [m for m in _HEAD.finditer(text) if depths[m.start()] == 0 and _head_ok(text, m)]


def _head_ok(text: str, m: re.Match[str]) -> bool:
    """A head without ``:`` or ``[`` counts only at the start of a line or after ``;``, with a unit."""
    if m["colon"] or m.string.startswith("[", m.end()):
        return True
    if not (m["u1"] or m["u2"]):
        return False
    before = text[: m.start()].rstrip(" \t")
    return not before or before[-1] in ";\n\r"


def _clean_description(raw: str) -> str:
    """Strip separators and whitespace, and one pair of brackets enclosing the whole description."""
    desc = raw.strip(_SEPARATORS)
    if desc.startswith("[") and desc.endswith("]"):
        depth = 0
        for i, ch in enumerate(desc):
            depth += ch == "["
            depth -= ch == "]"
            if depth == 0:
                if i == len(desc) - 1:
                    desc = desc[1:-1]
                break
    return desc.strip()


def _parse(text: str) -> tuple[list[Event], bool, str]:
    """Events, whether any time carried a seconds suffix, and the text before the first event."""
    if not isinstance(text, str):
        raise TimelineError(f"a timeline must be text, not {type(text).__name__}")
    heads = _heads(text)
    if not heads:
        raise TimelineError(
            f"no timeline events found in {_short(text)!r} (expected e.g. '0-2s: [walks in]; 2-5s: [waves]')"
        )
    events: list[Event] = []
    with_suffix = False
    for i, head in enumerate(heads):
        stop = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        desc = _clean_description(text[head.end() : stop])
        start, end = float(head["start"]), float(head["end"])  # the regex only matches decimals
        with_suffix = with_suffix or bool(head["u1"] or head["u2"])
        events.append(Event(start, end, desc))
    return events, with_suffix, text[: heads[0].start()]


def _parse_whole(text: str) -> tuple[list[Event], bool]:
    """:func:`_parse` for a string that must be only a timeline (no text before the first event)."""
    events, with_suffix, before = _parse(text)
    if before.strip(_SEPARATORS):
        raise TimelineError(
            f"unexpected text {_short(before, 40)!r} before the first timeline event "
            f"{describe_event(events[0])}"
        )
    return events, with_suffix


def parse_timeline(text: str, validate: bool = True) -> list[Event]:
    """Parse a timeline string such as ``0-2s: [walks in]; 2-5s: [waves]`` into events.

    Text before the first event is an error here (use :func:`split_prompt_timeline` for prompts that
    start with a global description). With ``validate`` the events are checked by
    :func:`validate_events`. Raises :class:`TimelineError` (a ``ValueError``) on anything else.
    """
    events, _ = _parse_whole(text)
    if validate:
        validate_events(events)
    return events


def parse_timeline_units(text: str) -> tuple[list[Event], bool]:
    """Validated :func:`parse_timeline`, also saying whether any time was written with an ``s`` suffix."""
    events, with_suffix = _parse_whole(text)
    validate_events(events)
    return events, with_suffix


def split_prompt_timeline(prompt: str) -> tuple[str, list[Event] | None]:
    """Split a prompt that contains a timeline into (global prompt, events).

    ``A man in a park. 0-2s: [walks in]; 2-5s: [waves]`` -> ``("A man in a park.", [Event(0, 2, ...),
    Event(2, 5, ...)])``. A prompt with no time range outside brackets returns ``(prompt.strip(), None)``.
    A prompt whose timeline is malformed raises :class:`TimelineError`.
    """
    prompt_text, events, _ = split_prompt_timeline_units(prompt)
    return prompt_text, events


def split_prompt_timeline_units(prompt: str) -> tuple[str, list[Event] | None, bool]:
    """:func:`split_prompt_timeline` plus whether the timeline's times carried an ``s`` suffix."""
    if not isinstance(prompt, str):
        raise TimelineError(f"a prompt must be text, not {type(prompt).__name__}")
    try:
        heads = _heads(prompt)
    except TimelineError:  # unbalanced brackets: fine in a prompt without any time range
        if not any(_head_ok(prompt, m) for m in _HEAD.finditer(prompt)):
            return prompt.strip(), None, False
        raise
    if not heads:
        return prompt.strip(), None, False
    events, with_suffix, before = _parse(prompt)
    validate_events(events)
    return before.strip(), events, with_suffix


def event_problems(events: Sequence[Event]) -> list[str]:
    """Every problem of a list of events, one line each naming the event by its 1-based index and text:
    times must be finite and non-negative, start < end, descriptions non-empty, events sorted without
    overlap (touching is fine). Empty when the events are valid."""
    problems: list[str] = []
    prev: Event | None = None
    for i, ev in enumerate(events, start=1):
        where = f"event {i} {describe_event(ev)}"
        if not (math.isfinite(ev.start) and math.isfinite(ev.end)):
            problems.append(f"{where}: times must be finite numbers")
            prev = ev
            continue
        if ev.start < 0 or ev.end < 0:
            problems.append(f"{where}: negative time")
        if not ev.start < ev.end:
            problems.append(
                f"{where}: start ({format_time(ev.start)}) must be before end ({format_time(ev.end)})"
            )
        if not str(ev.text).strip():
            problems.append(f"{where}: empty description")
        if prev is not None and ev.start < prev.end:
            kind = "is out of order" if ev.start < prev.start else "overlaps"
            problems.append(
                f"{where}: {kind} with event {i - 1} {describe_event(prev)} "
                "(events must be sorted and must not overlap; touching is fine)"
            )
        prev = ev
    return problems


def validate_events(events: Sequence[Event]) -> None:
    """Raise :class:`TimelineError` with the first of :func:`event_problems` (nothing when valid)."""
    problems = event_problems(events)
    if problems:
        raise TimelineError(problems[0])


def events_in_seconds(events: Sequence[Event], units: str | None, duration: float) -> list[Event]:
    """The one conversion of timeline times to seconds: times in ``seconds`` (or ``None``) are kept,
    ``fraction`` times are multiplied by the video's ``duration`` (seconds)."""
    if units in (None, "seconds"):
        return list(events)
    if units == "fraction":
        return [Event(e.start * duration, e.end * duration, e.text) for e in events]
    raise TimelineError(f"unknown timeline units {units!r} (expected 'seconds' or 'fraction')")


def events_in_frames(
    events: Sequence[Event], units: str | None, num_frames: int, fps: float
) -> list[tuple[float, float]]:
    """Each event's ``(start, end)`` as (fractional) frame positions of a video of ``num_frames`` at
    ``fps``: ``seconds x fps``, or ``fraction x num_frames``."""
    if units == "fraction":
        return [(e.start * num_frames, e.end * num_frames) for e in events]
    return [(e.start * fps, e.end * fps) for e in events_in_seconds(events, units, num_frames / fps)]


def format_timeline(events: Iterable[Event], unit: str = "s") -> str:
    """The inverse of :func:`parse_timeline`: ``0-2s: [walks in]; 2-5s: [waves]``.

    Times are written exactly (shortest decimal that reads back to the same float). ``unit`` is the
    suffix after the end time (``""`` for fractions). Descriptions with unbalanced brackets cannot be
    written and raise :class:`TimelineError`.
    """
    parts = []
    for i, ev in enumerate(events, start=1):
        text = " ".join(str(ev.text).split()) if "\n" in str(ev.text) else str(ev.text).strip()
        try:
            _bracket_depths(text)
        except TimelineError:
            raise TimelineError(
                f"event {i} {describe_event(ev)}: description has unbalanced brackets"
            ) from None
        parts.append(f"{format_time(ev.start)}-{format_time(ev.end)}{unit}: [{text}]")
    return "; ".join(parts)


def _caption_time(value: object, field: str, index: int, entry: Mapping) -> float:
    """One ``start``/``end`` value as a float (numbers or numeric strings such as ``"2"``/``"2s"``)."""
    if isinstance(value, bool) or value is None:
        raise TimelineError(
            f"event {index} {_short(repr(dict(entry)))}: {field} must be a number, not {value!r}"
        )
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        m = re.fullmatch(rf"\s*({_NUM})\s*(?:{_UNIT})?\s*", value)
        if m:
            return float(m.group(1))
    raise TimelineError(f"event {index} {_short(repr(dict(entry)))}: {field} must be a number, not {value!r}")


_TEXT_KEYS = ("description", "text", "caption")


def events_from_captions(
    temporal_captions: Sequence[Mapping], units: UnitsChoice | str = "auto"
) -> tuple[list[Event], TimelineUnits | None]:
    """Turn ``[{"start", "end", "description"}, ...]`` into validated events and the units used.

    ``units="auto"`` reads the times as fractions of the video when every start/end is within [0, 1]
    and the last end is <= 1, else as seconds (SPEC §1); ``"seconds"``/``"fraction"`` force a reading.
    ``description`` may also be spelled ``text`` or ``caption``. An empty list gives ``([], None)``.
    """
    if units not in UNITS_CHOICES:
        raise TimelineError(f"timeline units must be one of {', '.join(UNITS_CHOICES)}, not {units!r}")
    if isinstance(temporal_captions, str | bytes) or not isinstance(temporal_captions, Sequence):
        raise TimelineError(f"temporal_captions must be a list, not {type(temporal_captions).__name__}")
    events = []
    for i, entry in enumerate(temporal_captions, start=1):
        if not isinstance(entry, Mapping):
            raise TimelineError(
                f"event {i} {_short(repr(entry))}: must be an object with start, end, description"
            )
        missing = [k for k in ("start", "end") if k not in entry]
        text_key = next((k for k in _TEXT_KEYS if k in entry), None)
        if missing or text_key is None:
            need = missing + ([] if text_key else ["description"])
            raise TimelineError(f"event {i} {_short(repr(dict(entry)))}: missing {', '.join(need)}")
        text = entry[text_key]
        if not isinstance(text, str):
            raise TimelineError(f"event {i} {_short(repr(dict(entry)))}: {text_key} must be text")
        start = _caption_time(entry["start"], "start", i, entry)
        end = _caption_time(entry["end"], "end", i, entry)
        events.append(Event(start, end, text.strip()))
    if not events:
        return [], None
    used = resolve_units(events, units)
    validate_events(events)
    if used == "fraction":
        check_fraction(events)
    return events, used


def looks_like_fraction(events: Sequence[Event]) -> bool:
    """SPEC §1 rule: every start/end within [0, 1] and the last end <= 1."""
    return bool(events) and all(0 <= t <= 1 for e in events for t in (e.start, e.end)) and events[-1].end <= 1


def resolve_units(events: Sequence[Event], units: UnitsChoice | str = "auto") -> TimelineUnits:
    """The units to read ``events`` in: ``units`` itself unless it is ``auto`` (then the SPEC rule)."""
    if units == "auto":
        return "fraction" if looks_like_fraction(events) else "seconds"
    if units not in ("seconds", "fraction"):
        raise TimelineError(f"timeline units must be one of {', '.join(UNITS_CHOICES)}, not {units!r}")
    return str(units)  # type: ignore[return-value]


def check_fraction(events: Sequence[Event]) -> None:
    """Fractions of the video must lie within [0, 1]; raises naming the first event outside."""
    for i, ev in enumerate(events, start=1):
        if not (0 <= ev.start <= 1 and 0 <= ev.end <= 1):
            raise TimelineError(
                f"event {i} {describe_event(ev)}: read as fractions of the video, times must be within [0, 1] "
                "(use --timeline-units seconds)"
            )


def timeline_summary(events: Sequence[Event] | None, units: str | None) -> str:
    """A short human summary: ``3 events, 0-5 s`` / ``2 events, 0-1 of the video`` / ``-``."""
    if not events:
        return "-"
    span = f"{format_time(events[0].start)}-{format_time(events[-1].end)}"
    suffix = " s" if units == "seconds" else " of video" if units == "fraction" else ""
    return f"{len(events)} event{'s' if len(events) != 1 else ''}, {span}{suffix}"


__all__ = [
    "Event",
    "TimelineError",
    "UNITS_CHOICES",
    "UnitsChoice",
    "check_fraction",
    "describe_event",
    "event_problems",
    "events_in_frames",
    "events_in_seconds",
    "events_from_captions",
    "format_time",
    "format_timeline",
    "looks_like_fraction",
    "parse_timeline",
    "parse_timeline_units",
    "resolve_units",
    "split_prompt_timeline",
    "split_prompt_timeline_units",
    "timeline_summary",
    "validate_events",
]
