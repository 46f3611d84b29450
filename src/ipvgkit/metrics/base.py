"""The metric interface (contract B): results, load context, the per-video sample, the ``Metric`` base class.

A :class:`VideoSample` is built by the scorer once per video and shared by every chosen metric: its
frames are decoded ONCE (the union of all metrics' :meth:`Metric.frame_indices`), its reference images
are loaded once, and ``cache`` lets metrics share intermediate results (face detections, optical flow).

Cache keys are tuples whose first item names the kind of entry. Entries whose kind starts with ``ref_``
(e.g. ``("ref_faces", backend)``, ``("ref_feature", ...)``) must depend only on the case's reference
images: the scorer hands them on to the next video with the same reference images (five prompts of one
identity share one reference), so references are detected and embedded once per run.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

if TYPE_CHECKING:
    from ipvgkit.data.cases import Case
    from ipvgkit.media import VideoInfo
    from ipvgkit.weights import ModelFile


@dataclass
class MetricResult:
    """One metric's value for one video.

    ``value`` is None when it could not be computed for this video (``error`` says why): never a silent 0.
    ``extra`` holds details such as ``{"frames_no_face": 3, "frames_scored": 13}``.
    """

    value: float | None
    extra: dict = field(default_factory=dict)
    error: str | None = None

    @classmethod
    def not_applicable(cls, reason: str, **extra: Any) -> MetricResult:
        """A metric that does not apply to this case (e.g. no timeline): no value, not a failure."""
        return cls(value=None, extra={"not_applicable": True, **extra}, error=reason)

    @property
    def is_failure(self) -> bool:
        """True when the value is missing for a reason other than "does not apply"."""
        return self.value is None and not self.extra.get("not_applicable", False)

    def to_dict(self) -> dict:
        return {"value": self.value, "extra": self.extra, "error": self.error}


@dataclass
class MetricContext:
    """What :meth:`Metric.load` gets: where the weights are, the device, the batch size, options."""

    models_dir: Path | None = None
    device: str = "cpu"
    batch_size: int = 16
    options: dict = field(default_factory=dict)  # e.g. {"bgr_quirk": True}


def is_ref_key(key: object) -> bool:
    """True for cache keys that depend only on the reference images (first item starts with ``ref_``)."""
    return isinstance(key, tuple) and bool(key) and isinstance(key[0], str) and key[0].startswith("ref_")


class SampleCache(MutableMapping):
    """A video's scratch dict whose ``ref_*`` entries live in a store shared by every video with the same
    reference images (``shared``); all other entries belong to this video alone."""

    def __init__(self, shared: dict | None = None):
        self.own: dict = {}
        self.shared: dict = {} if shared is None else shared

    def _store(self, key: object) -> dict:
        return self.shared if is_ref_key(key) else self.own

    def __getitem__(self, key):
        return self._store(key)[key]

    def __setitem__(self, key, value) -> None:
        self._store(key)[key] = value

    def __delitem__(self, key) -> None:
        del self._store(key)[key]

    def __contains__(self, key) -> bool:
        return key in self._store(key)

    def __iter__(self):
        yield from self.own
        yield from self.shared

    def __len__(self) -> int:
        return len(self.own) + len(self.shared)

    def clear(self) -> None:
        """Forget this video's own entries (the shared reference entries stay for other videos)."""
        self.own.clear()


class VideoSample:
    """One video as all metrics see it; built once per video by the scorer.

    ``needed`` is the union of the frame indices of all chosen metrics: the first :meth:`frames` call
    decodes exactly those (one sequential pass through the file); later calls are served from memory.
    An index outside ``needed`` is decoded on demand (and counted in ``decode_passes``).
    """

    def __init__(
        self,
        case: Case,
        video_path: Path,
        info: VideoInfo,
        needed: Iterable[int] | None = None,
        preloaded: dict[int, np.ndarray] | None = None,
        ref_cache: dict | None = None,
    ):
        self.case = case
        self.video_path = Path(video_path)
        self.info = info
        self.needed: set[int] = set(int(i) for i in needed) if needed is not None else set()
        self.cache = SampleCache(ref_cache)
        self.decode_passes = 0
        self._frames: dict[int, np.ndarray] = dict(preloaded or {})

    @property
    def n_frames(self) -> int:
        return int(self.info.n_frames)

    def _decode(self, indices: set[int]) -> None:
        from ipvgkit.media import read_frames

        order = sorted(indices)
        if not order:
            return
        arr = read_frames(self.video_path, order)
        self.decode_passes += 1
        for i, f in zip(order, arr, strict=True):
            self._frames[i] = f

    def frames(self, indices: Sequence[int]) -> np.ndarray:
        """RGB uint8 ``(N, H, W, 3)`` frames at ``indices`` (in that order, repeats allowed)."""
        want = [int(i) for i in indices]
        missing = {i for i in want if i not in self._frames}
        if missing:
            todo = missing | {i for i in self.needed if i not in self._frames}
            self._decode(todo)
        if not want:
            return np.zeros((0, int(self.info.height), int(self.info.width), 3), np.uint8)
        return np.stack([self._frames[i] for i in want])

    def ref_images(self) -> list[np.ndarray]:
        """The case's reference images as RGB uint8 arrays (loaded once, shared like ``ref_*`` entries),
        with their pixels as stored: the 2025 reference code reads them with
        ``Image.open(path).convert("RGB")``, which ignores an EXIF rotation (generation applies it; the
        summary warns about such images, :func:`exif_rotated`)."""
        key = ("ref_images",)
        if key not in self.cache:
            from PIL import Image

            from ipvgkit.errors import InputError

            refs = []
            for p in self.case.ref_images:
                try:
                    with Image.open(p) as im:
                        refs.append(np.asarray(im.convert("RGB")))
                except (OSError, ValueError) as e:
                    raise InputError(f"reference image {p}: cannot read ({e})") from None
            self.cache[key] = refs
        return self.cache[key]

    def release(self) -> None:
        """Drop decoded frames and this video's cache entries (called by the scorer when the video is done)."""
        self._frames.clear()
        self.cache.clear()


