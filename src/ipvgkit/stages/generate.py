"""``ipvg generate``: turn a test set into one H.264 video per case, resumably and shardably.

:func:`run_generation` loads the test set, takes this process's share of the cases
(:mod:`ipvgkit.distributed`), plans them (:mod:`ipvgkit.stages.generate_plan`: one request per case,
timelines fitted to the video, finished videos skipped), checks the run's settings and every remaining
case with the backend before any weights are loaded, then generates and encodes them one by one
(:mod:`ipvgkit.stages.generate_exec`), claiming each case so that several processes can share one
output folder (:mod:`ipvgkit.stages.generate_claim`). Every case that was considered leaves one JSON
line in ``generation.jsonl`` (``generation.rank{R}.jsonl`` when several ranks or shards share the output
folder). A failing case is recorded and the batch goes on.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from ipvgkit.distributed import Shard, assign, device_for, env_shard, natural_key
from ipvgkit.errors import IpvgError, UsageError
from ipvgkit.models.base import Identity, VideoBackend
from ipvgkit.progress import Progress, ensure
from ipvgkit.stages import generate_cp
from ipvgkit.stages.generate_exec import Runner, execute, warm_up
from ipvgkit.stages.generate_io import finished_video_problem, read_generation_log, remove_stale_temps
from ipvgkit.stages.generate_plan import (
    Job,
    build_request,
    case_settings,
    derive_seed,
    error_text,
    fit_summary,
    load_entries,
    log_name,
    plan_cases,
)
from ipvgkit.stages.generate_types import (
    CONFIG_NAME,
    LOG_NAME,
    CaseResult,
    GenerateConfig,
    GenerateReport,
    TimelineFit,
)


def _require(cfg: GenerateConfig, backend: VideoBackend | None) -> None:
    if cfg.cases is None:
        raise UsageError("no test set given: pass --cases TESTSET (or cases: in the config)")
    if cfg.out is None:
        raise UsageError("no output folder given: pass --out DIR (or out: in the config)")
    if backend is None and not cfg.model_options.model:
        raise UsageError(
            "no model given: pass --model (a hub id such as Wan-AI/Wan2.1-VACE-1.3B-diffusers, a local "
            "diffusers folder, or tiny-wan for a quick test)"
        )


def _prepare_backend(cfg: GenerateConfig, shard: Shard) -> VideoBackend:
    from ipvgkit.models import load_backend

    options = dataclasses.replace(cfg.model_options, device=device_for(cfg.model_options.device, shard))
    return load_backend(options)


def _identity_of(backend: VideoBackend, job: Job) -> str | None:
    """The identity mode the backend will use for a job, when it can say (optional ``identity_mode``)."""
    mode = getattr(backend, "identity_mode", None)
    if not callable(mode):
        return None
    try:
        return str(mode(job.request))
    except IpvgError:
        return None


def _refuse_silent_identity(cfg: GenerateConfig, backend: VideoBackend, jobs: list[Job]) -> None:
    """``--identity auto`` on a model with no identity path would ignore the reference images: a usage
    error (before any weights are loaded) that names the choices."""
    if cfg.model_options.identity != Identity.auto:
        return
    for job in jobs:
        if job.request.ref_images and _identity_of(backend, job) == Identity.none:
            raise UsageError(
                f"--identity auto: {cfg.model_options.model} has no identity path, so the reference images "
                "would be ignored; use --model with a VACE or I2V checkpoint, --identity reference-concat "
                "with an adapter from `ipvg finetune`, or say --identity none"
            )


def _check_settings(backend: VideoBackend, jobs: list[Job]) -> None:
    """The backend's case-independent problems (optional ``settings_problems``): one usage error."""
    problems = getattr(backend, "settings_problems", None)
    if callable(problems) and jobs:
        found = problems(jobs[0].request)
        if found:
            raise UsageError("; ".join(found))


def _checked(cfg: GenerateConfig, backend: VideoBackend, jobs: list[Job], runner: Runner) -> list[Job]:
    """Ask the backend to check every job (a failing one is finished here); settings recorded once."""
    described = dict(backend.describe())
    ok = []
    for job in jobs:
        settings = case_settings(cfg, job.request, described, _identity_of(backend, job))
        job.result = dataclasses.replace(job.result, settings=settings, backend=described)
        try:
            backend.check(job.request)
        except IpvgError as exc:
            runner.finish(dataclasses.replace(job.result, status="failed", error=error_text(exc)))
            continue
        ok.append(job)
    return ok


def _backend(cfg: GenerateConfig, backend: VideoBackend | None, base: Shard) -> VideoBackend:
    """The given backend or the configured one (on ``cuda:LOCAL_RANK`` under a launcher), told about
    context parallelism when it is on."""
    backend = backend if backend is not None else _prepare_backend(cfg, base)
    if cfg.context_parallel > 1:
        generate_cp.attach(backend, cfg, base)
    return backend


