"""``ipvg models``: the model files each metric or backend uses (list, fetch, export InceptionV3)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ipvgkit.cli.options import JsonOpt, ModelsDirOpt, QuietOpt, opt

EPILOG = """Examples:

  ipvg models                              # compact table: file, present/missing, used by

  ipvg models --wide                       # + where each file was found or looked for, where to get it

  ipvg models --models-dir ckpts/ --json   # ConsisID's checkpoint folder works as it is

  ipvg models --require facesim_arc,clipscore   # exit 1 unless every file they use is present

  ipvg models fetch consisid --models-dir /data/weights   # download what the preset lacks

  ipvg models export-inception --models-dir /data/weights  # where torchvision imports
"""

RequireOpt = Annotated[
    str | None,
    opt(
        "--require",
        help="Comma-separated presets, metrics, backends or files that must be present (exit 1 otherwise).",
    ),
]
WideOpt = Annotated[
    bool, typer.Option("--wide", help="All columns: paths, places searched, where to get it.")
]

models_app = typer.Typer(
    help="List the model files metrics and backends use; fetch missing ones; export InceptionV3.",
    no_args_is_help=False,
    invoke_without_command=True,
    epilog=EPILOG,
)


@models_app.callback(invoke_without_command=True)
def models(
    ctx: typer.Context,
    json_out: JsonOpt = False,
    models_dir: ModelsDirOpt = None,
    require: RequireOpt = None,
    wide: WideOpt = False,
) -> None:
    """List the registered model files: present or missing, used by, where looked, where to get them."""
    if ctx.invoked_subcommand is not None:
        return
    from ipvgkit.stages.model_files import ModelsConfig, list_models

    names = [n.strip() for n in (require or "").split(",") if n.strip()]
    rows, problems = list_models(ModelsConfig(models_dir=models_dir, require=names))
    if json_out:
        from ipvgkit.cli.ui import print_json

        print_json([r.to_dict() for r in rows])
    else:
        _print_table(rows, models_dir, wide)
    if problems:
        from ipvgkit.cli.ui import err

        for p in problems:
            err.print(f"[yellow]warning:[/] could not import {p} (its files are not listed)", highlight=False)


def _print_table(rows, models_dir, wide: bool) -> None:
    from rich.markup import escape
    from rich.table import Table

    from ipvgkit.cli.ui import out
    from ipvgkit.paths import hf_cache_dir
    from ipvgkit.paths import models_dir as resolve

    out.print(f"models dir:\n  {escape(str(resolve(models_dir)))}", highlight=False)
    table = Table(box=None, pad_edge=False, show_edge=False)
    table.add_column("file", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("used by", overflow="fold" if wide else "ellipsis")
    if wide:
        table.add_column("path / where looked", overflow="fold")
        table.add_column("get it from", overflow="fold")
    for r in rows:
        status = "[green]present[/]" if r.present else "[red]missing[/]"
        cells = [escape(r.name), status, escape(", ".join(r.used_by))]
        if wide:
            where = r.path if r.present else "\n".join(r.searched)
            cells += [escape(where or ""), "" if r.present else escape(r.source)]
        table.add_row(*cells)
    out.print(table)
    missing = [r.name for r in rows if not r.present]
    out.print(f"{len(rows) - len(missing)} present, {len(missing)} missing", highlight=False)
    if not wide:
        out.print(f"HF cache:\n  {escape(str(hf_cache_dir()))}", highlight=False)
        out.print("paths and sources: ipvg models --wide; download: ipvg models fetch NAME", highlight=False)


class _LineProgress:
    """A fetch's progress on stderr: huggingface_hub draws each file's byte bar; one line per file done
    (nothing before an error, so an offline machine sees one line)."""

    def __init__(self, quiet: bool) -> None:
        from ipvgkit.cli.ui import err

        self.err, self.quiet = err, quiet

    def phase(self, name: str, total: int | None = None) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass

    def status(self, text: str) -> None:
        pass

    def log(self, msg: str) -> None:
        if not self.quiet:
            self.err.print(msg, highlight=False, soft_wrap=True)


@models_app.command("fetch", epilog=EPILOG)
def fetch(
    names: Annotated[
        list[str], typer.Argument(help="Presets, metrics or file names (e.g. consisid).", show_default=False)
    ],
    models_dir: ModelsDirOpt = None,
    revision: Annotated[
        str | None, opt("--revision", help="Hub revision (default: each repo's main).")
    ] = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Download the missing model files of PRESET|METRIC|FILE from the Hugging Face hub (resumable)."""
    from ipvgkit.stages.model_fetch import FetchConfig, fetch_models

    result = fetch_models(
        FetchConfig(names=list(names), models_dir=models_dir, revision=revision), _LineProgress(quiet)
    )
    if json_out:
        from ipvgkit.cli.ui import print_json

        print_json(result.to_dict())
        return
    from ipvgkit.cli.ui import out

    for name, path in {**result.present, **result.fetched}.items():
        verb = "fetched" if name in result.fetched else "present"
        out.print(f"{verb}: {name}\n  {path}", highlight=False, soft_wrap=True)


@models_app.command("export-inception", epilog=EPILOG)
def export_inception(
    models_dir: ModelsDirOpt = None,
    out_file: Annotated[
        Path | None, opt("--out", "-o", help="TorchScript file to write (default: where the metrics look).")
    ] = None,
    weights: Annotated[
        Path | None,
        opt(
            "--weights", help="torchvision InceptionV3 state dict (default: torchvision's ImageNet weights)."
        ),
    ] = None,
) -> None:
    """Write torchvision's InceptionV3 (fc = identity) as the TorchScript file face_feat_dist and fid load."""
    from ipvgkit.faces.files import INCEPTION_FID
    from ipvgkit.faces.inception import export_torchvision_inception
    from ipvgkit.paths import models_dir as resolve

    target = out_file or resolve(models_dir) / INCEPTION_FID.relpath
    from ipvgkit.cli.ui import out

    out.print(str(export_torchvision_inception(target, weights)), highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
