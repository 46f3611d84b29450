"""The training protocol of the model layer, and the flow-matching step every flow backend shares.

The trainer (:mod:`ipvgkit.stages.finetune`) holds no model code. It asks a :class:`TrainingModel` to

1. ``load()`` its components (frozen base weights, on the training device),
2. ``encode_text`` / ``encode_video`` / ``encode_reference`` (or read them from prepare's cache),
3. ``predict(latents, noise, sigmas, conditions) -> (prediction, target)``: one denoiser call on the
   noised latents with the same conditioning (reference frames, timeline processor) as generation,
4. hold the trainable adapter (LoRA, :mod:`ipvgkit.models.lora_train`).

Flow matching (rectified flow, as Wan is trained): for clean latents ``x0``, noise ``e`` and a noise
level ``sigma`` in [0, 1], the model sees ``x_sigma = (1 - sigma) x0 + sigma e`` at timestep
``1000 sigma`` and is trained to predict the velocity ``e - x0`` (what Wan's schedulers step with).
``sigma`` is drawn per sample by :func:`sample_sigmas`:

* ``uniform``: ``u ~ U(0, 1)``;
* ``logit-normal``: ``u = sigmoid(n)``, ``n ~ N(logit_mean, logit_std)`` (SD3's choice);
* ``shifted``: ``u ~ U(0, 1)`` then Wan's scheduler shift ``sigma = s u / (1 + (s - 1) u)`` with
  ``s = flow_shift`` (more weight on high noise at high resolution).

Loss weighting (:func:`loss_weights`, as diffusers' ``compute_loss_weighting_for_sd3``): ``none`` (1),
``sigma-sqrt`` (``sigma^-2``), ``cosmap`` (``2 / (pi (1 - 2 sigma + 2 sigma^2))``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:  # torch is imported where it is used: the CLI's --help must not import it
    import torch

TimestepSampling = Literal["uniform", "logit-normal", "shifted"]
TIMESTEP_SAMPLINGS = ("uniform", "logit-normal", "shifted")
LossWeighting = Literal["none", "sigma-sqrt", "cosmap"]
LOSS_WEIGHTINGS = ("none", "sigma-sqrt", "cosmap")
NUM_TRAIN_TIMESTEPS = 1000
DEFAULT_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")  # every attention's q/k/v/out of each block
SIGMA_MIN = 1e-3  # sigma-sqrt weighting divides by sigma^2: keep sigma away from 0


@dataclass
class FlowMatchConfig:
    """How noise levels are drawn and weighted (module docstring). ``flow_shift`` None: the base
    model's scheduler ``flow_shift`` (the value is written to the run's config when resolved)."""

    timestep_sampling: TimestepSampling = "shifted"
    flow_shift: float | None = None
    logit_mean: float = 0.0
    logit_std: float = 1.0
    loss_weighting: LossWeighting = "none"

    def __post_init__(self) -> None:
        if self.timestep_sampling not in TIMESTEP_SAMPLINGS:
            raise ValueError(
                f"timestep_sampling {self.timestep_sampling!r}: choose one of {', '.join(TIMESTEP_SAMPLINGS)}"
            )
        if self.loss_weighting not in LOSS_WEIGHTINGS:
            raise ValueError(
                f"loss_weighting {self.loss_weighting!r}: choose one of {', '.join(LOSS_WEIGHTINGS)}"
            )
        if self.flow_shift is not None and self.flow_shift <= 0:
            raise ValueError(f"flow_shift must be > 0, got {self.flow_shift}")
        if self.logit_std <= 0:
            raise ValueError(f"logit_std must be > 0, got {self.logit_std}")


def shift_sigmas(u: torch.Tensor, shift: float) -> torch.Tensor:
    """Wan's scheduler shift: ``s u / (1 + (s - 1) u)`` (identity for ``s = 1``)."""
    return shift * u / (1 + (shift - 1) * u)


def sample_sigmas(
    cfg: FlowMatchConfig, n: int, generator: torch.Generator, flow_shift: float
) -> torch.Tensor:
    """``n`` noise levels in ``[SIGMA_MIN, 1]`` (float32, CPU), drawn from ``generator``."""
    import torch

    if cfg.timestep_sampling == "logit-normal":
        normal = torch.randn(n, generator=generator)
        u = torch.sigmoid(normal * cfg.logit_std + cfg.logit_mean)
    else:
        u = torch.rand(n, generator=generator)
        if cfg.timestep_sampling == "shifted":
            u = shift_sigmas(u, flow_shift)
    return u.clamp(SIGMA_MIN, 1.0)


def loss_weights(cfg: FlowMatchConfig, sigmas: torch.Tensor) -> torch.Tensor:
    """Per-sample loss weights for ``sigmas`` (module docstring)."""
    import torch

    if cfg.loss_weighting == "sigma-sqrt":
        return (sigmas**-2.0).float()
    if cfg.loss_weighting == "cosmap":
        bot = 1 - 2 * sigmas + 2 * sigmas**2
        return (2 / (math.pi * bot)).float()
    return torch.ones_like(sigmas, dtype=torch.float32)


def noisy_and_target(x0: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor):
    """``x_sigma = (1 - sigma) x0 + sigma e`` and the velocity target ``e - x0`` (sigma per batch item)."""
    s = sigmas.to(device=x0.device, dtype=x0.dtype).view(-1, *([1] * (x0.dim() - 1)))
    return (1 - s) * x0 + s * noise, noise - x0


def flow_loss(
    prediction: torch.Tensor, target: torch.Tensor, sigmas: torch.Tensor, cfg: FlowMatchConfig
) -> torch.Tensor:
    """Weighted MSE: mean over each sample's elements, weighted per sample, mean over the batch."""
    per_sample = ((prediction.float() - target.float()) ** 2).flatten(1).mean(dim=1)
    return (loss_weights(cfg, sigmas).to(per_sample.device) * per_sample).mean()


@dataclass
class Conditions:
    """Everything but the latents that one batch is conditioned on.

    ``prompt_embeds``: ``(B, L, D)`` text context; ``ref_latents``: ``(B, C, n_ref, h, w)`` clean
    reference frames (reference-concat) or None; ``face``: ``(B, E)`` face embeddings (face-adapter)
    or None; ``timeline``: a timeline state of
    :mod:`ipvgkit.models.timeline_attn` (batch size 1) or None.
    """

    prompt_embeds: torch.Tensor
    ref_latents: torch.Tensor | None = None
    timeline: Any = None
    face: torch.Tensor | None = None  # (B, E) face embeddings (face-adapter)


class TrainingModel(Protocol):
    """What a backend implements to be fine-tuned (module docstring)."""

    name: str

    def load(self) -> None:
        """Load the frozen components on the training device."""

    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        """``(B, L, D)`` text context of each prompt, as generation builds it."""

    def encode_video(self, frames: torch.Tensor) -> torch.Tensor:
        """Normalised latents ``(B, C, f, h, w)`` of uint8 RGB frames ``(B, F, H, W, 3)``."""

    def encode_reference(self, images: list[list[Any]], height: int, width: int) -> torch.Tensor:
        """``(B, C, n_ref, h, w)`` clean reference latents of PIL images (fitted to the video size)."""

    def predict(
        self, latents: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor, cond: Conditions
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The denoiser's velocity prediction on the video part and the flow-matching target."""

    def trainable(self) -> torch.nn.Module:
        """The module that carries the adapter (the transformer)."""

    def describe(self) -> dict:
        """Settings to record in the run folder."""
