"""The contract between the generation runner and the video model backends.

The runner (``ipvgkit.stages.generate``) holds no model-specific code: it turns each ``Case`` into a
:class:`GenerationRequest`, asks the backend to :meth:`VideoBackend.check` it (before any GPU work),
then to :meth:`VideoBackend.generate` it, and encodes the returned frames with ``ipvgkit.media``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from ipvgkit.data.cases import Event, TimelineUnits


class Identity(StrEnum):
    """How the reference image conditions the video (see :mod:`ipvgkit.models.identity`)."""

    auto = "auto"
    none = "none"
    i2v = "i2v"
    reference_concat = "reference-concat"
    vace = "vace"
    consisid = "consisid"
    face_adapter = "face-adapter"


class TimelineMode(StrEnum):
    """How Track 2 event texts steer the video (see :mod:`ipvgkit.models.timeline_attn`)."""

    masked = "masked"
    soft = "soft"
    prompt = "prompt"


class DType(StrEnum):
    """Precision the model is loaded in (fp32 on CPU whatever is asked)."""

    bf16 = "bf16"
    fp16 = "fp16"
    fp32 = "fp32"


class Offload(StrEnum):
    """CPU offload of the pipeline's components."""

    none = "none"
    model = "model"
    sequential = "sequential"


def choices(enum: type[StrEnum]) -> str:
    """The values of a choice, for messages: ``"masked, soft, prompt"``."""
    return ", ".join(m.value for m in enum)


def values(enum: type[StrEnum]) -> tuple[str, ...]:
    """The values of a choice as a tuple of plain strings."""
    return tuple(m.value for m in enum)


@dataclass
class ModelOptions:
    """How to load a backend. ``model`` is a hub id, a local diffusers folder or ``tiny-wan`` (no default:
    a model is always named)."""

    model: str | None = None
    backend: str = "auto"  # auto | wan | wan-vace | consisid
    identity: Identity = Identity.auto
    lora: list[Path] = field(default_factory=list)  # each PATH[:SCALE][:EXPERTS] (ipvgkit.models.lora)
    adapter: Path | None = None  # a face adapter folder (ipvgkit.models.face_adapter), for face-adapter
    lora_scale: float = 1.0
    dtype: DType = DType.bf16
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    offload: Offload = Offload.none
    vae_tiling: bool | None = None  # None: on at >= 720p, off below (ipvgkit.models.sizes)
    compile: bool = False
    # an ipvgkit.models.caches.Cache value; kept a plain string so that caches.check_cache can say why a
    # known diffusers cache that Wan cannot use (faster-cache, pab, ...) is refused
    cache: str = "none"
    models_dir: Path | None = None
    lora_fuse: bool = False  # merge the weighted LoRAs into the weights after loading (ipvgkit.models.lora)
    flow_shift: float | None = None  # None: per size (Wan 2.1) or the checkpoint's (Wan 2.2); models.sizes
    text_encoder: str = "device"  # device | cpu | offload: ipvgkit.models.prompts.TextEncoderPlacement


@dataclass
class GenerationRequest:
    """One video to generate. Times in ``timeline`` are in ``timeline_units`` (seconds or fraction)."""

    case_id: str
    prompt: str
    ref_images: list[Path]
    num_frames: int = 81
    height: int = 480
    width: int = 832
    fps: float = 16.0
    steps: int = 50
    guidance: float = 5.0
    seed: int = 0
    negative_prompt: str | None = None
    timeline: list[Event] | None = None
    timeline_units: TimelineUnits | None = None
    timeline_mode: TimelineMode = TimelineMode.masked
    class_labels: list[str] | None = None


@runtime_checkable
class VideoBackend(Protocol):
    """What every backend implements."""

    name: str

    def check(self, request: GenerationRequest) -> None:
        """Raise ``CaseError`` (naming ``request.case_id``) if the request cannot be generated
        (frame count not 4k+1, size not a multiple of 16, missing/unreadable reference, bad timeline).
        Cheap: called for every case before any generation starts."""

    def generate(self, request: GenerationRequest) -> np.ndarray:
        """Generate the video: uint8 RGB frames ``(num_frames, height, width, 3)``. Deterministic for a
        given ``request.seed`` on the same device."""

    def describe(self) -> dict:
        """Settings to record in ``generation.jsonl`` / the resolved config (model, dtype, device, ...)."""


# Optional backend methods the runner uses when present: ``load()`` (weights, before the first case),
# ``identity_mode(request) -> str`` (the identity mode a request runs with; cheap, no weights) and
# ``settings_problems(request) -> list[str]`` (problems of the run's settings, independent of the case:
# frames, size, fps, steps; reported once, as a usage error, before any weights are loaded).


def raise_problems(request: GenerationRequest, problems: list[str]) -> None:
    """The shared end of every backend's ``check``: one ``CaseError`` naming the case and all problems."""
    if problems:
        from ipvgkit.errors import CaseError

        raise CaseError(request.case_id, "; ".join(problems))


class BackendWarning(UserWarning):
    """Something a backend changed about one request (e.g. a timeline context cut to 512 tokens). The
    generation runner records each one in the case's ``notes`` and logs it naming the case."""
