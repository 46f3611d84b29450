"""``ipvg score``: score a submission folder (or pick the best of several) against a test set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ipvgkit.cli.options import (
    CasesOpt,
    ConfigOpt,
    DeviceOpt,
    JsonOpt,
    ModelsDirOpt,
    OverwriteOpt,
    QuietOpt,
    SetOpt,
    TimelineUnitsOpt,
)
from ipvgkit.metrics.presets import PRESETS

EPILOG = """Examples:

  ipvg score submission/ --cases testset/ --preset offline -o scores/

  ipvg score submission/ --cases eval.json --preset consisid --models-dir /data/weights -o scores/

  ipvg score submission/ --cases eval.json --metrics clipscore,motion_amplitude -o scores/ --json

  ipvg score runA/ runB/ runC/ --cases eval.json --preset offline --select best/ -o scores/

Presets: consisid (facesim_cur, facesim_arc, face_feat_dist, clipscore), opens2v (aesthetic,
motion_amplitude, facesim_cur; OpenS2V-Eval v1.1 Open-Domain weights, partial total; opens2v-human,
opens2v-v1.0, opens2v-v1.0-human: the other weight tables), vbench (dynamic_degree,
subject_consistency; RAFT-things flow when torchvision and its weights are there, else OpenCV,
said in the output), offline (facesim_dlib, motion_amplitude, dynamic_degree; needs no downloaded
weights). Outputs: OUTDIR/scores.jsonl, summary.json, report.html, score.yaml. Reruns reuse
unchanged videos; --overwrite recomputes.
"""


def _opt(*names: str, help: str):  # noqa: A002 - mirrors typer's keyword
    return typer.Option(*names, help=help, show_default=False)


def score(
    submissions: Annotated[
        list[Path],
        typer.Argument(
            help="Submission folder(s); several folders need --select (best-of-N).", show_default=False
        ),
    ],
    cases: CasesOpt = None,
    preset: Annotated[
        str | None, _opt("--preset", "-p", help=f"{', '.join(PRESETS)} (default consisid).")
    ] = None,
    metrics: Annotated[
        str | None, _opt("--metrics", "-m", help="Comma-separated metric names instead of a preset.")
    ] = None,
    out_dir: Annotated[Path | None, _opt("--out", "-o", help="Output folder for scores and report.")] = None,
    select: Annotated[
        Path | None,
        _opt("--select", help="Best-of-N: copy per case the best candidate's video into this folder."),
    ] = None,
    models_dir: ModelsDirOpt = None,
    device: DeviceOpt = None,
    batch_size: Annotated[
        int | None, _opt("--batch-size", help="Frames per model call (default 16).")
    ] = None,
    bgr_quirk: Annotated[
        bool, _opt("--bgr-quirk", help="Feed CLIP BGR frames like the 2025 code (parity only).")
    ] = False,
    timeline_units: TimelineUnitsOpt = None,
    no_report: Annotated[bool, _opt("--no-report", help="Do not write report.html.")] = False,
    overwrite: OverwriteOpt = False,
    config_file: ConfigOpt = None,
    overrides: SetOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Score videos with a metric preset; writes scores.jsonl, summary.json and report.html."""
    from ipvgkit import config
    from ipvgkit.errors import UsageError
    from ipvgkit.stages.score import ScoreConfig

    if len(submissions) > 1 and select is None:
        raise UsageError("several submission folders given: add --select BEST_DIR to pick the best per case")
    cli = {
        "submission": str(submissions[0]),
        "cases": str(cases) if cases else None,
        "out": str(out_dir) if out_dir else None,
        "preset": preset,
        "metrics": [m for m in metrics.split(",") if m.strip()] if metrics else None,
        "models_dir": str(models_dir) if models_dir else None,
        "device": device,
        "batch_size": batch_size,
        "bgr_quirk": True if bgr_quirk else None,
        "timeline_units": timeline_units,
        "overwrite": True if overwrite else None,
        "report": False if no_report else None,
    }
    cfg = config.resolve(ScoreConfig, config_file, cli, overrides)
    if select is not None:
        _run_select(cfg, submissions, select, json_out, quiet)
    else:
        _run_score(cfg, json_out, quiet)


def _progress_fn(bar, task):
    def fn(done: int, total: int, item: str) -> None:
        bar.update(task, completed=done, total=total)

    return fn