def _generate(
    cfg: GenerateConfig, backend: VideoBackend | None, jobs: list[Job], runner: Runner, base: Shard
) -> tuple[float | None, str | None]:
    """Load (lazily), check and generate the jobs; returns (weights' load seconds, identity mode(s)).
    Under context parallelism the weights are loaded even with no job (every rank builds the mesh)."""
    progress = runner.progress
    progress.status("loading model")
    backend = _backend(cfg, backend, base)
    link = None
    if cfg.context_parallel > 1:
        link = generate_cp.GroupLink(
            generate_cp.layout(cfg, base)[1], device_for(cfg.model_options.device, base)
        )
    _check_settings(backend, jobs)
    _refuse_silent_identity(cfg, backend, jobs)
    progress.status("checking cases")
    checked = _checked(cfg, backend, jobs, runner)
    identity = ", ".join(sorted({str(j.result.settings.get("identity")) for j in checked})) or None
    load_seconds = warm_up(backend, progress) if checked or link else None
    device = str(backend.describe().get("device", cfg.model_options.device))
    before = link.send if link is not None else None
    execute(cfg, backend, checked, runner, device, lambda: dict(backend.describe()), before)
    return load_seconds, identity


def _follow(cfg: GenerateConfig, backend: VideoBackend | None, base: Shard, progress: Progress) -> int:
    """A context-parallel member: load the model like the writer, then run what the writer sends."""
    group = generate_cp.layout(cfg, base)[1]
    progress.status("loading model")
    backend = _backend(cfg, backend, base)
    link = generate_cp.GroupLink(group, device_for(cfg.model_options.device, base))
    warm_up(backend, progress)
    return generate_cp.follow(backend, link, group, progress)


def run_generation(
    cfg: GenerateConfig,
    backend: VideoBackend | None = None,
    progress: Progress | None = None,
) -> GenerateReport:
    """Generate this process's share of ``cfg.cases`` into ``cfg.out``; see the module docstring.

    ``backend`` defaults to ``load_backend(cfg.model_options)`` (loaded only if some case needs work;
    its device becomes ``cuda:LOCAL_RANK`` under a multi-GPU launcher). Failed cases are in the report
    (``report.raise_if_failed()`` turns them into :class:`CheckFailed`); errors that stop the whole run
    (unreadable test set, bad usage, missing weights) are raised.
    """
    from ipvgkit import config as config_mod

    progress = ensure(progress)
    t_start = time.perf_counter()
    _require(cfg, backend)
    base = env_shard()
    shard, group = generate_cp.layout(cfg, base)  # the cases are shared by context-parallel group
    out = Path(cfg.out)
    entries, other_track = load_entries(cfg, progress)
    mine = assign(entries, shard, key=lambda e: natural_key(e[0]))
    plan = plan_cases(cfg, mine, out, shard)
    generate_cp.check(cfg, base)
    out.mkdir(parents=True, exist_ok=True)
    if not group.writer:
        _follow(cfg, backend, base, progress)
        return GenerateReport(out, out / log_name(shard), None, shard, [], time.perf_counter() - t_start)
    config_path = config_mod.save(cfg, out / CONFIG_NAME) if shard.rank == 0 else None
    runner = Runner(out / log_name(shard), progress)
    if shard.is_distributed:
        progress.log(f"{shard.label()}: {len(mine)} of {len(entries)} case(s)")
    progress.phase("generate", len(mine))
    notes = [n for n in [fit_summary(cfg, plan.jobs)] if n]
    for note in notes:
        progress.log(note)
    for result in plan.known:
        runner.finish(result)
    run = plan.jobs or cfg.context_parallel > 1
    placed = base if group.size > 1 else shard  # the ranks that pick the GPU (cuda:LOCAL_RANK)
    load_seconds, identity = _generate(cfg, backend, plan.jobs, runner, placed) if run else (None, None)
    return GenerateReport(
        out_dir=out,
        log_path=runner.log_path,
        config_path=config_path,
        shard=shard,
        results=runner.results,
        seconds=time.perf_counter() - t_start,
        skipped_other_track=other_track,
        load_seconds=load_seconds,
        identity=identity or str(cfg.model_options.identity),
        notes=notes,
    )


__all__ = [
    "CONFIG_NAME",
    "LOG_NAME",
    "CaseResult",
    "GenerateConfig",
    "GenerateReport",
    "TimelineFit",
    "build_request",
    "derive_seed",
    "finished_video_problem",
    "log_name",
    "read_generation_log",
    "remove_stale_temps",
    "run_generation",
]
