"""Our text-to-video denoising loop on the components of a diffusers ``WanPipeline``.

It is diffusers' ``WanPipeline.__call__`` (Wan 2.1 and 2.2: ``transformer_2`` / ``boundary_ratio`` and
``expand_timesteps``) with two additions:

* reference latents (``reference-concat``): ``n`` clean latent frames are prepended to the noisy video
  latents in every transformer call. Only the video part is stepped by the scheduler, so the reference
  frames stay exactly clean at every step; their timestep is 0 when the model takes per-token timesteps
  (Wan 2.2 ``expand_timesteps``), else the step's timestep. They are dropped before VAE decoding.
* a prepared conditioning context (the timeline context of :mod:`ipvgkit.models.timeline_attn`) instead of
  a prompt string.

With no reference and a plain prompt it gives the same frames as ``WanPipeline.__call__`` (tested).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass
class LoopInputs:
    """What one generation needs. ``prompt_embeds``/``negative_embeds``: ``(1, L, D)``, in the
    transformer's dtype, on the execution device."""

    prompt_embeds: torch.Tensor
    negative_embeds: torch.Tensor | None
    height: int
    width: int
    num_frames: int
    steps: int
    guidance: float
    generator: torch.Generator
    ref_latents: torch.Tensor | None = None  # (1, C, n_ref, h, w), normalised


def _check_inputs(pipe: Any, inp: LoopInputs) -> None:
    multiple = pipe.vae_scale_factor_spatial * pipe.transformer.config.patch_size[1]
    if inp.height % multiple or inp.width % multiple:
        raise ValueError(f"height and width must be multiples of {multiple}, got {inp.height}x{inp.width}")
    if (inp.num_frames - 1) % pipe.vae_scale_factor_temporal:
        raise ValueError(f"num_frames must be 4k+1, got {inp.num_frames}")
    if inp.steps < 1:
        raise ValueError(f"steps must be >= 1, got {inp.steps}")


def _timestep(pipe: Any, t: torch.Tensor, latents: torch.Tensor, n_ref: int) -> torch.Tensor:
    """Scalar timestep per batch item, or per token (0 on reference frames) for expand_timesteps models."""
    if not pipe.config.expand_timesteps:
        return t.expand(latents.shape[0])
    p_t, p_h, p_w = pipe.transformer.config.patch_size
    _, _, n_f, h, w = latents.shape
    per_frame = torch.full((n_f // p_t,), float(t), device=latents.device)
    per_frame[: n_ref // p_t] = 0.0
    per_token = per_frame.repeat_interleave((h // p_h) * (w // p_w))
    return per_token.unsqueeze(0).expand(latents.shape[0], -1)


def model_prediction(
    pipe: Any,
    model: Any,
    latents: torch.Tensor,
    t: torch.Tensor,
    embeds: torch.Tensor,
    ref: torch.Tensor | None = None,
    context: str = "cond",
    cache_kwargs: dict | None = None,
) -> torch.Tensor:
    """One transformer call: the model's prediction for the video latents ``(B, C, F, h, w)`` (float32) at
    timestep ``t`` given the text context ``embeds`` and, for ``reference-concat``, the clean reference
    latents ``ref`` prepended along the frames (their part of the output is dropped). The timeline
    processors, when installed (``TimelineControl``), act on the call whose ``embeds`` is the timeline
    context. ``context`` / ``cache_kwargs`` name the call for diffusers' cache hooks. Used by
    :func:`run_t2v` and meant for a training step (no ``no_grad`` here)."""
    full = latents if ref is None else torch.cat([ref, latents], dim=2)
    n_ref = 0 if ref is None else ref.shape[2]
    timestep = _timestep(pipe, t, full, n_ref)
    with model.cache_context(context, **(cache_kwargs or {})):
        out = model(
            hidden_states=full.to(model.dtype),
            timestep=timestep,
            encoder_hidden_states=embeds,
            return_dict=False,
        )[0]
    return out[:, :, n_ref:]


@torch.no_grad()
def run_t2v(pipe: Any, inp: LoopInputs) -> np.ndarray:
    """Generate one video; returns float frames ``(F, H, W, 3)`` in [0, 1]."""
    # 1. Check inputs
    _check_inputs(pipe, inp)
    device = pipe._execution_device
    transformer = pipe.transformer if pipe.transformer is not None else pipe.transformer_2
    transformer_dtype = transformer.dtype
    do_cfg = inp.guidance > 1.0 and inp.negative_embeds is not None
    pipe._guidance_scale = inp.guidance
    pipe._attention_kwargs = None
    pipe._interrupt = False

    # 2. Encode prompt: done by the caller (plain or timeline context); cast to the transformer's dtype
    prompt_embeds = inp.prompt_embeds
    if prompt_embeds.dtype != transformer_dtype:
        prompt_embeds = prompt_embeds.to(transformer_dtype)
    negative_embeds = inp.negative_embeds.to(transformer_dtype) if do_cfg else None

    # 3. Prepare timesteps, latents and reference latents
    pipe.scheduler.set_timesteps(inp.steps, device=device)
    timesteps = pipe.scheduler.timesteps
    latents = pipe.prepare_latents(
        1, transformer.config.in_channels, inp.height, inp.width, inp.num_frames, torch.float32, device,
        inp.generator, None,
    )  # fmt: skip
    ref = inp.ref_latents.to(device=device, dtype=torch.float32) if inp.ref_latents is not None else None

    # 4. Denoise (only the video part is stepped; the reference frames are re-inserted clean every step)
    pipe.scheduler.set_begin_index(0)
    boundary = None
    if pipe.config.boundary_ratio is not None:
        boundary = pipe.config.boundary_ratio * pipe.scheduler.config.num_train_timesteps
    for i, t in enumerate(timesteps):
        pipe._current_timestep = t
        model = pipe.transformer if boundary is None or t >= boundary else pipe.transformer_2
        cache_kwargs = {
            "step_index": i,
            "sigma": float(pipe.scheduler.sigmas[i]),
            "num_inference_steps": len(timesteps),
        }
        noise_pred = model_prediction(pipe, model, latents, t, prompt_embeds, ref, "cond", cache_kwargs)
        if do_cfg:
            noise_uncond = model_prediction(
                pipe, model, latents, t, negative_embeds, ref, "uncond", cache_kwargs
            )
            noise_pred = noise_uncond + inp.guidance * (noise_pred - noise_uncond)
        latents = pipe.scheduler.step(noise_pred, t, latents, return_dict=False)[0]
    pipe._current_timestep = None

    # 5. Decode (reference frames are not part of `latents`)
    from diffusers.utils.torch_utils import get_module_execution_device

    vae = pipe.vae
    vae_device = get_module_execution_device(vae)
    latents = latents.to(vae_device, dtype=vae.dtype)
    mean = torch.tensor(vae.config.latents_mean).view(1, vae.config.z_dim, 1, 1, 1).to(latents)
    inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(1, vae.config.z_dim, 1, 1, 1).to(latents)
    video = vae.decode(latents / inv_std + mean, return_dict=False)[0]
    frames = pipe.video_processor.postprocess_video(video, output_type="np")[0]
    pipe.maybe_free_model_hooks()
    return frames
