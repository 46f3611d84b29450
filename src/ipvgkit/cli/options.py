"""Shared ``Annotated`` option aliases, declared once and reused by every command."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from ipvgkit.data.timeline import UnitsChoice

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
    UnitsChoice,
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


def opt(*names: str, help: str, **kw: Any):  # noqa: A002 - mirrors typer's keyword
    """A ``typer.Option`` without a shown default (defaults live in the config dataclasses)."""
    return typer.Option(*names, help=help, show_default=False, **kw)


def config_values(**options: Any) -> dict[str, Any]:
    """The explicit CLI options as a config dict for :func:`ipvgkit.config.resolve`.

    Options left unset (None, an unset flag False, an empty list) are dropped so that the config file
    and the dataclass defaults apply; Enums become their values, Paths strings; nested dicts (a
    sub-config) are converted the same way and dropped when empty.
    """
    out: dict[str, Any] = {}
    for key, value in options.items():
        conv = _config_value(value)
        if conv is not None:
            out[key] = conv
    return out


def _config_value(value: Any) -> Any:
    if value is None or value is False:
        return None
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return config_values(**value) or None
    if isinstance(value, (list, tuple)):
        return [_config_value(v) for v in value] or None
    return value
