"""``ipvg prepare``: a dataset source -> a training manifest, reference crops and face embeddings.

Flow: validate the inputs and the output folder (before any work), list the source's sample specs,
skip those a journal of an earlier run already finished (same settings, same video file), run the
rest through :func:`ipvgkit.stages.prepare_work.process_spec` on an engine (a local process pool or
Ray Data), append every result to the journal as it arrives, and at the end write ``manifest.jsonl``
(sorted by sample id) and ``rejects.jsonl`` atomically. A kill -9 loses at most the samples in flight;
the rerun gives the same manifest as an uninterrupted run. See docs/prepare.md.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from ipvgkit.config import save as save_config
from ipvgkit.data.manifest import (
    MANIFEST_NAME,
    REJECTS_NAME,
    JournalWriter,
    Sample,
    read_journal,
    read_manifest,
)
from ipvgkit.data.sources.base import Reject, SampleSpec, Source, spec_to_dict
from ipvgkit.errors import InputError, UsageError
from ipvgkit.fsutil import atomic_write_text
from ipvgkit.progress import Progress, ensure
from ipvgkit.stages.prepare_engines import ENGINES, Engine, check_engine, run_engine
from ipvgkit.stages.prepare_work import SampleSettings, WorkConfig

SourceName = Literal["vip200k", "reactid"]
SOURCE_NAMES = ("vip200k", "reactid")
JOURNAL_NAME = "journal.jsonl"
RECORD_NAME = "prepare.json"
OUTPUT_DIRS = ("refs", "faces")

__all__ = ["ENGINES", "PrepareConfig", "PrepareReport", "make_source", "run_prepare"]


@dataclass
class PrepareConfig:
    """One prepare run (docs/prepare.md lists every key)."""

    source: SourceName = "vip200k"
    out: Path = Path("prep")
    annotations: Path | None = None  # vip200k: the JSON list
    videos: Path | None = None  # vip200k: folder of <id>.mp4|.mkv|.webm
    root: Path | None = None  # reactid: the tree with Jsons/ and Videos/
    engine: Engine = "local"
    workers: int = 2
    ray_address: str | None = None
    limit: int | None = None
    face_backend: str = "auto"  # auto | none | a name of ipvgkit.faces.BACKENDS
    models_dir: Path | None = None
    overwrite: bool = False
    sample: SampleSettings = field(default_factory=SampleSettings)

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.limit is not None and self.limit < 0:
            raise ValueError(f"limit must be >= 0, got {self.limit}")


@dataclass
class PrepareReport:
    out: Path
    samples: int = 0  # records in the finished manifest
    done_now: int = 0  # samples prepared in this run
    reused: int = 0  # finished samples and rejects of an earlier run kept
    rejects: list[dict[str, str]] = field(default_factory=list)
    face_backend: str = "none"
    face_backend_note: str = ""
    engine: str = "local"
    seconds: float = 0.0
    engine_seconds: float = 0.0

    @property
    def by_reason(self) -> dict[str, int]:
        return dict(sorted(Counter(r["reason"] for r in self.rejects).items()))

    def summary(self) -> dict[str, Any]:
        return {
            "out": str(self.out), "samples": self.samples, "prepared_now": self.done_now,
            "reused": self.reused, "rejected": len(self.rejects), "rejects_by_reason": self.by_reason,
            "face_backend": self.face_backend, "face_backend_note": self.face_backend_note,
            "engine": self.engine, "seconds": round(self.seconds, 3),
        }  # fmt: skip


def make_source(cfg: PrepareConfig) -> Source:
    """The configured source, with its inputs checked (missing arguments are usage errors)."""
    from ipvgkit.data.sources import ReactIdSource, Vip200kSource

    if cfg.source == "vip200k":
        if cfg.annotations is None or cfg.videos is None:
            raise UsageError("prepare vip200k needs --annotations FILE and --videos DIR")
        return Vip200kSource(cfg.annotations, cfg.videos, window_seconds=cfg.sample.window_seconds)
    if cfg.root is None:
        raise UsageError("prepare reactid needs --root DIR")
    return ReactIdSource(cfg.root)


def resolve_face_backend(name: str, models_dir: Path | None) -> tuple[str, str]:
    """(backend used, why): ``auto`` takes the first of buffalo_l, dlib that loads, else none."""
    from ipvgkit.errors import MissingDependencyError, MissingWeightsError
    from ipvgkit.faces import get_backend

    if name == "none":
        return "none", "face embeddings off (face_backend=none)"
    tried = []
    for cand in ("buffalo_l", "dlib") if name == "auto" else (name,):
        try:
            get_backend(cand, models_dir)
            return cand, f"face embeddings with {cand}" + (" (auto)" if name == "auto" else "")
        except (MissingDependencyError, MissingWeightsError, ImportError) as e:
            if name != "auto":
                raise
            tried.append(f"{cand}: {str(e).splitlines()[0][:80]}")
    return "none", "no face backend available, no face embeddings (" + "; ".join(tried) + ")"


def settings_hash(cfg: WorkConfig) -> str:
    data = {"settings": asdict(cfg.settings), "face_backend": cfg.face_backend}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


def video_signature(path: str) -> str:
    try:
        st = Path(path).stat()
    except OSError:
        return "missing"
    return f"{st.st_size}:{st.st_mtime_ns}"


def check_out_folder(out: Path, source: str, overwrite: bool) -> None:
    """An output folder of another source or schema is an error (before any work)."""
    record = out / RECORD_NAME
    if record.is_file():
        try:
            rec = json.loads(record.read_text())
        except json.JSONDecodeError:
            raise InputError(f"{record}: not valid JSON (not a prepare folder?)") from None
        if rec.get("source") != source and not overwrite:
            raise InputError(
                f"{out} holds a {rec.get('source')!r} prepare run, not {source!r} (use another --out)"
            )
    if (out / MANIFEST_NAME).is_file() and not overwrite:
        read_manifest(out, source=source)  # raises on another schema or source


@contextlib.contextmanager
def folder_lock(out: Path) -> Iterator[None]:
    """One prepare run per output folder at a time (an advisory lock, released when the process dies)."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".prepare.lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(
                f"another `ipvg prepare` is writing {out}; wait for it or use another --out"
            ) from None
        yield


