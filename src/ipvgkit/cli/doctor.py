"""``ipvg doctor``: what is installed, what works, and how to fix what does not."""

from __future__ import annotations

import typer

from ipvgkit.cli.options import JsonOpt, ModelsDirOpt

EPILOG = """Examples:

  ipvg doctor                 # table of components, ok/missing, with the fix

  ipvg doctor --json          # the same as JSON

  ipvg doctor --models-dir /data/weights
"""


def doctor(json_out: JsonOpt = False, models_dir: ModelsDirOpt = None) -> None:
    """Check python, torch/CUDA, ffmpeg+libx264, PyAV, optional extras and the models directory."""
    from ipvgkit.stages.doctor import run_checks

    checks = run_checks(models_dir=models_dir)
    failed = [c for c in checks if c.required and not c.ok]
    if json_out:
        from ipvgkit.cli.ui import print_json

        print_json([c.to_dict() for c in checks])
    else:
        from rich.markup import escape
        from rich.table import Table

        from ipvgkit.cli.ui import out

        table = Table(title="ipvg doctor", show_lines=False)
        for col in ("component", "status", "details", "fix"):
            table.add_column(col, overflow="fold")
        for c in checks:
            if c.ok:
                status = "[green]ok[/]"
            elif c.required:
                status = "[red]missing[/]"
            else:
                status = "[yellow]optional, missing[/]"
            table.add_row(escape(c.name), status, escape(c.details), "" if c.ok else escape(c.fix))
        out.print(table)
        if failed:
            out.print(f"[red]{len(failed)} required component(s) missing.[/]")
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("doctor", epilog=EPILOG)(doctor)
