"""``ipvg cases``: load a test set (format A, B or C) and list its cases, or report its malformed ones."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ipvgkit.cli.options import JsonOpt, TimelineUnitsOpt

EPILOG = """Examples:

  ipvg cases data/testset/                  # id001/prompt1.txt ... folders (format A)

  ipvg cases eval.json                      # Track 1 list of {img, prompt} (B) or Track 2 (C)

  ipvg cases track2/ --json > cases.json    # a folder holding eval.json; JSON list on stdout

  ipvg cases track2/eval.json --timeline-units seconds   # read temporal_captions as seconds

Exit status: 0 all cases valid; 1 a case is malformed (each one printed on stderr) or the test set
cannot be read; 2 wrong usage. Formats: docs/formats.md; this command: docs/cases.md.
"""

TrackOpt = Annotated[
    int | None,
    typer.Option(
        "--track", min=1, max=2, help="Force every case to track 1 or 2 (default: from the format)."
    ),
]
PROMPT_WIDTH = 60


def _short(text: str, width: int = PROMPT_WIDTH) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "\u2026"


def _print_table(testset) -> None:
    """A rich table of the valid cases, with a one-line summary under it."""
    from rich.markup import escape
    from rich.table import Table

    from ipvgkit.cli.ui import out
    from ipvgkit.data.timeline import timeline_summary

    table = Table(title=f"{testset.path} (format {testset.format})")
    for col in ("case_id", "track", "output_name", "#refs", "prompt", "timeline"):
        table.add_column(col, overflow="fold", justify="right" if col in ("track", "#refs") else "left")
    for c in testset.cases:
        table.add_row(
            escape(c.case_id),
            str(c.track),
            escape(c.output_name),
            str(len(c.ref_images)),
            escape(_short(c.prompt)),
            escape(timeline_summary(c.timeline, c.timeline_units)),
        )
    out.print(table)
    tracks = sorted({c.track for c in testset.cases})
    out.print(
        f"{len(testset.cases)} valid case(s), {len(testset.errors)} malformed; format {testset.format}; "
        f"track {', '.join(map(str, tracks)) or '-'}",
        highlight=False,
    )


def cases(
    testset: Annotated[
        Path,
        typer.Argument(
            help="Test set: an id/prompt folder (A), an eval.json (B or C), or a folder holding eval.json.",
            show_default=False,
        ),
    ],
    json_out: JsonOpt = False,
    timeline_units: TimelineUnitsOpt = "auto",
    track: TrackOpt = None,
) -> None:
    """List the cases of a test set: id, track, output video name, references, prompt and timeline."""
    from ipvgkit.data.testsets import load_testset
    from ipvgkit.errors import CheckFailed

    loaded = load_testset(testset, timeline_units=timeline_units, track=track)
    if json_out:
        from ipvgkit.cli.ui import print_json

        print_json([c.to_dict() for c in loaded.cases])
    else:
        _print_table(loaded)
    if loaded.errors:
        raise CheckFailed(
            f"{len(loaded.errors)} malformed case(s) in {loaded.path}",
            problems=[str(e) for e in loaded.errors],
        )


def register(app: typer.Typer) -> None:
    app.command("cases", epilog=EPILOG)(cases)


__all__ = ["register"]
