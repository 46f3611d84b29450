"""``ipvg generate``: turn a test set into one H.264 video per case, resumably and shardably.

:func:`run_generation` loads the test set, takes this process's share of the cases
(:mod:`ipvgkit.distributed`), skips videos that are already finished, asks the backend to
``check`` every remaining case before any generation, then generates and encodes them one by one.
Every case that was considered leaves one JSON line in ``generation.jsonl`` (``generation.rank{R}.jsonl``
when several ranks or shards share the output folder). A failing case is recorded and the batch goes on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ipvgkit.data.cases import Case
from ipvgkit.distributed import Shard, assign, device_for, natural_key, parse_shard, resolve_shard
from ipvgkit.errors import CaseError, CheckFailed, IpvgError, MediaError, UsageError
from ipvgkit.models.base import GenerationRequest, ModelOptions, TimelineMode, VideoBackend
from ipvgkit.stages.generate_io import (
    append_record,
    finished_video_problem,
    on_cuda,
    peak_memory,
    read_generation_log,
    remove_stale_temps,
    reset_peak_memory,
)

Status = Literal["ok", "failed", "skipped"]
CONFIG_NAME = "generate.yaml"
LOG_NAME = "generation.jsonl"
X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
)


@dataclass
class GenerateConfig:
    """Everything ``ipvg generate`` needs; saved as ``generate.yaml`` in the output folder.

    ``track`` None means every case of the test set. ``shard`` is ``"K/N"`` (1-based K) or None.
    ``seed`` is the base seed: case ``c`` uses :func:`derive_seed` ``(seed, c.case_id)``.
    """

    cases: Path | None = None
    out: Path | None = None
    track: int | None = None
    model_options: ModelOptions = field(default_factory=ModelOptions)
    timeline_mode: TimelineMode = "masked"
    timeline_units: Literal["auto", "seconds", "fraction"] = "auto"
    steps: int = 50
    guidance: float = 5.0
    frames: int = 81
    height: int = 480
    width: int = 832
    fps: float = 16.0
    seed: int = 0
    negative_prompt: str | None = None
    shard: str | None = None
    overwrite: bool = False
    crf: int = 18
    preset: str = "medium"  # x264 preset: faster presets encode faster into larger files of like quality
    background_encode: bool = True  # encode video i while video i+1 generates

    def __post_init__(self) -> None:
        if self.track not in (None, 1, 2):
            raise UsageError(f"track must be 1 or 2, got {self.track!r}")
        if self.timeline_mode not in ("masked", "soft", "prompt"):
            raise UsageError(f"timeline_mode must be masked, soft or prompt, got {self.timeline_mode!r}")
        if self.timeline_units not in ("auto", "seconds", "fraction"):
            raise UsageError(f"timeline_units must be auto, seconds or fraction, got {self.timeline_units!r}")
        for name in ("steps", "frames", "height", "width"):
            if int(getattr(self, name)) < 1:
                raise UsageError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        if self.fps <= 0:
            raise UsageError(f"fps must be positive, got {self.fps!r}")
        if not 0 <= self.crf <= 51:
            raise UsageError(f"crf must be between 0 and 51, got {self.crf!r}")
        if self.preset not in X264_PRESETS:
            raise UsageError(f"preset must be one of {', '.join(X264_PRESETS)}, got {self.preset!r}")
        if self.shard is not None:
            parse_shard(self.shard)


@dataclass
class CaseResult:
    """What happened to one case; :meth:`to_record` is its line in ``generation.jsonl``."""

    case_id: str
    output_name: str | None
    status: Status
    seed: int | None = None
    error: str | None = None
    seconds: float = 0.0
    gen_seconds: float = 0.0
    encode_seconds: float = 0.0
    peak_memory_mb: float | None = None
    peak_memory_kind: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    backend: dict[str, Any] | None = None
    rank: int = 0
    world_size: int = 1

    def to_record(self) -> dict[str, Any]:
        rec = dataclasses.asdict(self)
        rec["time"] = datetime.now(UTC).isoformat(timespec="seconds")
        return rec


@dataclass
class GenerateReport:
    """The outcome of :func:`run_generation` for this process's share of the cases."""

    out_dir: Path
    log_path: Path
    config_path: Path | None
    shard: Shard
    results: list[CaseResult]
    seconds: float
    skipped_other_track: int = 0
    load_seconds: float | None = None  # the backend's optional load(), when it has one

    def by_status(self, status: Status) -> list[CaseResult]:
        return [r for r in self.results if r.status == status]

    @property
    def ok(self) -> bool:
        return not self.by_status("failed")

    @property
    def problems(self) -> list[str]:
        """One line per failed case."""
        return [f"case {r.case_id}: {r.error}" for r in self.by_status("failed")]

    def summary_rows(self) -> list[dict[str, Any]]:
        """Rows ``status, videos, seconds/video`` (mean over the videos with that status)."""
        rows = []
        for status, label in (("ok", "done"), ("skipped", "skipped"), ("failed", "failed")):
            rs = self.by_status(status)
            mean = sum(r.seconds for r in rs) / len(rs) if rs and status == "ok" else None
            rows.append({"status": label, "videos": len(rs), "seconds_per_video": mean})
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "out_dir": str(self.out_dir),
            "log": str(self.log_path),
            "config": str(self.config_path) if self.config_path else None,
            "rank": self.shard.rank,
            "world_size": self.shard.world_size,
            "seconds": round(self.seconds, 3),
            "summary": self.summary_rows(),
            "skipped_other_track": self.skipped_other_track,
            "load_seconds": None if self.load_seconds is None else round(self.load_seconds, 3),
            "results": [dataclasses.asdict(r) for r in self.results],
        }

    def raise_if_failed(self) -> None:
        """Raise :class:`CheckFailed` (exit 1) naming every failed case."""
        failed = self.by_status("failed")
        if failed:
            raise CheckFailed(
                f"{len(failed)} of {len(self.results)} case(s) failed (details in {self.log_path})",
                self.problems,
            )


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class GenerateHooks:
    """Callbacks for a front end: ``log`` (one-line messages, default stderr), ``planned(total)``,
    ``status(text)`` (what is going on now) and ``done(result)`` after each case."""

    log: Callable[[str], None] = _stderr
    planned: Callable[[int], None] | None = None
    status: Callable[[str], None] | None = None
    done: Callable[[CaseResult], None] | None = None


