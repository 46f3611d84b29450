"""The contract between the generation runner and the video model backends.

The runner (``ipvgkit.stages.generate``) holds no model-specific code: it turns each ``Case`` into a
:class:`GenerationRequest`, asks the backend to :meth:`VideoBackend.check` it (before any GPU work),
then to :meth:`VideoBackend.generate` it, and encodes the returned frames with ``ipvgkit.media``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from ipvgkit.data.cases import Event

Identity = Literal["auto", "none", "i2v", "reference-concat", "vace", "consisid"]
TimelineMode = Literal["masked", "soft", "prompt"]
DType = Literal["bf16", "fp16", "fp32"]
Offload = Literal["none", "model", "sequential"]


@dataclass
class ModelOptions:
    """How to load a backend. ``model`` is a hub id, a local diffusers folder or ``tiny-wan``."""

    model: str = "tiny-wan"
    backend: str = "auto"  # auto | wan | wan-vace | consisid
    identity: Identity = "auto"
    lora: list[Path] = field(default_factory=list)  # each PATH[:SCALE][:EXPERTS] (ipvgkit.models.lora)
    lora_scale: float = 1.0
    dtype: DType = "bf16"
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    offload: Offload = "none"
    vae_tiling: bool | None = None  # None: on at >= 720p, off below (ipvgkit.models.sizes)
    compile: bool = False
    cache: str = "none"  # a diffusers cache hook: ipvgkit.models.caches.Cache
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
    timeline_units: str | None = None
    timeline_mode: TimelineMode = "masked"
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


def raise_problems(request: GenerationRequest, problems: list[str]) -> None:
    """The shared end of every backend's ``check``: one ``CaseError`` naming the case and all problems."""
    if problems:
        from ipvgkit.errors import CaseError

        raise CaseError(request.case_id, "; ".join(problems))
