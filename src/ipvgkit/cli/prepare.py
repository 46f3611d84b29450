"""``ipvg prepare``: VIP-200K / ReactID-Data -> training manifest, reference crops, cached latents."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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
from ipvgkit.stages.prepare_engines import Engine

EPILOG = """Examples:

  ipvg prepare vip200k -a vip200k.json --videos vids/ --out prep/

  ipvg prepare vip200k -a vip200k.json --videos vids/ --list-missing todo.txt

  ipvg prepare vip200k -a vip200k.json --videos vids/ --out prep/ --engine ray

  ipvg prepare reactid --root ReactID-Data/ --out prep2/

  ipvg prepare cache --data prep/ --model tiny-wan

  ipvg prepare stats prep/ --json

Reruns resume. Exit codes: 0 all prepared; 1 some items rejected (see
OUT/rejects.jsonl; summary by reason on stderr) or bad input; 2 usage.
See docs/prepare.md.
"""

app = typer.Typer(
    name="prepare",
    help="Turn VIP-200K / ReactID-Data annotations + downloaded videos into a training set.",
    no_args_is_help=True,
    epilog=EPILOG,
)

OutOpt = Annotated[
    Path | None, opt("--out", "-o", help="Output folder (manifest.jsonl, refs/, rejects.jsonl).")
]
EngineOpt = Annotated[Engine | None, opt("--engine", help="local (process pool, default) or ray (Ray Data).")]
WorkersOpt = Annotated[int | None, opt("--workers", "-j", help="Worker processes / Ray CPUs (default 2).")]
RayOpt = Annotated[
    str | None, opt("--ray-address", help="An existing Ray cluster (default: start a local one).")
]
LimitOpt = Annotated[int | None, opt("--limit", help="Only the first N annotated items.")]
FaceOpt = Annotated[
    str | None,
    opt("--face-backend", help="auto (default: buffalo_l, else dlib, else none), none, or a name."),
]
CacheLatentsOpt = Annotated[bool, opt("--cache-latents", help="Also cache VAE latents + text embeddings.")]
ModelOpt = Annotated[str | None, opt("--model", help="Model for --cache-latents (e.g. tiny-wan).")]


def _cache_model(cache_latents: bool, model: str | None) -> str | None:
    """The model whose latents ``--cache-latents`` caches after preparing (None: no caching)."""
    if cache_latents and not model:
        from ipvgkit.errors import UsageError

        raise UsageError("--cache-latents needs --model M (e.g. --model tiny-wan)")
    return model if cache_latents else None


def _run(cli: dict, config_file, overrides, json_out: bool, quiet: bool, cache_model: str | None) -> None:
    from ipvgkit import config
    from ipvgkit.cli.options import config_values
    from ipvgkit.cli.ui import print_json, stage_progress
    from ipvgkit.stages.prepare import PrepareConfig, run_prepare

    cfg = config.resolve(PrepareConfig, config_file, config_values(**cli), overrides)
    with stage_progress(enabled=not quiet) as bar:
        report = run_prepare(cfg, bar)
        cache = None
        if cache_model:
            cache = _cache(cfg.out, cache_model, cfg.models_dir, "auto", False, bar)
    if json_out:
        print_json({**report.summary(), "cache": cache.summary() if cache else None})
    else:
        _print_summary(report)
        if cache:
            _print_cache(cache)
    _raise_if_rejected(report)


def _print_summary(report) -> None:
    from ipvgkit.cli.ui import out

    rate = report.done_now / report.engine_seconds if report.engine_seconds else 0.0
    out.print(
        f"ipvg prepare -> {report.out}: {report.samples} samples in the manifest "
        f"({report.done_now} prepared now, {report.reused} reused), {len(report.rejects)} rejected; "
        f"{report.seconds:.1f} s, {rate:.2f} samples/s; engine {report.engine}",
        highlight=False,
    )


def _raise_if_rejected(report) -> None:
    from ipvgkit.errors import CheckFailed

    if report.rejects:
        problems = [f"{reason}: {n}" for reason, n in report.by_reason.items()]
        raise CheckFailed(
            f"{len(report.rejects)} item(s) rejected, see {report.out / 'rejects.jsonl'}", problems
        )


def vip200k(
    annotations: Annotated[Path | None, opt("--annotations", "-a", help="The VIP-200K JSON list.")] = None,
    videos: Annotated[Path | None, opt("--videos", help="Folder of <id>.mp4|.mkv|.webm.")] = None,
    out: OutOpt = None,
    list_missing: Annotated[
        Path | None, opt("--list-missing", help="Write the ids of videos not on disk to FILE and stop.")
    ] = None,
    engine: EngineOpt = None,
    workers: WorkersOpt = None,
    ray_address: RayOpt = None,
    limit: LimitOpt = None,
    face_backend: FaceOpt = None,
    cache_latents: CacheLatentsOpt = False,
    model: ModelOpt = None,
    models_dir: ModelsDirOpt = None,
    overwrite: OverwriteOpt = False,
    config_file: ConfigOpt = None,
    overrides: SetOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Prepare VIP-200K (Track 1): one sample per annotated segment."""
    if list_missing is not None:
        return _list_missing(annotations, videos, list_missing, json_out)
    cli = dict(
        source="vip200k", annotations=annotations, videos=videos, out=out, engine=engine, workers=workers,
        ray_address=ray_address, limit=limit, face_backend=face_backend, models_dir=models_dir, overwrite=overwrite,
    )  # fmt: skip
    _run(cli, config_file, overrides, json_out, quiet, _cache_model(cache_latents, model))