def exif_rotated(path: Any) -> bool:
    """True when the image file carries an EXIF orientation other than "as stored" (1)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.getexif().get(0x0112, 1) not in (0, 1)  # 0x0112: the Orientation tag
    except (OSError, ValueError):
        return False


# How a metric's per-video values become its run value (declared on the metric class):
# "video_mean": the mean over videos with a value; "frame_weighted": sum of value x weight / sum of weights,
# the weight being ``extra[run_weight_key]`` (VBench's subject consistency: frames compared per video).
RunAggregation = Literal["video_mean", "frame_weighted"]
RUN_AGGREGATIONS: tuple[str, ...] = ("video_mean", "frame_weighted")


class Metric(ABC):
    """A per-video metric. Subclasses set ``name``/``family`` and register with ``@register``.

    Construction must be cheap (no model loading, no torch import): :meth:`load` loads models once,
    after the scorer has checked that every file of :meth:`model_files` exists.
    """

    name: ClassVar[str]
    family: ClassVar[str]
    higher_is_better: ClassVar[bool] = True
    # True when scoring video chunks in several CPU processes pays off for this metric: it runs no
    # torch/onnxruntime model (those use every core already and would be loaded once per process).
    process_parallel: ClassVar[bool] = False
    description: ClassVar[str] = ""
    run_aggregation: ClassVar[RunAggregation] = "video_mean"
    run_weight_key: ClassVar[str] = ""  # the ``extra`` key with a video's weight (frame_weighted)
    # ``extra`` keys whose distinct values over the run are listed in the summary (e.g. the flow that ran)
    recorded_keys: ClassVar[tuple[str, ...]] = ()

    def model_files(self) -> list[ModelFile]:
        """The model files this metric needs (registered in ``ipvgkit.weights``); may be empty."""
        return []

    @abstractmethod
    def frame_indices(self, n_frames: int) -> list[int]:
        """The frame indices this metric reads from a video of ``n_frames`` frames (SPEC §4 sampling)."""

    def frame_indices_for(self, n_frames: int, fps: float) -> list[int]:
        """The frames read from a video with ``n_frames`` frames at ``fps`` (default: ignores fps)."""
        return self.frame_indices(n_frames)

    def frames_for(self, case: Case, n_frames: int, fps: float) -> list[int]:
        """The frames read for ``case``'s video (default: ignores the case). The scorer decodes the union."""
        return self.frame_indices_for(n_frames, fps)

    def load(self, ctx: MetricContext) -> None:  # noqa: B027 - optional hook, nothing to load by default
        """Load models once (raises MissingWeightsError when a file is missing)."""

    @abstractmethod
    def compute(self, sample: VideoSample) -> MetricResult:
        """The metric's value for one video."""

    def compute_batch(self, samples: list[VideoSample]) -> list[MetricResult]:
        """Values for several videos; the default loops over :meth:`compute`. Override to batch model calls."""
        return [self.compute(s) for s in samples]

    def finalize(self, results: list[MetricResult]) -> dict:
        """Run-level values computed from all per-video results (e.g. a distributional FID); default none.

        Returns a mapping such as ``{"value": 12.3, "n": 160}``; an empty dict means "no run-level value".
        """
        return {}

    def options(self) -> dict:
        """The settings that change this metric's numbers (part of the resume signature)."""
        return {}

    def resolved_options(self, models_dir: Any) -> dict:
        """:meth:`options` with every ``auto`` choice replaced by what it resolves to on this machine
        (what the resume signature holds: installing torchvision must not reuse Farneback rows)."""
        return self.options()

    def run_value(self, results: list[MetricResult]) -> float | None:
        """The run value of the per-video ``results`` by :attr:`run_aggregation` (None: no video has one)."""
        got = [r for r in results if r.value is not None]
        if not got:
            return None
        if self.run_aggregation == "video_mean":
            return sum(float(r.value) for r in got) / len(got)
        weights = [float(r.extra.get(self.run_weight_key, 0)) for r in got]
        if sum(weights) <= 0:
            return None
        return sum(float(r.value) * w for r, w in zip(got, weights, strict=True)) / sum(weights)

    def run_summary(self, results: list[MetricResult]) -> dict:
        """What the run summary says about this metric beyond its mean: the run value, the rule that made
        it, and the distinct values of :attr:`recorded_keys` (a substitution is never silent)."""
        out: dict[str, Any] = {"run_value": self.run_value(results), "aggregation": self.run_aggregation}
        recorded = {}
        for key in self.recorded_keys:
            seen = sorted({str(r.extra[key]) for r in results if r.extra.get(key) is not None})
            if seen:
                recorded[key] = seen
        if recorded:
            out["recorded"] = recorded
        return out

    def __repr__(self) -> str:
        return f"<metric {self.name}>"