def _run_score(cfg, json_out: bool, quiet: bool) -> None:
    from ipvgkit.cli.ui import print_json, progress
    from ipvgkit.stages.score import run_scoring

    with progress(enabled=not quiet) as bar:
        task = bar.add_task("score", total=None)
        report = run_scoring(cfg, on_progress=_progress_fn(bar, task))
    if json_out:
        print_json(
            {
                "out": str(report.out),
                "summary": report.summary,
                "scored": report.scored,
                "reused": report.reused,
                "problems": report.problems(),
            }
        )
    else:
        print_score_table(report)
    _raise_if_problems(report.problems(), report.missing)


def _raise_if_problems(problems: list[str], missing: list[str]) -> None:
    from ipvgkit.errors import CheckFailed

    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise CheckFailed(
            f"{len(problems)} problem(s) ({len(missing)} missing video(s)); details in scores.jsonl",
            shown,
        )


def _fmt(v) -> str:
    if v is None:
        return "-"
    return f"{v:.1f}" if abs(v) >= 100 else f"{v:.4f}"


def print_score_table(report) -> None:
    """The summary as a rich table on stdout."""
    from rich.table import Table

    from ipvgkit.cli.ui import out

    s = report.summary
    table = Table(title=f"ipvg score ({s.get('preset') or 'custom'}) -> {report.out}")
    for col in ("metric", "value", "videos", "failed", "n/a", "no-face frames"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for name, m in s["metrics"].items():
        nf = m.get("frames_no_face")
        table.add_row(
            name,
            _fmt(m.get("run_value", m["mean"])),  # the run value the total uses (e.g. frame-weighted)
            str(m["n"]),
            str(m["n_failed"]),
            str(m["n_not_applicable"]),
            "" if nf is None else str(nf),
        )
    for name, rm in (s.get("run_metrics") or {}).items():
        table.add_row(
            f"{name} (run)", _fmt(rm.get("value") if isinstance(rm, dict) else None), "", "", "", ""
        )
    table.add_row("[bold]total[/]", f"[bold]{_fmt(s.get('total'))}[/]", "", "", "", "")
    out.print(table)
    from ipvgkit.metrics.setup import setup_lines

    for line in setup_lines(s):
        out.print(line, highlight=False, markup=False)
    v = s["videos"]
    out.print(
        f"{v['scored']}/{v['cases']} videos scored ({report.scored} computed, {report.reused} reused), "
        f"{v['missing']} missing; report: {report.out / 'report.html'}",
        highlight=False,
    )


def _run_select(cfg, candidates: list[Path], best_dir: Path, json_out: bool, quiet: bool) -> None:
    from ipvgkit.cli.ui import out, print_json, progress
    from ipvgkit.stages.select import run_selection

    with progress(enabled=not quiet) as bar:
        tasks: dict[str, int] = {}

        def prog(name: str, done: int, total: int, item: str) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(f"score {name}", total=total)
            bar.update(tasks[name], completed=done, total=total)

        report = run_selection(cfg, candidates, best_dir, on_progress=prog)
    problems = [f"{n}: {p}" for n, r in report.reports.items() for p in r.problems()]
    problems += [f"{c}: no candidate could be scored" for c in report.unresolved]
    if json_out:
        print_json(
            {
                "best_dir": str(report.best_dir),
                "candidates": report.candidates,
                "cases": report.choices,
                "copied": report.copied,
                "kept": report.kept,
                "totals": {n: r.summary.get("total") for n, r in report.reports.items()},
                "problems": problems,
            }
        )
    else:
        from rich.table import Table

        table = Table(title=f"ipvg score --select -> {report.best_dir}")
        for col in ("candidate", "total", "cases chosen"):
            table.add_column(col, justify="left" if col == "candidate" else "right")
        for n, r in report.reports.items():
            chosen = sum(1 for c in report.choices.values() if c["chosen"] == n)
            table.add_row(n, _fmt(r.summary.get("total")), str(chosen))
        out.print(table)
        out.print(
            f"{report.copied} video(s) copied, {report.kept} already in place; "
            f"selection: {report.best_dir / 'selection.json'}",
            highlight=False,
        )
    _raise_if_problems(problems, [m for r in report.reports.values() for m in r.missing])


def register(app: typer.Typer) -> None:
    app.command("score", epilog=EPILOG)(score)
