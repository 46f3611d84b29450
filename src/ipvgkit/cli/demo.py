"""``ipvg demo``: test sets -> tiny-model generation -> zips -> offline scores, no downloads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ipvgkit.cli.options import (
    ConfigOpt,
    JsonOpt,
    ModelsDirOpt,
    OverwriteOpt,
    QuietOpt,
    SetOpt,
    config_values,
    opt,
)

EPILOG = """Examples:

  ipvg demo                              # everything into ./demo-out

  ipvg demo --out /tmp/d --no-score      # skip scoring

  ipvg demo --set frames=33 --set steps=8

Rerunning resumes (finished videos and scores are kept); the demo's own zips are rebuilt.
Exit status: 0 when every step succeeded, 1 otherwise (the failed step says why).
"""


def demo(
    out: Annotated[Path | None, opt("--out", "-o", help="Output folder (default demo-out).")] = None,
    generate: Annotated[
        bool | None, opt("--generate/--no-generate", help="Generate both tracks with tiny-wan (default on).")
    ] = None,
    score: Annotated[
        bool | None, opt("--score/--no-score", help="Score with the offline preset (default on).")
    ] = None,
    models_dir: ModelsDirOpt = None,
    overwrite: OverwriteOpt = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Run the whole chain on the built-in tiny model and real face photos: prints where the zips are."""
    from ipvgkit import config as config_mod
    from ipvgkit.cli.ui import stage_progress
    from ipvgkit.stages.demo import DemoConfig, run_demo

    cli = config_values(out=out, models_dir=models_dir, overwrite=overwrite)
    cli.update({k: v for k, v in {"generate": generate, "score": score}.items() if v is not None})
    cfg = config_mod.resolve(DemoConfig, config, cli, set_)
    with stage_progress(enabled=not quiet and not json_out) as progress:
        report = run_demo(cfg, progress=progress)
    config_mod.save(cfg, Path(cfg.out) / "demo.yaml")
    if json_out:
        _print_json(report)
    else:
        _print_report(report)
    if not report.ok:
        raise typer.Exit(1)


def _print_json(report) -> None:
    from ipvgkit.cli.ui import print_json

    print_json(
        {
            "ok": report.ok,
            "out": str(report.out),
            "steps": [vars(s) for s in report.steps],
            "zips": {k: str(v) for k, v in report.zips.items()},
            "reports": {k: str(v) for k, v in report.reports.items()},
        }
    )


def _print_report(report) -> None:
    from rich.markup import escape
    from rich.table import Table

    from ipvgkit.cli.ui import out as console

    table = Table(title=f"ipvg demo -> {report.out}")
    longest_word = max((len(w) for s in report.steps for w in s.name.split()), default=4)
    table.add_column("step", min_width=longest_word, overflow="fold")  # whole words: fold by column
    table.add_column("status", no_wrap=True)
    table.add_column("seconds", no_wrap=True, justify="right")
    rest = console.width - longest_word - 30  # borders, padding, status and seconds take 30 columns
    table.add_column("result", max_width=max(16, rest), overflow="fold")
    for s in report.steps:
        status = "[green]ok[/]" if s.ok else "[red]failed[/]"
        table.add_row(escape(s.name), status, f"{s.seconds:.1f}", escape(s.detail))
    console.print(table)
    for name, path in report.zips.items():
        console.print(f"zip: [bold]{escape(str(path))}[/] ({escape(name)})")
    for label, path in report.reports.items():
        console.print(f"score report ({escape(label)}): {escape(str(path))}")


def register(app: typer.Typer) -> None:
    app.command("demo", epilog=EPILOG)(demo)
