"""Shared ``Annotated`` option aliases, declared once and reused by every command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config file (keys as in the docs); CLI options override it."),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override one config key: --set a.b=value (repeatable)."),
]
OverwriteOpt = Annotated[
    bool, typer.Option("--overwrite", help="Redo and replace finished outputs instead of skipping them.")
]
CasesOpt = Annotated[
    Path | None,
    typer.Option("--cases", help="Test set: an id/prompt folder or an eval.json (see docs/formats.md)."),
]
TimelineUnitsOpt = Annotated[
    Literal["auto", "seconds", "fraction"],
    typer.Option(
        "--timeline-units",
        help="How to read temporal_captions start/end: seconds, fraction (of the video) or auto.",
    ),
]
ModelsDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--models-dir",
        help="Folder with model weights (default: $IPVG_MODELS or ~/.cache/ipvg/models).",
        envvar="IPVG_MODELS",
    ),
]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N or auto.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
