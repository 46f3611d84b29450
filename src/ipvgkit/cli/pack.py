"""``ipvg pack``: validate a submission folder (or zip) and write the challenge zip."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ipvgkit.cli.options import (
    CasesOpt,
    ConfigOpt,
    JsonOpt,
    OverwriteOpt,
    QuietOpt,
    SetOpt,
    TimelineUnitsOpt,
    config_values,
)
from ipvgkit.stages.pack_rules import LAYOUTS, VideoExpectations

_EXPECT = VideoExpectations()  # the defaults, for --help

EPILOG = """Examples:

  ipvg pack outputs/run1 -o run1.zip                       # validate, then write + verify the zip

  ipvg pack outputs/run1 -o run1.zip --cases testset/      # also require exactly the test set's videos

  ipvg pack --check run1.zip --cases eval.json             # validate a zip or folder; write nothing

  ipvg pack outputs/run1 -o run1.zip --fix-encoding outputs/run1_h264   # re-encode bad videos first

  ipvg pack outputs/t1 -o facial_results.zip --layout flat --json

Exit codes: 0 valid (zip written), 1 problems found (each listed on stderr; no zip written), 2 usage.
See docs/pack.md for every check and its message.
"""


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n:.2f} GB"


def _fmt_spread(s: dict | None, digits: int = 2) -> str:
    if not s:
        return "-"
    return " / ".join(f"{s[k]:.{digits}f}".rstrip("0").rstrip(".") for k in ("min", "median", "max"))


def _print_summary(report) -> None:
    from rich.table import Table

    from ipvgkit.cli.ui import out

    s = report.summary()
    title = f"ipvg pack: {report.source}" + (f" -> {report.zip_path}" if report.zip_path else "")
    table = Table(title=title, show_header=True)
    table.add_column("", style="bold")
    table.add_column("value (min / median / max)", overflow="fold")
    count = str(s["videos"]) + (f" (test set expects {s['expected']})" if s["expected"] is not None else "")
    table.add_row("videos", count)
    table.add_row("layout", report.layout or "-")
    table.add_row("total size", _fmt_bytes(s["total_bytes"]))
    table.add_row("duration (s)", _fmt_spread(s["duration_s"]))
    table.add_row("fps", _fmt_spread(s["fps"]))
    table.add_row("frames", _fmt_spread(s["frames"], 0))
    table.add_row("width", _fmt_spread(s["width"], 0))
    table.add_row("height", _fmt_spread(s["height"], 0))
    res = ", ".join(f"{k} x{v}" for k, v in list(s["resolutions"].items())[:4])
    table.add_row("resolutions", res or "-")
    table.add_row("codec / pix_fmt", f"{', '.join(s['codecs']) or '-'} / {', '.join(s['pix_fmts']) or '-'}")
    out.print(table)


def _print_messages(report) -> None:
    from rich.markup import escape

    from ipvgkit.cli.ui import err

    if report.fix:
        fx = report.fix
        err.print(
            f"fix-encoding: {len(fx['reencoded'])} re-encoded, {len(fx['linked'])} linked or copied, "
            f"{len(fx['kept'])} kept from an earlier run, {len(fx['unfixable'])} copied unchanged",
            highlight=False,
        )
        for line in fx["unfixable"]:
            err.print(f"[dim]note:[/] could not re-encode {escape(line)}", highlight=False)
    for line in report.notes:
        err.print(f"[dim]note:[/] {escape(line)}", highlight=False)
    for line in report.warnings:
        err.print(f"[yellow]warning:[/] {escape(line)}", highlight=False)


# the options of ``ipvg pack`` (module level, so that the command reads as its few lines)
PathArg = Annotated[
    Path,
    typer.Argument(
        metavar="SUBMISSION_DIR",
        help="Submission folder to pack (with --check: a folder or an existing zip to validate).",
    ),
]
OutputOpt = Annotated[
    Path | None, typer.Option("--output", "-o", help="Zip to write, e.g. RUN.zip (not with --check).")
]
CheckOpt = Annotated[
    bool, typer.Option("--check", help="Only validate SUBMISSION_DIR (a folder or a zip); write nothing.")
]
LayoutOpt = Annotated[
    str | None,
    typer.Option(
        "--layout",
        help=f"{' | '.join(LAYOUTS)}: auto (default) follows --cases or the names; id-prompt is "
        "idNNN/promptK.mp4, flat is N.mp4.",
    ),
]
StrictOpt = Annotated[
    bool,
    typer.Option(
        "--strict",
        help="Make warnings problems: pix_fmt not yuv420p, odd dimensions, videos shorter than "
        f"{_EXPECT.min_duration_s:g} s, under {_EXPECT.min_short_side} px on the short side or under "
        f"{_EXPECT.min_frames} frames (config keys expect.*).",
    ),
]
FixEncodingOpt = Annotated[
    Path | None,
    typer.Option(
        "--fix-encoding",
        metavar="DIR2",
        help="Re-encode non-H.264/yuv420p videos into the NEW folder DIR2 (others hardlinked), then pack DIR2.",
    ),
]
WorkersOpt = Annotated[
    int | None, typer.Option("--workers", help="Processes probing videos (default: one per CPU).")
]


def pack(
    path: PathArg,
    output: OutputOpt = None,
    check: CheckOpt = False,
    cases: CasesOpt = None,
    layout: LayoutOpt = None,
    strict: StrictOpt = False,
    fix_encoding: FixEncodingOpt = None,
    workers: WorkersOpt = None,
    overwrite: OverwriteOpt = False,
    timeline_units: TimelineUnitsOpt = "auto",
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Validate a submission (MP4 + H.264, decodable, layout, expected videos) and write the zip."""
    from ipvgkit.cli.ui import stage_progress
    from ipvgkit.config import resolve
    from ipvgkit.stages.pack import PackConfig

    values = config_values(
        submission=path, output=output, cases=cases, layout=layout, strict=strict, overwrite=overwrite,
        timeline_units=None if timeline_units == "auto" else timeline_units, fix_encoding=fix_encoding,
        workers=workers,
    )  # fmt: skip
    cfg = resolve(PackConfig, config, values, set_)
    _check_mode(cfg, check)
    with stage_progress(enabled=not quiet) as progress:
        report, failure = _run(cfg, check, progress)
    _finish(report, failure, check, json_out)


