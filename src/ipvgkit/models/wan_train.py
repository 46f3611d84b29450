"""The training protocol (:mod:`ipvgkit.models.training`) for Wan text-to-video checkpoints.

Components are loaded one by one from the diffusers folder, and only those the run needs: the text
encoder is never loaded when every sample has cached text embeddings, the VAE never when every sample
has cached latents (memory levers, docs/finetune.md). Text contexts are built by the same code as
generation (:func:`ipvgkit.models.timeline_attn.build_context`), reference latents by
:func:`ipvgkit.models.identity.reference_latents`, and the denoiser is called with the reference
latent frames prepended clean (timestep 0 on them for per-token-timestep models) exactly as the
generation loop does, so a LoRA trained here sees at generation time what it saw in training.
"""

from __future__ import annotations

import contextlib
import json
from types import SimpleNamespace
from typing import Any

import torch

from ipvgkit.errors import MissingWeightsError, UsageError
from ipvgkit.models import identity, timeline_attn
from ipvgkit.models.resolve import ResolvedModel
from ipvgkit.models.training import NUM_TRAIN_TIMESTEPS, Conditions, noisy_and_target


class WanTraining:
    """Wan 2.1 / 2.2 text-to-video (``WanPipeline``) as a :class:`~ipvgkit.models.training.TrainingModel`."""

    name = "wan"

    def __init__(self, resolved: ResolvedModel, device: str, weight_dtype: torch.dtype):
        if resolved.pipeline_class != "WanPipeline":
            raise UsageError(
                f"ipvg finetune trains Wan text-to-video checkpoints (WanPipeline); {resolved.name!r} is a "
                f"{resolved.pipeline_class}"
            )
        self.resolved = resolved
        self.device = torch.device(device)
        self.weight_dtype = weight_dtype
        index = resolved.model_index()
        self.expand_timesteps = bool(index.get("expand_timesteps", False))
        if index.get("transformer_2") not in (None, [None, None]):
            raise UsageError(f"{resolved.name!r} has two transformers (Wan 2.2 A14B); finetune trains one")
        self.transformer: Any = None
        self.denoiser: Any = None  # the transformer, or the trainer's distributed wrapper of it
        self.text: Any = None  # namespace(tokenizer, text_encoder)
        self.vae: Any = None
        self.video_processor: Any = None
        self.loaded: list[str] = []
        # the processors of the last prediction stay installed (and switched on) until the next one, so
        # that gradient checkpointing recomputes the blocks in the backward pass with the same processors
        self._held = contextlib.ExitStack()

    # ------------------------------------------------------------------ loading
    def scheduler_flow_shift(self) -> float | None:
        """The base model's scheduler ``flow_shift`` (None when its config has none)."""
        path = self.resolved.folder / "scheduler" / "scheduler_config.json"
        value = json.loads(path.read_text()).get("flow_shift") if path.is_file() else None
        return float(value) if value is not None else None

    def load(self, text: bool = True, vae: bool = True) -> None:
        """Load the transformer (and the text encoder / VAE when asked), frozen, on the device."""
        from diffusers import WanTransformer3DModel

        from ipvgkit.models.runtime import quiet_hf_loading

        quiet_hf_loading()
        folder = self.resolved.folder
        try:
            self.transformer = WanTransformer3DModel.from_pretrained(
                folder, subfolder="transformer", torch_dtype=self.weight_dtype
            )
            self.loaded = ["transformer"]
            if text:
                self._load_text()
            if vae:
                self._load_vae()
        except OSError as exc:
            raise MissingWeightsError(
                f"{self.resolved.name}: {str(exc).splitlines()[0][:200]}", [str(folder)],
                "the model's hub repository (a complete diffusers-format folder)",
            ) from exc  # fmt: skip
        self.transformer.requires_grad_(False).to(self.device)
        self.denoiser = self.transformer

    def _load_text(self) -> None:
        import transformers

        folder = self.resolved.folder
        index = self.resolved.model_index()
        tok_type = getattr(transformers, index.get("tokenizer", [None, "AutoTokenizer"])[1])
        enc_type = getattr(transformers, index.get("text_encoder", [None, "UMT5EncoderModel"])[1])
        tokenizer = tok_type.from_pretrained(folder, subfolder="tokenizer")
        encoder = enc_type.from_pretrained(folder, subfolder="text_encoder", torch_dtype=self.weight_dtype)
        encoder.requires_grad_(False).eval().to(self.device)
        self.text = SimpleNamespace(tokenizer=tokenizer, text_encoder=encoder)
        self.loaded.append("text_encoder")

    def _load_vae(self) -> None:
        from diffusers import AutoencoderKLWan
        from diffusers.video_processor import VideoProcessor

        self.vae = AutoencoderKLWan.from_pretrained(
            self.resolved.folder, subfolder="vae", torch_dtype=torch.float32
        )
        self.vae.requires_grad_(False).eval().to(self.device)
        self.video_processor = VideoProcessor(vae_scale_factor=2 ** len(self.vae.temperal_downsample))
        self.loaded.append("vae")

    def trainable(self) -> torch.nn.Module:
        return self.transformer

    def components(self) -> dict[str, Any]:
        """The loaded diffusers components by pipeline name (the unwrapped transformer, and the text
        encoder, tokenizer and VAE when loaded), for a generation pipeline built around the live model
        (``WanBackend.with_components``: validation during training)."""
        out: dict[str, Any] = {"transformer": self.transformer}
        if self.text is not None:
            out.update(text_encoder=self.text.text_encoder, tokenizer=self.text.tokenizer)
        if self.vae is not None:
            out["vae"] = self.vae
        return out

    def attach_face_adapter(self, embed_dim: int, **settings: Any) -> Any:
        """A new, trainable face adapter as the transformer's submodule ``ipvg_face_adapter`` (so the
        trainer's wrapper, checkpoints and parameter list see it); fp32 whatever the base dtype."""
        from ipvgkit.models.face_adapter import build_adapter

        adapter = build_adapter(self.transformer, embed_dim, base_model=self.resolved.name, **settings)
        self.transformer.add_module("ipvg_face_adapter", adapter.to(self.device).requires_grad_(True))
        return adapter

    @property
    def face_adapter(self) -> Any:
        return getattr(self.transformer, "ipvg_face_adapter", None)

    def enable_gradient_checkpointing(self) -> None:
        self.transformer.enable_gradient_checkpointing()

    # ------------------------------------------------------------------ encoding
    def _need(self, what: str) -> None:
        if (what == "text" and self.text is None) or (what == "vae" and self.vae is None):
            raise RuntimeError(f"the {what} component was not loaded (the run said all inputs were cached)")

    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        self._need("text")
        ctx = [timeline_attn.build_context(self.text, p, [], self.device, self.weight_dtype) for p in prompts]
        return torch.cat([c.embeds for c in ctx])

    @torch.no_grad()
    def timeline_context(self, prompt: str, event_texts: list[str]) -> timeline_attn.TextContext:
        """The global prompt and each event encoded separately (generation's timeline context)."""
        self._need("text")
        return timeline_attn.build_context(self.text, prompt, event_texts, self.device, self.weight_dtype)

    def timeline_state(
        self,
        events: list[Any],
        token_group: torch.Tensor,
        frames: int,
        fps: float,
        height: int,
        width: int,
        n_ref: int,
        mode: str = "masked",
    ) -> timeline_attn.TimelineState:
        """The processor state generation builds for a clip's events (seconds) and its context's token
        groups (:mod:`ipvgkit.models.timeline_attn`); ``n_ref`` leading reference frames see the global
        tokens only."""
        from ipvgkit.data.cases import Event

        evs = [Event(float(e.start), float(e.end), e.text) for e in events]
        weights = timeline_attn.frame_event_weights(evs, "seconds", frames, fps, mode, n_ref)
        bias = timeline_attn.attention_bias(weights, token_group.long().cpu(), mode)
        p_h, p_w = self.transformer.config.patch_size[1:]
        tpf = (height // (8 * p_h)) * (width // (8 * p_w))
        return timeline_attn.TimelineState(bias=bias, tokens_per_frame=tpf)

    def _normalise(self, z: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.vae.config.latents_mean, device=z.device).view(1, -1, 1, 1, 1)
        std = torch.tensor(self.vae.config.latents_std, device=z.device).view(1, -1, 1, 1, 1)
        return (z - mean) / std

    @torch.no_grad()
    def encode_video(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, F, H, W, 3)`` -> normalised latents (the posterior's mode: deterministic)."""
        self._need("vae")
        px = frames.to(self.device, torch.float32).permute(0, 4, 1, 2, 3) / 127.5 - 1.0
        z = torch.cat([self.vae.encode(px[i : i + 1]).latent_dist.mode() for i in range(px.shape[0])])
        return self._normalise(z.float())

    @torch.no_grad()
    def encode_reference(self, images: list[list[Any]], height: int, width: int) -> torch.Tensor:
        self._need("vae")
        pipe = SimpleNamespace(vae=self.vae, video_processor=self.video_processor)
        out = []
        for imgs in images:
            fitted = [identity.fit_image(im, width, height) for im in imgs]
            out.append(identity.reference_latents(pipe, fitted, height, width, self.device, torch.float32))
        return torch.cat(out)

    # ------------------------------------------------------------------ the training step
    def predict(
        self, latents: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor, cond: Conditions
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Velocity prediction on the video frames and the target ``e - x0``: the generation loop's own
        transformer call (:func:`ipvgkit.models.loop.model_prediction`) at timestep ``1000 sigma``, with
        the clean reference frames prepended and dropped from the output."""
        from ipvgkit.models.loop import model_prediction

        if self.expand_timesteps and latents.shape[0] > 1:
            raise UsageError(
                "per-token-timestep models (Wan 2.2 TI2V) train with batch_size 1 (use grad_accum)"
            )
        noisy, target = noisy_and_target(latents.float(), noise.float(), sigmas)
        ref = None if cond.ref_latents is None else cond.ref_latents.to(noisy)
        t = (sigmas * NUM_TRAIN_TIMESTEPS).to(self.device, torch.float32)
        context = cond.prompt_embeds.to(self.device, self.weight_dtype)
        pipe = SimpleNamespace(
            config=SimpleNamespace(expand_timesteps=self.expand_timesteps), transformer=self.transformer
        )
        self.release()  # the previous micro-batch's backward is done
        control = contextlib.nullcontext()
        if cond.timeline is not None:
            cond.timeline.cond_embeds = context  # the processors switch on for exactly this context tensor
            control = timeline_attn.TimelineControl(
                SimpleNamespace(transformer=self.transformer), cond.timeline
            )
        face = contextlib.nullcontext()
        if cond.face is not None:
            from ipvgkit.models.face_adapter import FaceControl, FaceState

            if self.face_adapter is None:
                raise RuntimeError("face embeddings given but no face adapter attached")
            state = FaceState(self.face_adapter, cond.face.to(self.device), cond_embeds=context)
            face = FaceControl(self.transformer, state, keep_after=True)  # after the timeline's: both apply
        self._held.enter_context(control)
        self._held.enter_context(face)
        pred = model_prediction(pipe, _Denoiser(self.denoiser, self.transformer), noisy, t, context, ref)
        if cond.timeline is not None:
            cond.timeline.active = True  # for the backward pass's recomputation (gradient checkpointing)
        return pred.float(), target

    def release(self) -> None:
        """Restore the processors of the last prediction (call after its backward pass)."""
        self._held.close()
        self._held = contextlib.ExitStack()

    def describe(self) -> dict:
        return {
            "backend": self.name,
            "model": self.resolved.name,
            "model_folder": str(self.resolved.folder),
            "model_source": self.resolved.source,
            "weight_dtype": str(self.weight_dtype).removeprefix("torch."),
            "device": str(self.device),
            "loaded": list(self.loaded),
            "expand_timesteps": self.expand_timesteps,
        }


class _Denoiser:
    """The transformer as :func:`~ipvgkit.models.loop.model_prediction` calls it, but called through the
    trainer's distributed wrapper (DDP must see the forward to reduce the gradients)."""

    def __init__(self, wrapper: Any, transformer: Any):
        self.wrapper = wrapper
        self.transformer = transformer

    @property
    def dtype(self) -> torch.dtype:
        return self.transformer.dtype

    def cache_context(self, *args: Any, **kwargs: Any):
        return self.transformer.cache_context(*args, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any):
        return self.wrapper(*args, **kwargs)
