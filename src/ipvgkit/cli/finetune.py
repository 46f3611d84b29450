"""``ipvg finetune``: LoRA training on a prepare folder (thin layer over
:func:`ipvgkit.stages.finetune.finetune`)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperCommand

from ipvgkit.cli.options import (
    ConfigOpt,
    DeviceOpt,
    JsonOpt,
    ModelsDirOpt,
    OverwriteOpt,
    QuietOpt,
    SetOpt,
    opt,
)
from ipvgkit.stages.finetune_config import EXPORTS, METHODS

EPILOG = """Examples:

  ipvg finetune --data prep/ --model tiny-wan --out run/ --max-steps 4 --frames 9 --height 32 --width 32

  ipvg finetune --data prep/ --model Wan-AI/Wan2.1-T2V-1.3B-Diffusers --out run/ --set lora.rank=32

  ipvg finetune --data prep/ --out run/ --max-steps 2000 --resume        # continue run/ where it stopped

  ipvg finetune --data prep/ --out run/ --resume run/checkpoints/checkpoint-000500

  accelerate launch --config_file configs/accelerate/ddp.yaml -m ipvgkit finetune --data prep/ --out run/

  ipvg generate --cases eval.json --model tiny-wan --lora run/final --out sub/   # use the LoRA
"""

Method = StrEnum("Method", {m.replace("-", "_"): m for m in METHODS})
ExportFormat = StrEnum("ExportFormat", {e: e for e in EXPORTS})


def finetune(
    data: Annotated[Path | None, opt("--data", help="A prepare folder (with manifest.jsonl).")] = None,
    model: Annotated[
        str | None, opt("--model", help="Base model: hub id, diffusers folder or tiny-wan.")
    ] = None,
    out: Annotated[
        Path | None, opt("--out", "-o", help="The run folder (checkpoints, final LoRA, metrics).")
    ] = None,
    max_steps: Annotated[
        int | None, opt("--max-steps", help="Optimizer steps in all (default 1000).")
    ] = None,
    frames: Annotated[int | None, opt("--frames", help="Frames per clip, 4k+1 (default 81).")] = None,
    height: Annotated[
        int | None, opt("--height", help="Clip height, a multiple of 16 (default 480).")
    ] = None,
    width: Annotated[int | None, opt("--width", help="Clip width, a multiple of 16 (default 832).")] = None,
    method: Annotated[
        Method | None, opt("--method", help="Identity method trained (LoRA, or face-adapter).")
    ] = None,
    resume: Annotated[
        bool,
        opt(
            "--resume",
            help="Continue the run in --out from its last checkpoint (or --resume auto; --resume CKPT "
            "is --resume-from CKPT).",
        ),
    ] = False,
    resume_from: Annotated[
        Path | None, opt("--resume-from", help="Continue from this checkpoint folder.")
    ] = None,
    export: Annotated[
        list[ExportFormat] | None, opt("--export", help="Also write the LoRA for: comfy.")
    ] = None,
    device: DeviceOpt = None,
    models_dir: ModelsDirOpt = None,
    overwrite: OverwriteOpt = False,
    config_file: ConfigOpt = None,
    overrides: SetOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train a LoRA on a prepare folder; checkpoints resume exactly, RUN/final loads in diffusers."""
    from ipvgkit import config
    from ipvgkit.cli.options import config_values
    from ipvgkit.stages.finetune_config import FinetuneConfig

    if resume and resume_from:
        from ipvgkit.errors import UsageError

        raise UsageError("--resume and --resume-from exclude each other")
    cli = config_values(
        data=data, model=model, out=out, max_steps=max_steps, frames=frames, height=height, width=width,
        method=method, resume="auto" if resume else resume_from, export=export, device=device,
        models_dir=models_dir, overwrite=overwrite,
    )  # fmt: skip
    cfg = config.resolve(FinetuneConfig, config_file, cli, overrides)
    _run(cfg, json_out, quiet)


def _run(cfg, json_out: bool, quiet: bool) -> None:
    from ipvgkit.cli.ui import out, print_json, stage_progress
    from ipvgkit.stages.finetune import finetune as run
    from ipvgkit.stages.finetune_setup import launch_rank

    main = launch_rank() == 0
    with stage_progress(enabled=not quiet and main) as progress:
        res = run(cfg, progress)
    if not main:
        return
    if json_out:
        print_json({"out": str(res.out), "steps": res.steps, "final": str(res.final), "last": res.last,
                    "resumed_from": str(res.resumed_from) if res.resumed_from else None,
                    "skipped": res.skipped, "notes": res.notes})  # fmt: skip
        return
    last = res.last
    loss = f", last loss {last['loss']:.4f}, {last['s_per_step']:.2f} s/step" if last else ""
    out.print(f"ipvg finetune -> {res.out}: {res.steps} steps{loss}", highlight=False)
    out.print(f"LoRA: {res.final}  (ipvg generate --lora {res.final})", highlight=False)
    if res.skipped:
        out.print(f"{len(res.skipped)} sample(s) skipped (reasons above)", highlight=False)


def resume_args(args: list[str]) -> list[str]:
    """``--resume auto`` -> ``--resume``; ``--resume CKPT`` -> ``--resume-from CKPT`` (the issue's
    spelling; typer options cannot take an optional value). ``--resume`` followed by another option, or
    last, stays the flag."""
    out: list[str] = []
    i = 0
    while i < len(args):
        a, nxt = args[i], args[i + 1] if i + 1 < len(args) else None
        if a == "--resume" and nxt is not None and not nxt.startswith("-"):
            out += ["--resume"] if nxt == "auto" else ["--resume-from", nxt]
            i += 2
            continue
        if a.startswith("--resume="):
            value = a.split("=", 1)[1]
            out += ["--resume"] if value == "auto" else ["--resume-from", value]
        else:
            out.append(a)
        i += 1
    return out


class _FinetuneCommand(TyperCommand):
    def parse_args(self, ctx, args: list[str]) -> list[str]:
        return super().parse_args(ctx, resume_args(list(args)))


def register(app: typer.Typer) -> None:
    app.command("finetune", epilog=EPILOG, cls=_FinetuneCommand)(finetune)