def _check_mode(cfg, check: bool) -> None:
    from ipvgkit.errors import UsageError

    if check and (cfg.output is not None or cfg.fix_encoding is not None):
        raise UsageError("--check only validates: drop -o/--fix-encoding (or drop --check to pack)")
    if not check and cfg.output is None:
        raise UsageError("give the zip to write with -o RUN.zip, or use --check to only validate")


def _run(cfg, check: bool, progress):
    """``(report, failure)``: the check or pack's report, and the :class:`PackCheckFailed` it raised."""
    from ipvgkit.stages.pack import PackCheckFailed, check_config, pack_submission

    try:
        return (check_config(cfg, progress) if check else pack_submission(cfg, progress)), None
    except PackCheckFailed as e:
        return e.report, e


def _finish(report, failure, check: bool, json_out: bool) -> None:
    """Print the notes, warnings and the report (a table, or JSON); raise when it is not valid."""
    from ipvgkit.cli.ui import out, print_json
    from ipvgkit.stages.pack import PackCheckFailed

    _print_messages(report)
    if json_out:
        print_json(report.to_dict())
    elif report.ok:
        _print_summary(report)
    if failure is not None:
        raise failure
    if not report.ok:
        raise PackCheckFailed(
            f"{len(report.problems)} problem(s) in {report.source}; not a valid submission", report
        )
    if not json_out:
        if check:
            out.print(f"[green]ok:[/] {report.source} is a valid submission ({len(report.videos)} videos)")
        else:
            out.print(f"[green]ok:[/] wrote {report.zip_path} (config: {report.config_path})")


def register(app: typer.Typer) -> None:
    app.command("pack", epilog=EPILOG)(pack)
