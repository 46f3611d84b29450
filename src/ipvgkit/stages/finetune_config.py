"""The config of ``ipvg finetune`` (dataclasses; YAML + ``--set`` via :mod:`ipvgkit.config`).

Keys are documented in docs/finetune.md. Every choice is declared once here (Literal + tuple); the CLI
and error messages are derived from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ipvgkit.models.quantize import QUANTIZES, Quantize  # noqa: F401 (re-exported: the config's choices)
from ipvgkit.models.training import DEFAULT_LORA_TARGETS, FlowMatchConfig
from ipvgkit.stages.finetune_val import ValidationSettings

# the identity method the LoRA learns (the name ``ipvg generate --identity`` runs it with)
Method = Literal["reference-concat", "face-adapter", "none"]
METHODS = ("reference-concat", "face-adapter", "none")
MixedPrecision = Literal["no", "bf16", "fp16"]
MIXED_PRECISIONS = ("no", "bf16", "fp16")
Optimizer = Literal["auto", "adamw", "adamw8bit"]
OPTIMIZERS = ("auto", "adamw", "adamw8bit")
LrSchedule = Literal["constant", "constant_with_warmup", "linear", "cosine"]
LR_SCHEDULES = ("constant", "constant_with_warmup", "linear", "cosine")
DECAYING = ("linear", "cosine")  # schedules whose lr depends on the planned number of steps
Export = Literal["comfy"]
EXPORTS = ("comfy",)
# how the frozen base weights of the transformer are stored (docs/finetune.md, memory levers):
# Quantize / QUANTIZES are declared beside the code that applies them (ipvgkit.models.quantize)

# keys that may change between a run and its resume (everything else must be equal)
RESUMABLE_CHANGES = (
    "max_steps",
    "checkpoint_every",
    "keep_checkpoints",
    "resume",
    "export",
    "overwrite",
    "models_dir",
    "validation",
    "memory.block_swap",  # where the frozen weights rest does not change a single number
)


@dataclass
class LoraSettings:
    """``rank``/``alpha`` (the LoRA update is scaled by alpha / rank); ``targets``: linear layer names
    or dotted suffixes (``to_q`` matches every ``...attn1.to_q`` and ``...attn2.to_q``)."""

    rank: int = 16
    alpha: float = 16.0
    targets: list[str] = field(default_factory=lambda: list(DEFAULT_LORA_TARGETS))

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ValueError(f"lora.rank must be >= 1, got {self.rank}")
        if self.alpha <= 0:
            raise ValueError(f"lora.alpha must be > 0, got {self.alpha}")


@dataclass
class FaceAdapterSettings:
    """``method: face-adapter`` (:mod:`ipvgkit.models.face_adapter`): resampler tokens, layers, heads;
    ``lora``: also train the LoRA of ``lora.*`` (off: the adapter alone)."""

    num_tokens: int = 4
    depth: int = 2
    heads: int = 8
    lora: bool = False

    def __post_init__(self) -> None:
        for key in ("num_tokens", "depth", "heads"):
            if getattr(self, key) < 1:
                raise ValueError(f"face_adapter.{key} must be >= 1, got {getattr(self, key)}")


@dataclass
class OptimSettings:
    """AdamW (``auto``: 8-bit AdamW when bitsandbytes and a GPU are there, else AdamW; said in the run
    log and config). ``schedule_steps`` None: the lr schedule spans ``max_steps``."""

    optimizer: Optimizer = "auto"
    lr: float = 1e-4
    weight_decay: float = 1e-2
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    max_grad_norm: float = 1.0
    lr_schedule: LrSchedule = "constant_with_warmup"
    warmup_steps: int = 0
    schedule_steps: int | None = None

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"optim.lr must be > 0, got {self.lr}")
        if self.warmup_steps < 0:
            raise ValueError(f"optim.warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.max_grad_norm <= 0:
            raise ValueError(f"optim.max_grad_norm must be > 0, got {self.max_grad_norm}")


@dataclass
class MemorySettings:
    """Memory levers for big base models (docs/finetune.md): ``block_swap`` N: the frozen weights of
    N transformer blocks rest in CPU memory and visit the GPU for their forward (and the backward's
    recomputation); ``quantize``: the frozen base linear weights stored as int8 / fp8 (torchao)."""

    block_swap: int = 0
    quantize: Quantize = "none"

    def __post_init__(self) -> None:
        if self.block_swap < 0:
            raise ValueError(f"memory.block_swap must be >= 0, got {self.block_swap}")


@dataclass
class FinetuneConfig:
    """One training run (docs/finetune.md)."""

    data: Path | None = None  # a prepare folder (manifest.jsonl)
    out: Path | None = None  # the run folder
    model: str = "tiny-wan"
    models_dir: Path | None = None
    method: Method = "reference-concat"
    frames: int = 81
    height: int = 480
    width: int = 832
    fps: float = 16.0
    num_refs: int = 1
    timeline: bool = True  # train with the manifest's events through the timeline processor
    use_cache: bool = True  # read prepare's cached latents / text embeddings when they fit the run
    max_steps: int = 1000
    batch_size: int = 1
    grad_accum: int = 1
    seed: int = 0
    device: str = "auto"
    mixed_precision: MixedPrecision = "bf16"
    gradient_checkpointing: bool = False
    checkpoint_every: int = 250
    keep_checkpoints: int = 2
    export: list[Export] = field(default_factory=list)
    resume: str | None = None  # None | "auto" | a checkpoint folder
    overwrite: bool = False
    lora: LoraSettings = field(default_factory=LoraSettings)
    face_adapter: FaceAdapterSettings = field(default_factory=FaceAdapterSettings)
    optim: OptimSettings = field(default_factory=OptimSettings)
    validation: ValidationSettings = field(default_factory=ValidationSettings)
    flow: FlowMatchConfig = field(default_factory=FlowMatchConfig)
    memory: MemorySettings = field(default_factory=MemorySettings)

    def __post_init__(self) -> None:
        if self.frames < 1 or (self.frames - 1) % 4:
            raise ValueError(f"frames must be of the form 4k+1 (e.g. 9, 33, 81), got {self.frames}")
        if self.height <= 0 or self.width <= 0 or self.height % 16 or self.width % 16:
            raise ValueError(
                f"height and width must be positive multiples of 16, got {self.width}x{self.height}"
            )
        for key in (
            "max_steps",
            "batch_size",
            "grad_accum",
            "checkpoint_every",
            "keep_checkpoints",
            "num_refs",
        ):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.fps <= 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if self.memory.block_swap and not self.gradient_checkpointing:  # said before any weight loads
            raise ValueError(
                "memory.block_swap needs gradient_checkpointing: true (without it autograd keeps every "
                "block's device weights until the backward pass and nothing is saved)"
            )
