"""``ipvg generate``: one H.264 video per test-set case, resumable and shardable (thin layer over
:func:`ipvgkit.stages.generate.run_generation`)."""

from __future__ import annotations

from enum import Enum, StrEnum
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
from ipvgkit.models.caches import Cache
from ipvgkit.models.prompts import TextEncoderPlacement

EPILOG = """Examples:

  ipvg generate --track 2 --cases eval.json --model tiny-wan --frames 9 --height 32 --width 32 --steps 2 --out out/

  ipvg generate --track 1 --cases eval.json --model Wan-AI/Wan2.1-T2V-1.3B-Diffusers --out sub/   # rerun resumes

  ipvg generate --track 1 --cases eval.json --out sub/ --shard 2/4      # second quarter of the cases (1-based)

  torchrun --nproc_per_node 8 -m ipvgkit generate --track 2 --cases eval.json --out sub/   # one share per GPU

  ipvg generate -c gen.yaml --set steps=30 --set model_options.dtype=fp16 --out sub/
"""


class Identity(StrEnum):
    auto = "auto"
    none = "none"
    reference_concat = "reference-concat"
    i2v = "i2v"
    vace = "vace"
    consisid = "consisid"


class TimelineMode(StrEnum):
    masked = "masked"
    soft = "soft"
    prompt = "prompt"


class DType(StrEnum):
    bf16 = "bf16"
    fp16 = "fp16"
    fp32 = "fp32"


class Offload(StrEnum):
    none = "none"
    model = "model"
    sequential = "sequential"


def _opt(*names: str, help: str):  # noqa: A002 - mirrors typer's keyword
    return typer.Option(*names, help=help, show_default=False)


