"""``ipvg score compare`` (also ``ipvg score-compare``): finished score folders side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperCommand

from ipvgkit.cli.options import JsonOpt, QuietOpt, opt

EPILOG = """Examples:

  ipvg score compare scores/runA scores/runB -o cmp/

  ipvg score-compare scores/runA scores/runB scores/runC -o cmp/ --json

Each folder is the -o folder of a finished `ipvg score` run on the same test set. Writes
cmp/compare.json and cmp/compare.html: per-metric means with 95 % bootstrap intervals (2000
resamples, seed 0), the preset total, per-case wins/losses with a paired sign test per pair of runs,
and the cases where the runs disagree most. (A submission folder literally named `compare` is
scored with `ipvg score ./compare ...`.)
"""

SUBCOMMAND = "compare"


def compare(
    folders: Annotated[
        list[Path],
        typer.Argument(help="Finished score folders (the -o of `ipvg score`).", show_default=False),
    ],
    out_dir: Annotated[Path | None, opt("--out", "-o", help="Output folder for compare.json/html.")] = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Compare finished score runs of the same test set: intervals, sign tests, disagreements."""
    from ipvgkit.cli.ui import print_json, stage_progress
    from ipvgkit.stages.score_compare import run_compare

    with stage_progress(enabled=not quiet) as progress:
        report = run_compare(folders, out_dir, progress=progress)
    if json_out:
        print_json(report.data)
    else:
        print_compare(report)


def _cell(e: dict) -> str:
    from ipvgkit.cli.score import _fmt

    if e["mean"] is None:
        return "-"
    return f"{_fmt(e['mean'])} [{_fmt(e['lo'])}, {_fmt(e['hi'])}]"


def print_compare(report) -> None:
    """The means table and the pairwise sign tests on stdout."""
    from rich.table import Table

    from ipvgkit.cli.ui import out

    data = report.data
    names = [r["name"] for r in data["runs"]]
    table = Table(title=f"ipvg score compare -> {report.out}")
    table.add_column("metric")
    for n in names:
        table.add_column(n, justify="right")
    for m, per in data["means"].items():
        table.add_row(m, *[_cell(per[n]) for n in names])
    out.print(table)
    pairs = Table(title="per-case wins (paired sign test)")
    for col in ("A vs B", "metric", "A wins", "B wins", "ties", "p"):
        pairs.add_column(col, justify="left" if col in ("A vs B", "metric") else "right")
    for p in data["pairs"]:
        pairs.add_row(f"{p['a']} vs {p['b']}", p["metric"], str(p["wins"]), str(p["losses"]), str(p["ties"]),
                      f"{p['p_value']:.3g}")  # fmt: skip
    out.print(pairs)
    for note in data["notes"]:
        out.print(f"note: {note}", highlight=False)
    out.print(f"page: {report.out / 'compare.html'}", highlight=False)


class ScoreWithCompare(TyperCommand):
    """``ipvg score``'s command: ``ipvg score compare ...`` runs the compare command instead."""

    compare_command = None  # set by register()

    def parse_args(self, ctx, args):
        if args and args[0] == SUBCOMMAND and self.compare_command is not None:
            ctx.command = self.compare_command  # click invokes ctx.command after parsing
            ctx.info_name = f"{ctx.info_name} {SUBCOMMAND}"
            return self.compare_command.parse_args(ctx, args[1:])
        return super().parse_args(ctx, args)
