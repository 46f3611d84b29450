"""Execution of ``ipvg generate``: one backend call per case, the encode queue, claims and waiting.

:class:`Runner` owns what a run writes: every result goes through :meth:`Runner.finish` (one line in the
log, the claim released, progress advanced). :func:`execute` generates the checked jobs in order; a
job claimed by another live process is put aside and looked at again until that process has finished
it (or died, and its claim is taken over).
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ipvgkit.errors import MediaError
from ipvgkit.models.base import BackendWarning, GenerationRequest, VideoBackend
from ipvgkit.progress import Progress
from ipvgkit.stages import generate_claim as claims
from ipvgkit.stages.generate_io import (
    append_record,
    finished_video_problem,
    on_cuda,
    peak_memory,
    remove_stale_temps,
    reset_peak_memory,
)
from ipvgkit.stages.generate_plan import Job, error_text
from ipvgkit.stages.generate_types import DONE_ELSEWHERE, CaseResult, GenerateConfig


class Runner:
    """The results of one run: logged, reported and their claims released as they come in."""

    def __init__(self, log_path: Path, progress: Progress):
        self.log_path = log_path
        self.progress = progress
        self.results: list[CaseResult] = []
        self.held: dict[str, claims.Claim] = {}
        self.interrupted = False

    def finish(self, result: CaseResult) -> None:
        claim = self.held.pop(result.case_id, None)
        if self.interrupted and result.status == "failed":
            # cut off by Ctrl-C (ffmpeg gets the signal too): not a failure of the case
            self.progress.log(f"case {result.case_id}: interrupted (rerun to generate it)")
        else:
            self.results.append(result)
            append_record(self.log_path, result.to_record())
            if result.status == "failed":
                self.progress.log(f"case {result.case_id}: failed: {result.error}")
            self.progress.advance()
        if claim is not None:
            claim.release()

    def release_all(self) -> None:
        for claim in self.held.values():
            claim.release()
        self.held.clear()


def check_frames(frames: Any, req: GenerationRequest) -> np.ndarray:
    arr = np.asarray(frames)
    want = (req.num_frames, req.height, req.width, 3)
    if arr.dtype != np.uint8 or arr.shape != want:
        raise MediaError(f"backend returned {arr.dtype} frames {arr.shape}, expected uint8 {want}")
    return arr


def warm_up(backend: VideoBackend, progress: Progress) -> float | None:
    """Call the backend's optional ``load()`` (weights loaded before the first case, so that per-case
    seconds measure generation only); returns its seconds, or None when the backend has no ``load``."""
    load = getattr(backend, "load", None)
    if not callable(load):
        return None
    progress.status("loading weights")
    t0 = time.perf_counter()
    load()
    return time.perf_counter() - t0


def generate_frames(
    backend: VideoBackend, req: GenerationRequest, base: CaseResult, device: str, progress: Progress
) -> tuple[CaseResult, np.ndarray | None]:
    """Run the backend for one case: (result so far, frames) or (failed result, None). The backend's
    :class:`BackendWarning` s become the case's notes (and one log line each)."""
    reset_peak_memory(device)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BackendWarning)
        try:
            frames = check_frames(backend.generate(req), req)
        except Exception as exc:  # noqa: BLE001 - one failing case must not stop the batch
            frames, error = None, error_text(exc)
        else:
            error = None
    notes = [str(w.message) for w in caught if issubclass(w.category, BackendWarning)]
    for w in caught:
        if not issubclass(w.category, BackendWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    for note in notes:
        progress.log(f"case {req.case_id}: warning: {note}")
    peak, kind = peak_memory(device)
    spent = round(time.perf_counter() - t0, 4)
    result = dataclasses.replace(
        base, seconds=spent, peak_memory_mb=round(peak, 1), peak_memory_kind=kind, notes=base.notes + notes
    )
    if frames is None:
        if on_cuda(device):
            import torch

            torch.cuda.empty_cache()
        return dataclasses.replace(result, status="failed", error=error), None
    return dataclasses.replace(result, gen_seconds=spent), frames


def encode(frames: np.ndarray, dest: Path, result: CaseResult, cfg: GenerateConfig) -> CaseResult:
    """Encode one generated video (atomically) and complete its result."""
    from ipvgkit.media import encode_video

    t0 = time.perf_counter()
    try:
        encode_video(frames, dest, fps=cfg.fps, crf=cfg.crf, preset=cfg.preset)
    except Exception as exc:  # noqa: BLE001 - one failing case must not stop the batch
        return dataclasses.replace(result, status="failed", error=error_text(exc))
    enc = round(time.perf_counter() - t0, 4)
    return dataclasses.replace(
        result, status="ok", encode_seconds=enc, seconds=round(result.gen_seconds + enc, 4)
    )


class EncodeQueue:
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
            self.finish(encode(frames, dest, result, cfg))
            return
        while self.pending:  # wait for the previous video: never more than one queued
            self.finish(self.pending.pop(0).result())
        self.pending.append(self.pool.submit(encode, frames, dest, result, cfg))

    def drain(self) -> None:
        """Wait for every queued video and report it (its claim is released then)."""
        while self.pending:
            self.finish(self.pending.pop(0).result())

    def close(self) -> None:
        """Wait for every queued video and report it (also on Ctrl-C, so no finished video is unlogged)."""
        try:
            self.drain()
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True)