def generate(
    track: Annotated[
        int | None,
        typer.Option("--track", min=1, max=2, help="Only cases of this track: 1 (formats A/B) or 2 (C)."),
    ] = None,
    cases: CasesOpt = None,
    out_dir: Annotated[
        Path | None, _opt("--out", "-o", help="Output folder (the submission folder).")
    ] = None,
    model: Annotated[str | None, _opt("--model", help="Hub id, local diffusers folder or tiny-wan.")] = None,
    lora: Annotated[
        list[str] | None,
        _opt(
            "--lora",
            help="LoRA file/folder as PATH[:SCALE][:both|high|low] (repeatable; high/low: one Wan 2.2 expert).",
        ),
    ] = None,
    lora_scale: Annotated[
        float | None,
        _opt("--lora-scale", help="Strength of each --lora without its own :SCALE (default 1.0)."),
    ] = None,
    identity: Annotated[
        Identity | None, _opt("--identity", help="How the reference image conditions.")
    ] = None,
    timeline_mode: Annotated[
        TimelineMode | None, _opt("--timeline-mode", help="Per-event text control (Track 2).")
    ] = None,
    timeline_units: TimelineUnitsOpt = None,
    steps: Annotated[int | None, _opt("--steps", help="Denoising steps (default 50).")] = None,
    guidance: Annotated[
        float | None, _opt("--guidance", help="Classifier-free guidance (default 5.0).")
    ] = None,
    frames: Annotated[int | None, _opt("--frames", help="Frames per video, 4k+1 (default 81).")] = None,
    height: Annotated[int | None, _opt("--height", help="Height, a multiple of 16 (default 480).")] = None,
    width: Annotated[int | None, _opt("--width", help="Width, a multiple of 16 (default 832).")] = None,
    fps: Annotated[float | None, _opt("--fps", help="Frames per second of the videos (default 16).")] = None,
    seed: Annotated[
        int | None, _opt("--seed", help="Base seed; each case derives its own (default 0).")
    ] = None,
    negative_prompt: Annotated[str | None, _opt("--negative-prompt", help="Negative prompt.")] = None,
    shard: Annotated[str | None, _opt("--shard", help="K/N: take the K-th of N shares (1-based).")] = None,
    dtype: Annotated[DType | None, _opt("--dtype", help="Model precision (default bf16).")] = None,
    offload: Annotated[Offload | None, _opt("--offload", help="CPU offload (default none).")] = None,
    vae_tiling: Annotated[
        bool | None,
        _opt("--vae-tiling/--no-vae-tiling", help="Decode the VAE in tiles (default: on at >= 720p)."),
    ] = None,
    compile_model: Annotated[bool, _opt("--compile", help="torch.compile the transformer.")] = False,
    cache: Annotated[
        Cache | None,
        _opt("--cache", help="A diffusers cache hook (default none; see docs/models.md)."),
    ] = None,
    # --- real-run options (docs/models.md): scheduler shift, LoRA fusing, text encoder placement
    flow_shift: Annotated[
        float | None,
        _opt("--flow-shift", help="Scheduler shift (default Wan 2.1: 3.0 below 720p, 5.0 at 720p)."),
    ] = None,
    lora_fuse: Annotated[bool, _opt("--lora-fuse", help="Fuse the LoRAs into the weights (faster).")] = False,
    text_encoder: Annotated[
        TextEncoderPlacement | None,
        _opt("--text-encoder", help="Where T5 runs: device (default), cpu, or offload (GPU only to encode)."),
    ] = None,
    device: DeviceOpt = None,
    models_dir: ModelsDirOpt = None,
    overwrite: OverwriteOpt = False,
    config_file: ConfigOpt = None,
    overrides: SetOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Generate one video per test-set case into --out; reruns skip finished videos."""
    from ipvgkit import config
    from ipvgkit.stages.generate import GenerateConfig

    def val(x):
        return x.value if isinstance(x, Enum) else x

    model_cli = {
        "model": model,
        "lora": list(lora) if lora else None,
        "lora_scale": lora_scale,
        "identity": val(identity),
        "dtype": val(dtype),
        "offload": val(offload),
        "vae_tiling": vae_tiling,
        "compile": True if compile_model else None,
        "cache": val(cache),
        "flow_shift": flow_shift,
        "lora_fuse": True if lora_fuse else None,
        "text_encoder": val(text_encoder),
        "device": device,
        "models_dir": str(models_dir) if models_dir else None,
    }
    cli = {
        "track": track,
        "cases": str(cases) if cases else None,
        "out": str(out_dir) if out_dir else None,
        "timeline_mode": val(timeline_mode),
        "timeline_units": val(timeline_units),
        "steps": steps,
        "guidance": guidance,
        "frames": frames,
        "height": height,
        "width": width,
        "fps": fps,
        "seed": seed,
        "negative_prompt": negative_prompt,
        "shard": shard,
        "overwrite": True if overwrite else None,
        "model_options": {k: v for k, v in model_cli.items() if v is not None},
    }
    cfg = config.resolve(GenerateConfig, config_file, cli, overrides)
    _run(cfg, json_out, quiet)


def _run(cfg, json_out: bool, quiet: bool) -> None:
    """Run the stage with a progress bar, print the summary (or JSON), exit 1 if any case failed."""
    from rich.markup import escape

    from ipvgkit.cli.ui import err, print_json, progress
    from ipvgkit.distributed import env_shard
    from ipvgkit.stages.generate import GenerateHooks, run_generation

    # under torchrun/accelerate only rank 0 draws a bar (the others still log failures and summaries)
    with progress(enabled=not quiet and env_shard().rank == 0) as bar:
        task = bar.add_task("generate", total=None)

        def log(msg: str) -> None:
            err.print(escape(msg), highlight=False)

        def planned(total: int) -> None:
            bar.update(task, total=total)

        def status(text: str) -> None:
            bar.update(task, description=escape(text))

        def done(result) -> None:
            bar.advance(task)

        report = run_generation(cfg, hooks=GenerateHooks(log=log, planned=planned, status=status, done=done))
        bar.update(task, description="generate")
    if json_out:
        print_json(report.to_dict())
    else:
        _print_summary(report)
    report.raise_if_failed()


def _print_summary(report) -> None:
    from rich.table import Table

    from ipvgkit.cli.ui import out

    title = f"ipvg generate -> {report.out_dir}"
    if report.shard.is_distributed:
        title += f" ({report.shard.label()})"
    table = Table(title=title)
    for col in ("status", "videos", "seconds/video"):
        table.add_column(col, justify="right" if col != "status" else "left")
    for row in report.summary_rows():
        spv = row["seconds_per_video"]
        table.add_row(row["status"], str(row["videos"]), "-" if spv is None else f"{spv:.2f}")
    out.print(table)
    extra = f", weights loaded in {report.load_seconds:.1f} s" if report.load_seconds is not None else ""
    out.print(f"{report.seconds:.1f} s in all{extra}; log: {report.log_path}", highlight=False)
    _print_defaults(report)


def _print_defaults(report) -> None:
    """Say the settings the backend chose by default (flow shift, VAE tiling, negative prompt)."""
    from rich.markup import escape

    from ipvgkit.cli.ui import out
    from ipvgkit.models.wan import defaults_said

    first = next((r for r in report.results if r.status == "ok" and r.backend), None)
    for line in defaults_said(first.backend if first else None):
        out.print(f"default: {escape(line)}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("generate", epilog=EPILOG)(generate)
