"""The one progress protocol every stage reports through.

A stage takes ``progress: Progress | None`` and calls :func:`ensure` once; the front end (the CLI's
rich bar in :mod:`ipvgkit.cli.ui`, a notebook, a test) subclasses :class:`Progress`. The base class is
silent except for :meth:`Progress.log`, which writes one line to stderr, so library callers lose no
message.

A stage's work is a sequence of named *phases* ("probing videos", "writing zip", "generate"); each
phase counts items up to an optional total.
"""

from __future__ import annotations

import sys


class Progress:
    """Callbacks from a stage to its front end. Override what you show; the defaults do nothing."""

    def phase(self, name: str, total: int | None = None) -> None:
        """Begin phase ``name`` with ``total`` items (None: not known yet). Calling it again with the same
        name updates the total and makes it the current phase."""

    def advance(self, n: int = 1) -> None:
        """``n`` more items of the current phase are done."""

    def status(self, text: str) -> None:
        """What the current phase is doing right now (a short line, e.g. the case being generated)."""

    def log(self, msg: str) -> None:
        """A one-line message for the user (a skipped input, a substitution, a warning)."""
        print(msg, file=sys.stderr, flush=True)


class Recorder(Progress):
    """Keeps every event in a list (for tests and for callers that want a transcript)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object, object]] = []

    def phase(self, name: str, total: int | None = None) -> None:
        self.events.append(("phase", name, total))

    def advance(self, n: int = 1) -> None:
        self.events.append(("advance", n, None))

    def status(self, text: str) -> None:
        self.events.append(("status", text, None))

    def log(self, msg: str) -> None:
        self.events.append(("log", msg, None))

    def count(self, kind: str) -> int:
        return sum(1 for e in self.events if e[0] == kind)


def ensure(progress: Progress | None) -> Progress:
    """The progress sink to use: the given one, or a silent :class:`Progress`."""
    return progress if progress is not None else Progress()


__all__ = ["Progress", "Recorder", "ensure"]