def _clear(out: Path) -> None:
    for name in (JOURNAL_NAME, MANIFEST_NAME, REJECTS_NAME, RECORD_NAME, "prepare.yaml"):
        (out / name).unlink(missing_ok=True)
    for d in OUTPUT_DIRS:
        shutil.rmtree(out / d, ignore_errors=True)


def _list_items(source: Source, limit: int | None) -> tuple[list[SampleSpec], list[Reject]]:
    specs: list[SampleSpec] = []
    rejects: list[Reject] = []
    seen: set[str] = set()
    for item in source.items():
        if limit is not None and len(specs) + len(rejects) >= limit:
            break
        key = item.sample_id if isinstance(item, SampleSpec) else item.sample
        if key in seen:
            continue  # the same segment listed twice: one sample
        seen.add(key)
        (specs if isinstance(item, SampleSpec) else rejects).append(item)
    return specs, rejects


def _finished(out: Path, shash: str, specs: list[SampleSpec]) -> dict[str, dict]:
    """Journal results of earlier runs still valid now: same settings and same video file."""
    want = {s.sample_id: video_signature(s.video) for s in specs}
    done: dict[str, dict] = {}
    for rec in read_journal(out / JOURNAL_NAME):
        sid = rec.get("sample_id")
        if sid in want and rec.get("settings") == shash and rec.get("video_sig") == want[sid]:
            done[sid] = rec
    return done


def run_prepare(cfg: PrepareConfig, progress: Progress | None = None) -> PrepareReport:
    """Prepare ``cfg.source`` into ``cfg.out`` (see the module docstring)."""
    progress = ensure(progress)
    t0 = time.perf_counter()
    source = make_source(cfg)
    source.load()
    check_engine(cfg.engine)
    out = Path(cfg.out)
    check_out_folder(out, cfg.source, cfg.overwrite)
    backend, note = resolve_face_backend(cfg.face_backend, cfg.models_dir)
    progress.log(note)
    with folder_lock(out):
        if cfg.overwrite:
            _clear(out)
        wcfg = WorkConfig(str(out), cfg.sample, backend, str(cfg.models_dir) if cfg.models_dir else None)
        report = PrepareReport(out=out, face_backend=backend, face_backend_note=note, engine=cfg.engine)
        _write_record(cfg, source, report, "running")
        save_config(cfg, out / "prepare.yaml")
        specs, rejects = _list_items(source, cfg.limit)
        shash = settings_hash(wcfg)
        done = _finished(out, shash, specs)
        report.reused = len(done)
        todo = [s for s in specs if s.sample_id not in done]
        progress.phase("prepare", total=len(todo))
        t1 = time.perf_counter()
        with JournalWriter(out / JOURNAL_NAME) as journal:
            sigs = {s.sample_id: video_signature(s.video) for s in todo}
            for n, res in enumerate(run_engine(cfg.engine, [spec_to_dict(s) for s in todo], wcfg, cfg), 1):
                sid = res["record"]["sample_id"] if res["kind"] == "sample" else res["sample"]
                rec = {**res, "sample_id": sid, "settings": shash, "video_sig": sigs[sid]}
                journal.append(rec)
                done[sid] = rec
                report.done_now += 1
                rate = n / max(time.perf_counter() - t1, 1e-9)
                progress.status(f"prepare {cfg.source}: {rate:.2f} samples/s")
                progress.advance()
        report.engine_seconds = time.perf_counter() - t1
        _finish(out, specs, rejects, done, report)
        report.seconds = time.perf_counter() - t0
        _write_record(cfg, source, report, "finished")
    return report


def _cached(out: Path) -> dict[str, dict[str, str]]:
    """``cache`` fields of the finished manifest (written by ``prepare cache``) whose files exist."""
    if not (out / MANIFEST_NAME).is_file():
        return {}
    return {
        s.sample_id: {k: v for k, v in s.cache.items() if (out / v).is_file()}
        for s in read_manifest(out)
        if s.cache
    }


def _finish(
    out: Path, specs: list[SampleSpec], rejects: list[Reject], done: dict, report: PrepareReport
) -> None:
    samples, rej = [], [r.to_dict() for r in rejects]
    cached = _cached(out)
    for s in specs:
        rec = done[s.sample_id]
        if rec["kind"] == "sample":
            sample = Sample.from_dict(rec["record"], where=str(out / JOURNAL_NAME))
            sample.cache = cached.get(s.sample_id, {})
            samples.append(sample)
        else:
            rej.append({k: rec[k] for k in ("video_id", "sample", "segment", "reason", "detail")})
    from ipvgkit.data.manifest import write_manifest

    write_manifest(out, samples)
    rej.sort(key=lambda r: (r["video_id"], r["sample"]))
    atomic_write_text(out / REJECTS_NAME, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rej))
    report.samples, report.rejects = len(samples), rej


def _write_record(cfg: PrepareConfig, source: Source, report: PrepareReport, state: str) -> None:
    from ipvgkit.config import to_dict

    record = {
        "schema": 1, "source": cfg.source, "state": state, "inputs": source.describe(),
        "config": to_dict(cfg), **report.summary(),
    }  # fmt: skip
    atomic_write_text(Path(cfg.out) / RECORD_NAME, json.dumps(record, indent=2, sort_keys=True) + "\n")