def _list_missing(annotations, videos, dest: Path, json_out: bool) -> None:
    from ipvgkit.cli.ui import out, print_json
    from ipvgkit.errors import UsageError
    from ipvgkit.fsutil import atomic_write_text
    from ipvgkit.stages.prepare import PrepareConfig, make_source

    if annotations is None or videos is None:
        raise UsageError("--list-missing needs --annotations FILE and --videos DIR")
    source = make_source(PrepareConfig(source="vip200k", annotations=annotations, videos=videos))
    source.load()
    missing = source.missing_videos()
    atomic_write_text(dest, "".join(v + "\n" for v in missing))
    if json_out:
        print_json({"missing": len(missing), "file": str(dest)})
    else:
        out.print(f"{len(missing)} video id(s) not in {videos} written to {dest}", highlight=False)


def reactid(
    root: Annotated[Path | None, opt("--root", help="ReactID-Data tree with Jsons/ and Videos/.")] = None,
    out: OutOpt = None,
    engine: EngineOpt = None,
    workers: WorkersOpt = None,
    ray_address: RayOpt = None,
    limit: LimitOpt = None,
    face_backend: FaceOpt = None,
    cache_latents: CacheLatentsOpt = False,
    model: ModelOpt = None,
    models_dir: ModelsDirOpt = None,
    overwrite: OverwriteOpt = False,
    config_file: ConfigOpt = None,
    overrides: SetOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Prepare ReactID-Data (Track 2): one sample per clip, with its timeline events in seconds."""
    cli = dict(
        source="reactid", root=root, out=out, engine=engine, workers=workers, ray_address=ray_address,
        limit=limit, face_backend=face_backend, models_dir=models_dir, overwrite=overwrite,
    )  # fmt: skip
    _run(cli, config_file, overrides, json_out, quiet, _cache_model(cache_latents, model))


def _cache(data: Path, model: str, models_dir, device: str, overwrite: bool, bar):
    from ipvgkit.stages.prepare_cache import CacheConfig, run_cache

    cfg = CacheConfig(data=Path(data), model=model, models_dir=models_dir, device=device, overwrite=overwrite)
    return run_cache(cfg, bar)


def _print_cache(report) -> None:
    from ipvgkit.cli.ui import out

    out.print(
        f"cache: {report.cached} cached, {report.reused} reused ({report.model}@{report.revision}, "
        f"{report.seconds:.1f} s)",
        highlight=False,
    )


def cache(
    data: Annotated[Path, opt("--data", help="A prepared folder (with manifest.jsonl).")],
    model: Annotated[str, opt("--model", help="A Wan model: tiny-wan, a local folder or a hub id.")],
    models_dir: ModelsDirOpt = None,
    device: DeviceOpt = "auto",
    overwrite: OverwriteOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Cache VAE latents and text embeddings of every sample (safetensors, keyed by sample id)."""
    from ipvgkit.cli.ui import print_json, stage_progress

    with stage_progress(enabled=not quiet) as bar:
        report = _cache(data, model, models_dir, device, overwrite, bar)
    if json_out:
        print_json(report.summary())
    else:
        _print_cache(report)


def stats(
    folder: Annotated[Path, typer.Argument(metavar="PREP", help="A prepared folder.")],
    json_out: JsonOpt = False,
) -> None:
    """Counts, durations, resolutions, rejects by reason, identities, caption lengths."""
    from ipvgkit.cli.ui import out, print_json
    from ipvgkit.stages.prepare_stats import prepare_stats

    s = prepare_stats(folder)
    if json_out:
        return print_json(s)
    for key, value in s.items():
        out.print(f"{key:>20}: {value}", highlight=False, soft_wrap=True)


app.command("vip200k", epilog=EPILOG)(vip200k)
app.command("reactid", epilog=EPILOG)(reactid)
app.command("cache", epilog=EPILOG)(cache)
app.command("stats", epilog=EPILOG)(stats)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="prepare")