def derive_seed(base_seed: int, case_id: str) -> int:
    """Per-case seed: ``sha256(f"{base_seed}:{case_id}")`` as an integer mod 2**31 (stable everywhere)."""
    digest = hashlib.sha256(f"{int(base_seed)}:{case_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 2**31


def log_name(shard: Shard) -> str:
    """``generation.jsonl`` for one process, ``generation.rank{R}.jsonl`` (0-based R) when sharded."""
    return f"generation.rank{shard.rank}.jsonl" if shard.is_distributed else LOG_NAME


def build_request(case: Case, cfg: GenerateConfig) -> GenerationRequest:
    """The backend request for one case under ``cfg`` (seed derived from the base seed and the case id)."""
    return GenerationRequest(
        case_id=case.case_id,
        prompt=case.prompt,
        ref_images=list(case.ref_images),
        num_frames=cfg.frames,
        height=cfg.height,
        width=cfg.width,
        fps=cfg.fps,
        steps=cfg.steps,
        guidance=cfg.guidance,
        seed=derive_seed(cfg.seed, case.case_id),
        negative_prompt=cfg.negative_prompt,
        timeline=list(case.timeline) if case.timeline is not None else None,
        timeline_units=case.timeline_units,
        timeline_mode=cfg.timeline_mode,
        class_labels=list(case.class_labels) if case.class_labels is not None else None,
    )


def _settings(
    cfg: GenerateConfig, described: dict[str, Any] | None, identity: str | None = None
) -> dict[str, Any]:
    mo = cfg.model_options
    described = described or {}
    return {
        "steps": cfg.steps,
        "guidance": cfg.guidance,
        "frames": cfg.frames,
        "width": cfg.width,
        "height": cfg.height,
        "fps": cfg.fps,
        "identity": identity or described.get("identity", mo.identity),
        "timeline_mode": cfg.timeline_mode,
        "model": described.get("model", mo.model),
        "lora": [str(p) for p in mo.lora],
        "lora_scale": mo.lora_scale,
        "negative_prompt": cfg.negative_prompt,
    }


def _error_text(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    text = msg[0] if msg else ""
    if isinstance(exc, CaseError):
        text = exc.detail.strip().splitlines()[0] if exc.detail.strip() else text
    if isinstance(exc, IpvgError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _check_frames(frames: Any, req: GenerationRequest) -> np.ndarray:
    arr = np.asarray(frames)
    want = (req.num_frames, req.height, req.width, 3)
    if arr.dtype != np.uint8 or arr.shape != want:
        raise MediaError(f"backend returned {arr.dtype} frames {arr.shape}, expected uint8 {want}")
    return arr


def _load_cases(cfg: GenerateConfig, hooks: GenerateHooks) -> tuple[list[tuple[str, Case | CaseError]], int]:
    """(key, case or malformed-case error) for every case of the test set on ``cfg.track``, and the
    number of valid cases left out because they belong to the other track."""
    from ipvgkit.data.testsets import load_testset

    testset = load_testset(cfg.cases, timeline_units=cfg.timeline_units)
    cases = list(testset.cases)
    entries: list[tuple[str, Case | CaseError]] = []
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
            hooks.log(f"skipping {other} case(s) of the other track (--track {cfg.track})")
        cases = keep
    entries += [(c.case_id, c) for c in cases]
    for e in testset.errors:
        key = getattr(e, "case_key", None) or str(e)
        entries.append((str(key), e))
    return entries, other


def _warm_up(backend: VideoBackend, hooks: GenerateHooks) -> float | None:
    """Call the backend's optional ``load()`` (weights loaded before the first case, so that per-case
    seconds measure generation only); returns its seconds, or None when the backend has no ``load``."""
    load = getattr(backend, "load", None)
    if not callable(load):
        return None
    if hooks.status:
        hooks.status("loading weights")
    t0 = time.perf_counter()
    load()
    return time.perf_counter() - t0


def _identity_of(backend: VideoBackend, req: GenerationRequest) -> str | None:
    """The identity mode the backend will use for ``req``, when it can say (optional ``identity_mode``)."""
    mode = getattr(backend, "identity_mode", None)
    if not callable(mode):
        return None
    try:
        return str(mode(req))
    except IpvgError:
        return None


def _prepare_backend(cfg: GenerateConfig, shard: Shard) -> VideoBackend:
    from ipvgkit.models import load_backend

    options = dataclasses.replace(cfg.model_options, device=device_for(cfg.model_options.device, shard))
    return load_backend(options)


def _generate_frames(
    backend: VideoBackend, req: GenerationRequest, base: CaseResult, device: str
) -> tuple[CaseResult, np.ndarray | None]:
    """Run the backend for one case: (result so far, frames) or (failed result, None)."""
    reset_peak_memory(device)
    t0 = time.perf_counter()
    try:
        frames = _check_frames(backend.generate(req), req)
    except Exception as exc:  # noqa: BLE001 - one failing case must not stop the batch
        peak, kind = peak_memory(device)
        if on_cuda(device):
            import torch

            torch.cuda.empty_cache()
        failed = dataclasses.replace(
            base,
            status="failed",
            error=_error_text(exc),
            seconds=round(time.perf_counter() - t0, 4),
            peak_memory_mb=round(peak, 1),
            peak_memory_kind=kind,
        )
        return failed, None
    peak, kind = peak_memory(device)
    gen = round(time.perf_counter() - t0, 4)
    done = dataclasses.replace(
        base, gen_seconds=gen, seconds=gen, peak_memory_mb=round(peak, 1), peak_memory_kind=kind
    )
    return done, frames


def _encode(frames: np.ndarray, dest: Path, result: CaseResult, cfg: GenerateConfig) -> CaseResult:
    """Encode one generated video (atomically) and complete its result."""
    from ipvgkit.media import encode_video

    t0 = time.perf_counter()
    try:
        encode_video(frames, dest, fps=cfg.fps, crf=cfg.crf, preset=cfg.preset)
    except Exception as exc:  # noqa: BLE001 - one failing case must not stop the batch
        return dataclasses.replace(result, status="failed", error=_error_text(exc))
    enc = round(time.perf_counter() - t0, 4)
    return dataclasses.replace(
        result, status="ok", encode_seconds=enc, seconds=round(result.gen_seconds + enc, 4)
    )


class _EncodeQueue:
    """Encodes videos on one background thread while the next case generates (ffmpeg runs in its own
    process, so this hides most of the encoding time). At most one video waits: memory stays bounded.
    Results are handed to ``finish`` on the calling thread, in submission order."""

    def __init__(self, finish: Callable[[CaseResult], None], background: bool):
        self.finish = finish
        self.pool = None
        if background:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ipvg-encode")
        self.pending: list = []

    def submit(self, frames: np.ndarray, dest: Path, result: CaseResult, cfg: GenerateConfig) -> None:
        if self.pool is None:
            self.finish(_encode(frames, dest, result, cfg))
            return
        while self.pending:  # wait for the previous video: never more than one queued
            self.finish(self.pending.pop(0).result())
        self.pending.append(self.pool.submit(_encode, frames, dest, result, cfg))

    def close(self) -> None:
        """Wait for every queued video and report it (also on Ctrl-C, so no finished video is unlogged)."""
        try:
            while self.pending:
                self.finish(self.pending.pop(0).result())
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True)


def run_generation(
    cfg: GenerateConfig,
    backend: VideoBackend | None = None,
    hooks: GenerateHooks | None = None,
) -> GenerateReport:
    """Generate this process's share of ``cfg.cases`` into ``cfg.out``; see the module docstring.

    ``backend`` defaults to ``load_backend(cfg.model_options)`` (loaded only if some case needs work;
    its device becomes ``cuda:LOCAL_RANK`` under a multi-GPU launcher). Failed cases are in the report
    (``report.raise_if_failed()`` turns them into :class:`CheckFailed`); errors that stop the whole run
    (unreadable test set, bad usage, missing weights) are raised.
    """
    from ipvgkit import config as config_mod

    hooks = hooks or GenerateHooks()
    t_start = time.perf_counter()
    if cfg.cases is None:
        raise UsageError("no test set given: pass --cases TESTSET (or cases: in the config)")
    if cfg.out is None:
        raise UsageError("no output folder given: pass --out DIR (or out: in the config)")
    shard = resolve_shard(cfg.shard)
    out = Path(cfg.out)

    entries, other_track = _load_cases(cfg, hooks)
    mine = assign(entries, shard, key=lambda e: natural_key(e[0]))
    out.mkdir(parents=True, exist_ok=True)
    config_path = config_mod.save(cfg, out / CONFIG_NAME) if shard.rank == 0 else None
    log_path = out / log_name(shard)
    if shard.is_distributed:
        hooks.log(f"{shard.label()}: {len(mine)} of {len(entries)} case(s)")
    if hooks.planned:
        hooks.planned(len(mine))

    results: list[CaseResult] = []

    def finish(result: CaseResult) -> None:
        results.append(result)
        append_record(log_path, result.to_record())
        if result.status == "failed":
            hooks.log(f"case {result.case_id}: failed: {result.error}")
        if hooks.done:
            hooks.done(result)

    def base(case: Case) -> CaseResult:
        return CaseResult(
            case_id=case.case_id,
            output_name=case.output_name,
            status="ok",
            seed=derive_seed(cfg.seed, case.case_id),
            settings=_settings(cfg, None),
            rank=shard.rank,
            world_size=shard.world_size,
        )

    load_seconds: float | None = None
    pending: list[Case] = []
    for key, item in mine:
        if isinstance(item, CaseError):
            finish(
                CaseResult(
                    key, None, "failed", error=_error_text(item), rank=shard.rank, world_size=shard.world_size
                )
            )
            continue
        dest = out / item.output_name
        remove_stale_temps(dest)
        if not cfg.overwrite and finished_video_problem(dest, cfg.frames, cfg.width, cfg.height) is None:
            finish(dataclasses.replace(base(item), status="skipped", error="already done"))
        else:
            pending.append(item)

    if pending:
        if hooks.status:
            hooks.status("loading model")
        backend = backend if backend is not None else _prepare_backend(cfg, shard)
        described = dict(backend.describe())
        device = str(described.get("device", cfg.model_options.device))
        if hooks.status:
            hooks.status("checking cases")
        checked: list[tuple[Case, GenerationRequest]] = []
        for case in pending:
            req = build_request(case, cfg)
            try:
                backend.check(req)
            except IpvgError as exc:
                finish(dataclasses.replace(base(case), status="failed", error=_error_text(exc)))
                continue
            checked.append((case, req))
        load_seconds = _warm_up(backend, hooks) if checked else None
        queue = _EncodeQueue(finish, background=cfg.background_encode)
        try:
            for case, req in checked:
                if hooks.status:
                    hooks.status(f"generating {case.case_id}")
                settings = _settings(cfg, described, _identity_of(backend, req))
                start = dataclasses.replace(base(case), settings=settings, backend=described)
                result, frames = _generate_frames(backend, req, start, device)
                described = dict(backend.describe())
                result = dataclasses.replace(result, backend=described)
                if frames is None:
                    finish(result)
                else:
                    queue.submit(frames, out / case.output_name, result, cfg)
        finally:
            queue.close()

    return GenerateReport(
        out_dir=out,
        log_path=log_path,
        config_path=config_path,
        shard=shard,
        results=results,
        seconds=time.perf_counter() - t_start,
        skipped_other_track=other_track,
        load_seconds=load_seconds,
    )


__all__ = [
    "CaseResult",
    "GenerateConfig",
    "GenerateHooks",
    "GenerateReport",
    "build_request",
    "derive_seed",
    "finished_video_problem",
    "log_name",
    "read_generation_log",
    "remove_stale_temps",
    "run_generation",
]
