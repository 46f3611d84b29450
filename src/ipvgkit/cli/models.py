"""``ipvg models``: every model file a metric or backend uses, where it was looked for, and where to get it."""

from __future__ import annotations

from typing import Annotated

import typer

from ipvgkit.cli.options import JsonOpt, ModelsDirOpt

EPILOG = """Examples:

  ipvg models                              # table: file, used by, present/missing, where to get it

  ipvg models --models-dir /data/weights --json

  ipvg models --require facesim_arc,clipscore   # exit 1 unless every file they use is present
"""

RequireOpt = Annotated[
    str | None,
    typer.Option(
        "--require",
        help="Comma-separated file names or metric/backend names that must be present (exit 1 otherwise).",
    ),
]


def models(json_out: JsonOpt = False, models_dir: ModelsDirOpt = None, require: RequireOpt = None) -> None:
    """List the registered model files: name, used by, where looked (models dir, HF cache), present or missing."""
    from ipvgkit.stages.model_files import ModelsConfig, list_models

    names = [n.strip() for n in (require or "").split(",") if n.strip()]
    rows, problems = list_models(ModelsConfig(models_dir=models_dir, require=names))
    if json_out:
        from ipvgkit.cli.ui import print_json

        print_json([r.to_dict() for r in rows])
    else:
        _print_table(rows, models_dir)
    if problems:
        from ipvgkit.cli.ui import err

        for p in problems:
            err.print(f"[yellow]warning:[/] could not import {p} (its files are not listed)", highlight=False)


def _print_table(rows, models_dir) -> None:
    from rich.markup import escape
    from rich.table import Table

    from ipvgkit.cli.ui import out
    from ipvgkit.paths import hf_cache_dir
    from ipvgkit.paths import models_dir as resolve

    table = Table(title=f"model files (models dir: {resolve(models_dir)}; HF cache: {hf_cache_dir()})")
    for col in ("file", "used by", "status", "path / where looked", "get it from"):
        table.add_column(col, overflow="fold")
    for r in rows:
        if r.present:
            status, where, src = "[green]present[/]", escape(r.path or ""), ""
        else:
            status, where, src = "[red]missing[/]", escape("\n".join(r.searched)), escape(r.source)
        table.add_row(r.name, ", ".join(r.used_by), status, where, src)
    out.print(table)
    missing = sum(not r.present for r in rows)
    out.print(f"{len(rows) - missing} present, {missing} missing (see docs/models-files.md)")


def register(app: typer.Typer) -> None:
    app.command("models", epilog=EPILOG)(models)
