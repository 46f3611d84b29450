"""Console helpers shared by the commands: one stdout console, one stderr console, progress bars."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ipvgkit.progress import Progress as StageProgress


class _Console(Console):
    """A console whose size follows ``$COLUMNS``/``$LINES`` and the terminal at each print.

    rich reads ``$COLUMNS`` once, when a console is made; our consoles live as long as the process,
    so the first command run in it (a test, a notebook) would fix the width of every later one.
    """

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._width = self._height = None


out = _Console(soft_wrap=True)
err = _Console(stderr=True, soft_wrap=True)


def print_json(data: Any) -> None:
    """Machine-readable output: plain JSON on stdout, no rich markup."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


@contextmanager
def progress(enabled: bool = True):
    """A rich progress bar on stderr (hidden when disabled or when stderr is not a terminal)."""
    bar = Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=not enabled,
        transient=False,
    )
    with bar:
        try:
            yield bar
        except BaseException:
            bar.live.transient = True  # an error line follows: leave no spinner or blank line before it
            raise


class BarProgress(StageProgress):
    """:class:`ipvgkit.progress.Progress` drawn as rich bars on stderr: one bar per phase."""

    def __init__(self, bar: Progress) -> None:
        self.bar = bar
        self.tasks: dict[str, Any] = {}
        self.current: Any = None

    def phase(self, name: str, total: int | None = None) -> None:
        if name not in self.tasks:
            self.tasks[name] = self.bar.add_task(escape(name), total=total)
        else:
            self.bar.update(self.tasks[name], total=total)
        self.current = self.tasks[name]

    def advance(self, n: int = 1) -> None:
        if self.current is not None:
            self.bar.advance(self.current, n)

    def status(self, text: str) -> None:
        if self.current is not None:
            self.bar.update(self.current, description=escape(text))

    def log(self, msg: str) -> None:
        self.bar.console.print(escape(msg), highlight=False)


@contextmanager
def stage_progress(enabled: bool = True):
    """A :class:`ipvgkit.progress.Progress` for a stage call: rich bars on stderr when enabled."""
    with progress(enabled=enabled) as bar:
        yield BarProgress(bar)
