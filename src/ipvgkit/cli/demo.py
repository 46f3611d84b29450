"""``ipvg demo``: test sets -> tiny-model generation -> zips -> offline scores, no downloads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ipvgkit.cli.options import ConfigOpt, JsonOpt, ModelsDirOpt, OverwriteOpt, SetOpt

EPILOG = """Examples:

  ipvg demo                              # everything into ./demo-out

  ipvg demo --out /tmp/d --no-score      # skip scoring

  ipvg demo --set frames=33 --set steps=8

Rerunning resumes (finished videos and scores are kept); the demo's own zips are rebuilt.
Exit status: 0 when every step succeeded, 1 otherwise (the failed step says why).
"""


def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("demo-out"),
    generate: Annotated[bool, typer.Option(help="Generate both tracks with tiny-wan.")] = True,
    score: Annotated[bool, typer.Option(help="Score with the offline preset.")] = True,
    models_dir: ModelsDirOpt = None,
    overwrite: OverwriteOpt = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Run the whole chain on the built-in tiny model and real face photos: prints where the zips are."""
    from ipvgkit import config as config_mod
    from ipvgkit.cli.ui import err
    from ipvgkit.cli.ui import out as console
    from ipvgkit.stages.demo import DemoConfig, run_demo

    cfg = config_mod.resolve(
        DemoConfig,
        config,
        {"out": out, "generate": generate, "score": score, "models_dir": models_dir, "overwrite": overwrite},
        set_,
    )
    notify = None if json_out else (lambda name: err.print(f"[cyan]>[/] {name} ...", highlight=False))
    report = run_demo(cfg, notify=notify)
    config_mod.save(cfg, Path(cfg.out) / "demo.yaml")
    if json_out:
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
    else:
        from rich.markup import escape
        from rich.table import Table

        table = Table(title=f"ipvg demo -> {report.out}")
        for col in ("step", "status", "seconds", "result"):
            table.add_column(col, overflow="fold")
        for s in report.steps:
            status = "[green]ok[/]" if s.ok else "[red]failed[/]"
            table.add_row(escape(s.name), status, f"{s.seconds:.1f}", escape(s.detail))
        console.print(table)
        for name, path in report.zips.items():
            console.print(f"zip: [bold]{escape(str(path))}[/] ({escape(name)})")
        for label, path in report.reports.items():
            console.print(f"score report ({escape(label)}): {escape(str(path))}")
    if not report.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("demo", epilog=EPILOG)(demo)
