"""The ``wan-vace`` backend: diffusers ``WanVACEPipeline`` with the case's reference image(s) as
``reference_images`` (zero-shot subject consistency, Track 1 and Track 2).

VACE letterboxes each reference image into the video size itself and prepends its latent as an extra
frame, dropping it after denoising; the timeline processors account for those leading frames.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ipvgkit.models import identity
from ipvgkit.models.base import GenerationRequest, Identity
from ipvgkit.models.wan import WanBackend, _maybe_timeline


class WanVaceBackend(WanBackend):
    """Wan VACE checkpoints (``WanVACEPipeline``), e.g. ``Wan-AI/Wan2.1-VACE-1.3B-diffusers``."""

    name = "wan-vace"
    pipeline_classes = ("WanVACEPipeline",)

    def _variant(self) -> str:
        return "wan-vace"

    def _generate(self, pipe: Any, request: GenerationRequest) -> np.ndarray:
        import torch

        mode = self.identity_mode(request)
        generator = torch.Generator(device="cpu").manual_seed(int(request.seed))
        refs = [identity.open_image(Path(p)) for p in request.ref_images] if mode == Identity.vace else []
        cond, negative, state = self._contexts(pipe, request, len(refs))
        with _maybe_timeline(pipe, state):
            out = pipe(
                reference_images=refs or None, prompt_embeds=cond, negative_prompt_embeds=negative,
                height=request.height, width=request.width, num_frames=request.num_frames,
                num_inference_steps=request.steps, guidance_scale=request.guidance, generator=generator,
                output_type="np",
            )  # fmt: skip
        return out.frames[0]
