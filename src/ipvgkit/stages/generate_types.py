"""The data of ``ipvg generate``: its config, one result per case, and the run's report."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from ipvgkit.data.timeline import UnitsChoice
from ipvgkit.devices import check_device_name
from ipvgkit.distributed import Shard, parse_shard
from ipvgkit.errors import CheckFailed, UsageError
from ipvgkit.models import frames as frame_math
from ipvgkit.models.base import ModelOptions, TimelineMode, choices

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


class TimelineFit(StrEnum):
    """What to do with a timeline whose last event ends after the video (``--timeline-fit``)."""

    error = "error"  # the case fails (its timeline does not fit the video)
    scale = "scale"  # the events are mapped proportionally onto the video (said once per run)
    extend = "extend"  # the case gets the smallest 4k+1 frame count that covers its last event


@dataclass
class GenerateConfig:
    """Everything ``ipvg generate`` needs; saved as ``generate.yaml`` in the output folder.

    ``track`` None means every case of the test set. ``shard`` is ``"K/N"`` (1-based K) or None.
    ``seed`` is the base seed: case ``c`` uses :func:`derive_seed` ``(seed, c.case_id)``.
    ``max_frames`` caps ``timeline_fit: extend`` (None: no cap). ``context_parallel`` N > 1 runs every
    video on a group of N ranks (:mod:`ipvgkit.stages.generate_cp`).
    """

    cases: Path | None = None
    out: Path | None = None
    track: int | None = None
    model_options: ModelOptions = field(default_factory=ModelOptions)
    timeline_mode: TimelineMode = TimelineMode.masked
    timeline_units: UnitsChoice = UnitsChoice.auto
    timeline_fit: TimelineFit = TimelineFit.scale
    max_frames: int | None = None
    steps: int = 50
    guidance: float = 5.0
    frames: int = 81
    height: int = 480
    width: int = 832
    fps: float = 16.0
    seed: int = 0
    negative_prompt: str | None = None
    shard: str | None = None
    context_parallel: int = 1  # ranks per video (ipvgkit.stages.generate_cp); 1: one video per rank
    overwrite: bool = False
    crf: int = 18
    preset: str = "medium"  # x264 preset: faster presets encode faster into larger files of like quality
    background_encode: bool = True  # encode video i while video i+1 generates
    claim_poll_seconds: float = 2.0  # how often a run waiting for other processes' cases looks again

    def __post_init__(self) -> None:
        for name, enum in (
            ("timeline_mode", TimelineMode),
            ("timeline_units", UnitsChoice),
            ("timeline_fit", TimelineFit),
        ):
            if getattr(self, name) not in tuple(enum):
                raise UsageError(f"{name} must be one of {choices(enum)}, got {getattr(self, name)!r}")
            setattr(self, name, enum(getattr(self, name)))
        problems = self.problems()
        if problems:
            raise UsageError("; ".join(problems))
        if self.shard is not None:
            parse_shard(self.shard)
        check_device_name(self.model_options.device)

    def problems(self) -> list[str]:
        """Request-level problems, known before any model is loaded (each is a usage error)."""
        out = []
        if self.track not in (None, 1, 2):
            out.append(f"track must be 1 or 2, got {self.track!r}")
        for name in ("steps", "frames", "height", "width"):
            if int(getattr(self, name)) < 1:
                out.append(f"{name} must be at least 1, got {getattr(self, name)!r}")
        if self.frames >= 1 and not frame_math.is_valid_frame_count(self.frames):
            near = frame_math.nearest_valid_frame_count(self.frames)
            out.append(f"frames must be of the form 4k+1 (e.g. {near}), got {self.frames}")
        for name in ("height", "width"):
            value = int(getattr(self, name))
            if value >= 1 and value % frame_math.SIZE_MULTIPLE:
                out.append(f"{name} must be a multiple of {frame_math.SIZE_MULTIPLE}, got {value}")
        if self.max_frames is not None and not frame_math.is_valid_frame_count(self.max_frames):
            out.append(f"max_frames must be of the form 4k+1, got {self.max_frames}")
        if int(self.context_parallel) < 1:
            out.append(f"context_parallel must be at least 1, got {self.context_parallel!r}")
        if self.fps <= 0:
            out.append(f"fps must be positive, got {self.fps!r}")
        if not 0 <= self.crf <= 51:
            out.append(f"crf must be between 0 and 51, got {self.crf!r}")
        if self.preset not in X264_PRESETS:
            out.append(f"preset must be one of {', '.join(X264_PRESETS)}, got {self.preset!r}")
        return out


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
    notes: list[str] = field(default_factory=list)  # what was changed or warned about for this case

    def to_record(self) -> dict[str, Any]:
        rec = dataclasses.asdict(self)
        rec["time"] = datetime.now(UTC).isoformat(timespec="seconds")
        return rec


DONE_ELSEWHERE = "done by another process"


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
    identity: str | None = None  # the identity mode(s) the generated cases used
    notes: list[str] = field(default_factory=list)  # run-level notes (timeline fitting, ...)

    def by_status(self, status: Status) -> list[CaseResult]:
        return [r for r in self.results if r.status == status]

    @property
    def ok(self) -> bool:
        return not self.by_status("failed")

    @property
    def done_elsewhere(self) -> list[CaseResult]:
        """Cases another process generated while this run waited for them."""
        return [r for r in self.by_status("skipped") if (r.error or "").startswith(DONE_ELSEWHERE)]

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
            "identity": self.identity,
            "summary": self.summary_rows(),
            "done_elsewhere": len(self.done_elsewhere),
            "notes": list(self.notes),
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