class _Executor:
    """Claims, generates and encodes jobs (see :func:`execute`)."""

    def __init__(
        self, cfg: GenerateConfig, backend: VideoBackend, runner: Runner, describe: Callable, before: Callable
    ):
        self.cfg, self.backend, self.runner, self.describe = cfg, backend, runner, describe
        self.before = before  # called with each request just before it is generated (context parallelism)
        self.queue = EncodeQueue(runner.finish, background=cfg.background_encode)
        self.current: str | None = None

    def attempt(self, job: Job, device: str) -> bool:
        """Generate ``job`` if this process can claim it; False when a live process holds it."""
        claim, owner = claims.acquire(job.dest)
        if claim is None:
            job.owner = claims.describe_owner(owner)
            return False
        self.runner.held[job.case.case_id] = claim
        if (job.owner or not self.cfg.overwrite) and self._finished(job):
            done = f"{DONE_ELSEWHERE} ({job.owner or 'before this run claimed it'})"
            self.runner.finish(dataclasses.replace(job.result, status="skipped", error=done))
            return True
        remove_stale_temps(job.dest)  # ours or a dead owner's: we hold the claim
        self.current = job.case.case_id
        self.runner.progress.status(f"generating {job.case.case_id}")
        if self.before is not None:
            self.before(job.request)
        result, frames = generate_frames(self.backend, job.request, job.result, device, self.runner.progress)
        result = dataclasses.replace(result, backend=self.describe())
        if frames is None:
            self.runner.finish(result)
        else:
            self.queue.submit(frames, job.dest, result, self.cfg)
        self.current = None
        return True

    def _finished(self, job: Job) -> bool:
        n = job.request.num_frames
        return finished_video_problem(job.dest, n, self.cfg.width, self.cfg.height) is None


def execute(
    cfg: GenerateConfig,
    backend: VideoBackend,
    jobs: list[Job],
    runner: Runner,
    device: str,
    describe: Callable,
    before: Callable[[GenerationRequest | None], None] | None = None,
) -> None:
    """Generate the checked ``jobs`` in order, then wait for those claimed by other live processes.
    ``before(request)`` is called before each generation and ``before(None)`` once at the end."""
    ex = _Executor(cfg, backend, runner, describe, before)
    try:
        waiting = [job for job in jobs if not ex.attempt(job, device)]
        ex.queue.drain()  # our last video and its claim: others may be waiting for it
        if waiting:
            owners = sorted({(j.owner or "").split(" since ")[0] for j in waiting})
            runner.progress.log(
                f"waiting for {len(waiting)} case(s) claimed by other processes ({'; '.join(owners)})"
            )
            runner.progress.status(f"waiting for {len(waiting)} case(s) of other processes")
        while waiting:
            time.sleep(cfg.claim_poll_seconds)
            waiting = [job for job in waiting if not ex.attempt(job, device)]
            ex.queue.drain()
    except KeyboardInterrupt:
        runner.interrupted = True
        if ex.current is not None:
            runner.progress.log(f"case {ex.current}: interrupted (rerun to generate it)")
        raise
    finally:
        try:
            ex.queue.close()
        finally:
            runner.release_all()
            if before is not None:
                before(None)
