"""Planning of ``ipvg generate``: the cases of this share, one request per case (seed, frames and fitted
timeline computed once), and which cases are already finished (resume)."""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ipvgkit.data.cases import Case, Event
from ipvgkit.data.timeline import events_in_seconds, format_time
from ipvgkit.distributed import Shard
from ipvgkit.errors import CaseError, UsageError
from ipvgkit.models import frames as frame_math
from ipvgkit.models.base import GenerationRequest
from ipvgkit.progress import Progress
from ipvgkit.stages.bookkeeping import generate_log_name
from ipvgkit.stages.generate_types import CaseResult, GenerateConfig, TimelineFit

FIT_TOLERANCE = 1e-3  # seconds: an event ending this little after the video still fits


def derive_seed(base_seed: int, case_id: str) -> int:
    """Per-case seed: ``sha256(f"{base_seed}:{case_id}")`` as an integer mod 2**31 (stable everywhere)."""
    digest = hashlib.sha256(f"{int(base_seed)}:{case_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 2**31


def log_name(shard: Shard) -> str:
    """``generation.jsonl`` for one process, ``generation.rank{R}.jsonl`` (0-based R) when sharded."""
    return generate_log_name(shard.rank if shard.is_distributed else None)


@dataclass(frozen=True)
class Fit:
    """How a case's timeline was fitted to the video: frames to generate, the events to use, and what
    was changed (``scale`` < 1 or ``extended`` frames), or why it cannot fit (``problem``)."""

    num_frames: int
    timeline: list[Event] | None
    scale: float | None = None
    extended: int | None = None
    problem: str | None = None


def fit_timeline(case: Case, cfg: GenerateConfig) -> Fit:
    """Apply ``cfg.timeline_fit`` to a case whose (seconds) timeline ends after the video."""
    events = list(case.timeline) if case.timeline is not None else None
    if not events or case.timeline_units == "fraction":
        return Fit(cfg.frames, events)
    duration = frame_math.video_duration(cfg.frames, cfg.fps)
    last = events_in_seconds(events, case.timeline_units, duration)[-1].end
    if last <= duration + FIT_TOLERANCE or cfg.timeline_fit == TimelineFit.error:
        return Fit(cfg.frames, events)
    if cfg.timeline_fit == TimelineFit.scale:
        factor = duration / last
        return Fit(
            cfg.frames, [Event(e.start * factor, e.end * factor, e.text) for e in events], scale=factor
        )
    need = max(cfg.frames, math.ceil(last * cfg.fps - 1e-9))
    need = need if frame_math.is_valid_frame_count(need) else 4 * math.ceil((need - 1) / 4) + 1
    if cfg.max_frames is not None and need > cfg.max_frames:
        problem = (
            f"timeline ends at {format_time(last)}s: needs {need} frames at {cfg.fps:g} fps, "
            f"over --max-frames {cfg.max_frames} (raise it, or use --timeline-fit scale)"
        )
        return Fit(cfg.frames, events, problem=problem)
    return Fit(need, events, extended=need)


def build_request(case: Case, cfg: GenerateConfig, fit: Fit | None = None) -> GenerationRequest:
    """The backend request for one case under ``cfg`` (seed derived from the base seed and the case id,
    frames and timeline as fitted by :func:`fit_timeline`)."""
    fit = fit or fit_timeline(case, cfg)
    return GenerationRequest(
        case_id=case.case_id,
        prompt=case.prompt,
        ref_images=list(case.ref_images),
        num_frames=fit.num_frames,
        height=cfg.height,
        width=cfg.width,
        fps=cfg.fps,
        steps=cfg.steps,
        guidance=cfg.guidance,
        seed=derive_seed(cfg.seed, case.case_id),
        negative_prompt=cfg.negative_prompt,
        timeline=fit.timeline,
        timeline_units=case.timeline_units,
        timeline_mode=cfg.timeline_mode,
        class_labels=list(case.class_labels) if case.class_labels is not None else None,
    )


def case_settings(
    cfg: GenerateConfig, req: GenerationRequest, described: dict[str, Any] | None, identity: str | None
) -> dict[str, Any]:
    """The settings recorded for one case (its line in ``generation.jsonl``)."""
    mo = cfg.model_options
    described = described or {}
    return {
        "steps": cfg.steps,
        "guidance": cfg.guidance,
        "frames": req.num_frames,
        "width": cfg.width,
        "height": cfg.height,
        "fps": cfg.fps,
        "identity": str(identity or described.get("identity", mo.identity)),
        "timeline_mode": str(cfg.timeline_mode),
        "model": described.get("model", mo.model),
        "lora": [str(p) for p in mo.lora],
        "lora_scale": mo.lora_scale,
        "negative_prompt": cfg.negative_prompt,
    }


@dataclass
class Job:
    """One case to generate: its request (built once) and its result so far."""

    case: Case
    request: GenerationRequest
    result: CaseResult
    dest: Path
    fit: Fit
    owner: str | None = None  # the other live process that held its claim, when one did


@dataclass
class Plan:
    """This share's cases: the ones to generate, and the results known without a model."""

    jobs: list[Job] = field(default_factory=list)
    known: list[CaseResult] = field(default_factory=list)  # malformed, unfittable or already done


def load_entries(cfg: GenerateConfig, progress: Progress) -> tuple[list[tuple[str, Case | CaseError]], int]:
    """(key, case or malformed-case error) for every case of the test set on ``cfg.track``, and the
    number of valid cases left out because they belong to the other track."""
    from ipvgkit.data.testsets import load_testset

    testset = load_testset(cfg.cases, timeline_units=cfg.timeline_units)
    cases = list(testset.cases)
    other = 0
    if cfg.track is not None:
        keep = [c for c in cases if c.track == cfg.track]
        other = len(cases) - len(keep)
        if cases and not keep:
            tracks = sorted({c.track for c in cases})
            raise UsageError(
                f"--track {cfg.track}: {cfg.cases} holds only track {'/'.join(map(str, tracks))} cases "
                f"(Track 1 test sets are formats A/B, Track 2 format C)"
            )
        if other:
            progress.log(f"skipping {other} case(s) of the other track (--track {cfg.track})")
        cases = keep
    entries: list[tuple[str, Case | CaseError]] = [(c.case_id, c) for c in cases]
    for e in testset.errors:
        key = getattr(e, "case_key", None) or str(e)
        entries.append((str(key), e))
    return entries, other


def plan_cases(
    cfg: GenerateConfig, mine: list[tuple[str, Case | CaseError]], out: Path, shard: Shard
) -> Plan:
    """Sort this share's entries into jobs and results known without a model (resume: a finished video
    of the same frames and size is skipped unless ``cfg.overwrite``)."""
    from ipvgkit.stages.generate_io import finished_video_problem

    plan = Plan()
    for key, item in mine:
        where = dict(rank=shard.rank, world_size=shard.world_size)
        if isinstance(item, CaseError):
            plan.known.append(CaseResult(key, None, "failed", error=error_text(item), **where))
            continue
        fit = fit_timeline(item, cfg)
        req = build_request(item, cfg, fit)
        base = CaseResult(item.case_id, item.output_name, "ok", seed=req.seed, **where)
        if fit.problem:
            settings = case_settings(cfg, req, None, None)
            plan.known.append(
                dataclasses.replace(base, status="failed", error=fit.problem, settings=settings)
            )
            continue
        dest = out / item.output_name
        done = finished_video_problem(dest, req.num_frames, cfg.width, cfg.height) is None
        if done and not cfg.overwrite:
            settings = case_settings(cfg, req, None, None)
            plan.known.append(
                dataclasses.replace(base, status="skipped", error="already done", settings=settings)
            )
        else:
            plan.jobs.append(Job(item, req, base, dest, fit))
    return plan


def fit_summary(cfg: GenerateConfig, jobs: list[Job]) -> str | None:
    """The one line per run that says which timelines were fitted to the video, and how."""
    scaled = [j.fit.scale for j in jobs if j.fit.scale is not None]
    extended = [j.fit.extended for j in jobs if j.fit.extended is not None]
    video = f"{cfg.frames} frames at {cfg.fps:g} fps = {frame_math.video_duration(cfg.frames, cfg.fps):.2f}s"
    if scaled:
        lo, hi = min(scaled), max(scaled)
        by = f"x{lo:.2f}" if abs(hi - lo) < 5e-3 else f"x{lo:.2f} to x{hi:.2f}"
        return (
            f"timeline-fit scale: {len(scaled)} case(s) have timelines longer than the video ({video}); "
            f"their event times were scaled {by} (--timeline-fit extend|error to change)"
        )
    if extended:
        return (
            f"timeline-fit extend: {len(extended)} case(s) have timelines longer than the video ({video}); "
            f"they get {min(extended)}-{max(extended)} frames instead"
        )
    return None


def error_text(exc: BaseException) -> str:
    """One line for a failed case: the error's own message (its type too, for unexpected errors)."""
    from ipvgkit.errors import IpvgError

    msg = str(exc).strip().splitlines()
    text = msg[0] if msg else ""
    if isinstance(exc, CaseError):
        text = exc.detail.strip().splitlines()[0] if exc.detail.strip() else text
    if isinstance(exc, IpvgError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
