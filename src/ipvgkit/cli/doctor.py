"""``ipvg doctor``: what is installed, what works, and how to fix what does not."""

from __future__ import annotations

import typer

from ipvgkit.cli.options import JsonOpt, ModelsDirOpt, QuietOpt

EPILOG = """Examples:

  ipvg doctor                 # table of components, ok/missing, with the fix

  ipvg doctor --json          # the same as JSON

  ipvg doctor --models-dir /data/weights
"""


def doctor(json_out: JsonOpt = False, models_dir: ModelsDirOpt = None, quiet: QuietOpt = False) -> None:
    """Check python, torch/CUDA, ffmpeg+libx264, PyAV, optional extras and the models directory."""
    from ipvgkit.cli.ui import stage_progress
    from ipvgkit.stages.doctor import run_checks

    with stage_progress(enabled=not quiet) as progress:
        checks = run_checks(models_dir=models_dir, progress=progress)
    failed = [c for c in checks if c.required and not c.ok]
    if json_out:
        from ipvgkit.cli.ui import print_json

        print_json([c.to_dict() for c in checks])
    else:
        from rich.markup import escape
        from rich.table import Table

        from ipvgkit.cli.ui import out

        table = Table(title="ipvg doctor", show_lines=False)
        names = min(24, max(len(w) for c in checks for w in c.name.split()))
        table.add_column("component", min_width=names, overflow="fold")  # whole words: fold by column
        table.add_column("status", no_wrap=True)
        rest = max(20, out.width - names - len("optional") - 13)  # 13: borders and padding of 4 columns
        table.add_column("details", max_width=rest * 11 // 20, overflow="fold")
        table.add_column("fix", max_width=rest - rest * 11 // 20, overflow="fold")
        for c in checks:
            if c.ok:
                status = "[green]ok[/]"
            elif c.required:
                status = "[red]missing[/]"
            else:
                status = "[yellow]optional[/]"
            table.add_row(escape(c.name), status, escape(c.details), "" if c.ok else escape(c.fix))
        out.print(table)
        if failed:
            out.print(f"[red]{len(failed)} required component(s) missing.[/]")
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("doctor", epilog=EPILOG)(doctor)
