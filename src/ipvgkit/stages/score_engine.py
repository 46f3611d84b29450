"""The execution engine of ``ipvg score``: decode each video once, run every metric on it, in this
process or in a pool of scoring processes.

A *chunk* is a few videos (``video_batch``) that share batched model calls. :func:`score_chunk` opens
each video of a chunk once (:func:`open_sample`: the union of the frames all metrics need, one decoding
pass), runs each metric over all of them, keeps thumbnails of frames it decoded anyway, and returns a
:class:`ChunkResult`. :func:`score_in_processes` does the same in spawned/forked worker processes, each
with its own loaded metrics (see :func:`parallel_processes` for when that is used).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ipvgkit.data.cases import Case
from ipvgkit.errors import InputError, IpvgError
from ipvgkit.metrics.base import Metric, MetricContext, MetricResult, VideoSample
from ipvgkit.stages.score_rows import ScoreRow, Thumbs, jpeg_bytes, make_row, pick_thumb_frames
from ipvgkit.stages.score_setup import build_metrics

if TYPE_CHECKING:
    from ipvgkit.stages.score import ScoreConfig

MAX_REF_CACHES = 32  # reference sets whose images/detections/embeddings are kept for following videos

Work = list[tuple[Case, Path]]  # a chunk: (case, video path) pairs


@dataclass
class ChunkResult:
    """What scoring one chunk gives: its rows (in chunk order), thumbnails by output name, timings."""

    rows: list[ScoreRow]
    thumbs: dict[str, Thumbs] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def _error_results(names: list[str], message: str) -> dict[str, MetricResult]:
    return {n: MetricResult(None, {}, message) for n in names}


def _safe_compute(metric: Metric, sample: VideoSample) -> MetricResult:
    try:
        return metric.compute(sample)
    except IpvgError as e:
        return MetricResult(None, {}, str(e).splitlines()[0])
    except Exception as e:  # noqa: BLE001 - one bad video must not stop the batch; recorded in its row
        return MetricResult(None, {}, f"{type(e).__name__}: {e}")


def run_metric_batch(metric: Metric, samples: list[VideoSample]) -> list[MetricResult]:
    """``compute_batch`` on all samples; if it raises, each sample alone (so one bad video fails alone)."""
    try:
        res = metric.compute_batch(samples)
        if len(res) != len(samples):
            raise RuntimeError(f"{metric.name}: compute_batch returned {len(res)} results for {len(samples)}")
        return res
    except Exception:  # noqa: BLE001 - retried per video below, where the error is recorded
        return [_safe_compute(metric, s) for s in samples]


def open_sample(case: Case, path: Path, metrics: list[Metric], ref_cache: dict | None = None) -> VideoSample:
    """Probe the video, then decode the union of every metric's frames in one pass.

    ``ref_cache`` is the store of ``ref_*`` cache entries shared with other videos of the same references.
    """
    from ipvgkit.errors import MediaError
    from ipvgkit.media import probe_video, read_video

    info = probe_video(path, count_frames=True)
    if info.n_frames < 1:
        raise InputError(f"{path}: no frames")

    def union(n_frames: int) -> set[int]:
        needed: set[int] = set()
        for m in metrics:
            needed.update(i for i in m.frames_for(case, n_frames, float(info.fps)) if 0 <= i < n_frames)
        return needed

    needed = union(info.n_frames)
    sample = VideoSample(case, path, info, needed, ref_cache=ref_cache)
    try:
        sample.frames(sorted(needed))  # the one decoding pass
    except MediaError as e:
        if "fewer frames" not in str(e):
            raise
        # the container's frame count was wrong: count the frames by decoding them all, then start over
        frames = read_video(path)
        info = dataclasses.replace(info, n_frames=len(frames))
        needed = union(info.n_frames)
        sample = VideoSample(
            case, path, info, needed, preloaded={i: frames[i] for i in needed}, ref_cache=ref_cache
        )
        sample.decode_passes = 1
    return sample


def sample_thumbs(sample: VideoSample) -> Thumbs:
    """Thumbnails of frames the sample has decoded already (no decoding: see ``pick_thumb_frames``)."""
    from ipvgkit.metrics.timeline import event_bounds

    n, fps = sample.n_frames, float(sample.info.fps)
    windows = event_bounds(sample.case, n, fps) if sample.case.timeline else []
    keep = pick_thumb_frames(sorted(sample.needed), windows)
    frames = sample.frames(keep) if keep else []
    return Thumbs(n, fps, {i: jpeg_bytes(f) for i, f in zip(keep, frames, strict=True)})


def _ref_key(case: Case) -> tuple[str, ...]:
    return tuple(str(Path(p).resolve()) for p in case.ref_images)


def _open_chunk(
    chunk: Work, metrics: list[Metric], names: list[str], ref_caches: dict
) -> tuple[list[VideoSample], dict[str, dict[str, MetricResult]]]:
    """The chunk's samples, and error results for the videos that could not be opened."""
    samples: list[VideoSample] = []
    failed: dict[str, dict[str, MetricResult]] = {}
    for case, path in chunk:
        try:
            key = _ref_key(case)
            if key not in ref_caches:
                ref_caches[key] = {}
                while len(ref_caches) > MAX_REF_CACHES:
                    ref_caches.pop(next(iter(ref_caches)))
            samples.append(open_sample(case, path, metrics, ref_caches[key]))
        except IpvgError as e:
            failed[case.output_name] = _error_results(names, str(e).splitlines()[0])
        except Exception as e:  # noqa: BLE001 - an unreadable video is reported in its row, not fatal
            failed[case.output_name] = _error_results(names, f"{type(e).__name__}: {e}")
    return samples, failed


def score_chunk(
    chunk: Work, metrics: list[Metric], names: list[str], sig: str, ref_caches: dict | None = None
) -> ChunkResult:
    """Open every video of the chunk once, run each metric over all of them, return their rows.

    ``ref_caches`` (run-level, keyed by the reference image paths) holds the ``ref_*`` cache entries
    (reference images, detections, embeddings) shared by all videos with the same reference images.
    """
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    samples, results = _open_chunk(chunk, metrics, names, {} if ref_caches is None else ref_caches)
    timings["decode"] = time.perf_counter() - t0
    for s in samples:
        results[s.case.output_name] = {}
    if samples:
        for m in metrics:
            t1 = time.perf_counter()
            for s, r in zip(samples, run_metric_batch(m, samples), strict=True):
                results[s.case.output_name][m.name] = r
            timings[m.name] = time.perf_counter() - t1
    t1 = time.perf_counter()
    thumbs = {}
    for s in samples:
        with contextlib.suppress(Exception):  # thumbnails only illustrate the report; the scores stand
            thumbs[s.case.output_name] = sample_thumbs(s)
        s.release()
    timings["thumbnails"] = time.perf_counter() - t1
    per_video = (time.perf_counter() - t0) / max(1, len(chunk))
    rows = [make_row(case, path, sig, results[case.output_name], per_video) for case, path in chunk]
    return ChunkResult(rows, thumbs, timings)


def parallel_processes(cfg: ScoreConfig, metrics: list[Metric], n_chunks: int, custom: bool = False) -> int:
    """How many processes score video chunks in parallel (``n_chunks``: how many pieces of work there are).

    One process (everything in line) on a GPU, with metric instances passed in by a caller, when a
    metric keeps run-level state across videos (``finalize``, e.g. ``fid``), when a metric is not
    ``process_parallel`` (torch/onnxruntime models use every core already and are not worth a copy per
    process); else ``cfg.processes``, or automatically the CPU count when there are several chunks.
    Workers are forked only from a single-threaded process, else spawned (``ipvgkit.procs``), and each
    loads its own models, so a pool only pays off for several videos.
    """
    if custom or n_chunks < 2 or not cfg.device.startswith("cpu"):
        return 1
    if any(type(m).finalize is not Metric.finalize or not m.process_parallel for m in metrics):
        return 1
    wanted = cfg.processes or (os.cpu_count() or 1)
    return max(1, min(wanted, n_chunks, 16))


_WORKER: dict[str, Any] = {}


def _worker_init(preset: str | None, names: list[str], ctx: MetricContext) -> None:
    """Runs once in each scoring process: build and load its own metrics."""
    import cv2

    cv2.setNumThreads(1)  # one process per core already
    metrics = build_metrics(preset, names)
    ctx = dataclasses.replace(ctx, options={**ctx.options, "workers": 1})
    for m in metrics:
        m.load(ctx)
    _WORKER.update(metrics=metrics, ref_caches={})


def _worker_chunk(chunk: Work, names: list[str], sig: str) -> ChunkResult:
    return score_chunk(chunk, _WORKER["metrics"], names, sig, _WORKER["ref_caches"])


def score_in_processes(
    chunks: list[Work], procs: int, preset: str | None, names: list[str], ctx: MetricContext, sig: str
) -> Iterator[ChunkResult]:
    """Yield each chunk's result as the processes finish them (in order)."""
    from concurrent.futures import ProcessPoolExecutor

    from ipvgkit.procs import pool_context, spawnable_main

    with ProcessPoolExecutor(
        max_workers=procs,
        mp_context=pool_context(),
        initializer=_worker_init,
        initargs=(preset, names, ctx),
    ) as pool:
        with spawnable_main():
            futures = [pool.submit(_worker_chunk, c, names, sig) for c in chunks]
        for fut in futures:
            yield fut.result()


def score_in_line(
    chunks: list[Work], metrics: list[Metric], names: list[str], ctx: MetricContext, sig: str
) -> Iterator[ChunkResult]:
    """Load the metrics here, then yield each chunk's result (reference caches shared across chunks)."""
    load: dict[str, float] = {}
    for m in metrics:
        t0 = time.perf_counter()
        m.load(ctx)
        load[f"load:{m.name}"] = time.perf_counter() - t0
    ref_caches: dict = {}
    for i, chunk in enumerate(chunks):
        res = score_chunk(chunk, metrics, names, sig, ref_caches)
        if i == 0:
            res.timings.update(load)
        yield res
