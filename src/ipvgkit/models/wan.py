"""The ``wan`` backend: diffusers ``WanPipeline`` (text-to-video) and ``WanImageToVideoPipeline``.

Text-to-video checkpoints run our own loop (:mod:`ipvgkit.models.loop`), which adds reference-concat
identity conditioning; image-to-video checkpoints run diffusers' pipeline with the first reference image
(fitted to the video size) as the first frame. Both support the timeline modes of
:mod:`ipvgkit.models.timeline_attn`, LoRA adapters and the runtime options of
:mod:`ipvgkit.models.runtime`. The pipeline is loaded lazily, on the first ``generate``.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ipvgkit.data.images import reference_problems
from ipvgkit.errors import MissingWeightsError, UsageError
from ipvgkit.models import context_parallel, frames, identity, lora, prompts, runtime, sizes, timeline_attn
from ipvgkit.models.base import GenerationRequest, Identity, ModelOptions, raise_problems
from ipvgkit.models.resolve import ResolvedModel

log = logging.getLogger(__name__)

NEEDS_REFERENCE = (
    Identity.i2v,
    Identity.reference_concat,
    Identity.vace,
    Identity.consisid,
    Identity.face_adapter,
)


class WanBackend:
    """Wan 2.1 / 2.2 checkpoints in diffusers format (see module docstring)."""

    name = "wan"
    pipeline_classes = ("WanPipeline", "WanImageToVideoPipeline")

    def __init__(self, options: ModelOptions, resolved: ResolvedModel):
        runtime.validate_options(options)
        if resolved.pipeline_class not in self.pipeline_classes:
            raise UsageError(f"the {self.name} backend cannot run a {resolved.pipeline_class}")
        self.options = options
        self.resolved = resolved
        self.variant = self._variant()
        self.loras = lora.resolve_specs(options.lora, _has_two_experts(resolved))
        self.lora_files = [spec.path for spec in self.loras]
        prompts.check_placement(options.text_encoder, options.offload)
        if options.flow_shift is not None and options.flow_shift <= 0:
            raise UsageError(f"flow_shift must be > 0, got {options.flow_shift}")
        self.adapter = identity.read_adapter_info(resolved.folder, self.lora_files)
        self.face = identity.face_adapter_for(options, self.variant)  # --adapter: a face adapter (or None)
        if self.face is not None:
            self.adapter = {**self.adapter, **self.face.info()}
        identity.resolve_identity(options.identity, self.variant, True, self.adapter)  # UsageError early
        self.device = runtime.resolve_device(options.device)
        self.torch_dtype, self.dtype_name = runtime.resolve_dtype(options.dtype, self.device)
        vae_cfg = resolved.component_config("vae")
        patch = resolved.component_config("transformer").get("patch_size", list(frames.PATCH))
        self.temporal_factor = int(vae_cfg.get("scale_factor_temporal", frames.TEMPORAL_FACTOR))
        self.size_multiple = int(vae_cfg.get("scale_factor_spatial", frames.SPATIAL_FACTOR)) * int(patch[1])
        self._pipe: Any = None
        # debugging aid (used by the tests): record the timeline processors' attention weights
        self.record_attention = False
        self.last_timeline: timeline_attn.TimelineState | None = None
        self._applied: dict = {}
        self._placement = ""
        self.prompt_cache = prompts.PromptCache(self._encode)
        self._per_request: dict = {}  # size-dependent settings of the last request (describe())
        self.context_parallel = (1, 1)  # (ranks per video, world size): set_context_parallel
        self.given: dict[str, Any] = {}  # components used as they are (with_components)

    @classmethod
    def with_components(cls, options: ModelOptions, resolved: ResolvedModel, **given: Any) -> WanBackend:
        """A backend whose pipeline uses the ``given`` loaded components (``transformer``, ``vae``,
        ``text_encoder``, ``tokenizer``) as they are, e.g. a training run's live transformer: only the
        others are read from ``resolved.folder``. Nothing is done to a given component that would change
        it for its owner: it is not cast (loading and placement keep every given parameter's dtype and
        device, checked; they stay where they are), so offload, a cache hook, ``compile`` and
        ``lora_fuse`` are refused; the LoRAs of ``options.lora`` are already in the given transformer
        (recorded, not loaded again, so scale 1); a face adapter of ``options.adapter`` uses the
        transformer's own ``ipvg_face_adapter`` module when it has one (the folder gives its config)."""
        runtime.check_given(options, given)
        backend = cls(options, resolved)
        backend.given = {k: v for k, v in given.items() if v is not None}
        live = getattr(backend.given.get("transformer"), "ipvg_face_adapter", None)
        if backend.face is not None and live is not None:
            backend.face.use(live)
        return backend

    def loaded_components(self) -> dict[str, Any]:
        """The pipeline's components once it is loaded (``{}`` before), e.g. to give them to the next
        :meth:`with_components` backend instead of loading them again."""
        if self._pipe is None:
            return {}
        return {k: v for k, v in self._pipe.components.items() if k in runtime.GIVEN and v is not None}

    def set_context_parallel(self, size: int, world_size: int) -> list[str]:
        """Split each video over ``size`` ranks when the weights are loaded (``--context-parallel``);
        returns why this model cannot be (before any weights are read)."""
        self.context_parallel = (int(size), int(world_size))
        return context_parallel.transformer_problems(self.resolved, int(size))

    def _variant(self) -> str:
        return "wan-i2v" if self.resolved.pipeline_class == "WanImageToVideoPipeline" else "wan-t2v"

    # ------------------------------------------------------------------ check
    def identity_mode(self, request: GenerationRequest) -> str:
        """The identity mode this request runs with (``ipvgkit.models.identity``)."""
        return identity.resolve_identity(
            self.options.identity, self.variant, bool(request.ref_images), self.adapter
        )

    def problems(self, request: GenerationRequest) -> list[str]:
        """Everything that keeps ``request`` from being generated (empty when it can be)."""
        out: list[str] = []
        n, h, w = request.num_frames, request.height, request.width
        if (n - 1) % self.temporal_factor or n < 1:
            out.append(
                f"num_frames {n} is not of the form {self.temporal_factor}k+1 (e.g. {frames.nearest_valid_frame_count(n)})"
            )
        if h <= 0 or w <= 0 or h % self.size_multiple or w % self.size_multiple:
            out.append(f"size {w}x{h} is not a multiple of {self.size_multiple} in both dimensions")
        if request.fps <= 0:
            out.append(f"fps must be > 0, got {request.fps}")
        if request.steps < 1:
            out.append(f"steps must be >= 1, got {request.steps}")
        out.extend(reference_problems(request.ref_images))
        try:
            mode = self.identity_mode(request)
        except UsageError as exc:
            out.append(str(exc))
        else:
            if mode in NEEDS_REFERENCE and not request.ref_images:
                out.append(f"identity mode {mode!r} needs at least one reference image")
        if request.timeline_mode not in timeline_attn.MODES:
            out.append(
                f"unknown timeline mode {request.timeline_mode!r}; choose one of {', '.join(timeline_attn.MODES)}"
            )
        if self.context_parallel[0] > 1 and not out:
            lead = len(request.ref_images) if self.identity_mode(request) == Identity.reference_concat else 0
            out.extend(
                context_parallel.token_problems(self.context_parallel[0], n, h, w, self.size_multiple, lead)
            )
        if request.timeline and request.fps > 0 and n >= 1:
            out.extend(frames.timeline_problems(request.timeline, request.timeline_units, n, request.fps))
        return out

    def check(self, request: GenerationRequest) -> None:
        """Raise ``CaseError`` naming the case when the request cannot be generated."""
        raise_problems(request, self.problems(request))

    # ------------------------------------------------------------------ loading
    def load(self) -> None:
        """Load the weights now (otherwise the first ``generate`` does); the runner calls it before the
        first case so that per-case times measure generation only."""
        self.pipeline()

    def pipeline(self) -> Any:
        """The loaded diffusers pipeline (loaded on first use)."""
        if self._pipe is None:
            self._pipe = self._load()
        return self._pipe

    def _pipeline_class(self) -> Any:
        import diffusers

        return getattr(diffusers, self.resolved.pipeline_class)

    def _load(self) -> Any:
        import torch

        cls = self._pipeline_class()
        runtime.quiet_hf_loading()
        before = runtime.signature(self.given)
        try:
            # Wan's VAE and image encoder are meant to run in fp32
            dtypes = {"default": self.torch_dtype, "vae": torch.float32, "image_encoder": torch.float32}
            pipe = cls.from_pretrained(self.resolved.folder, dtype=dtypes, **self.given)
        except OSError as exc:
            raise MissingWeightsError(
                f"{self.resolved.name}: {str(exc).splitlines()[0][:200]}",
                [str(self.resolved.folder)],
                "the model's hub repository (a complete diffusers-format folder)",
            ) from exc
        pipe.set_progress_bar_config(disable=True)
        if "transformer" not in self.given:  # a given transformer holds its LoRAs already
            lora.load_loras(pipe, self.loras, self.options.lora_scale, fuse=self.options.lora_fuse)
        if self.given:  # a text encoder kept off the device is not moved there first
            off = (
                {"text_encoder"}
                if self.options.text_encoder != prompts.TextEncoderPlacement.device
                else set()
            )
            self._placement = runtime.place_others(pipe, set(self.given) | off, self.device)
        else:
            self._placement = runtime.place_pipeline(pipe, self.options, self.device)
        prompts.place_text_encoder(pipe, self.options.text_encoder)
        self._applied = runtime.apply_speed_options(pipe, self.options)
        if runtime.signature(self.given) != before:
            raise RuntimeError(
                "loading the pipeline changed a given component's parameters (dtype or device)"
            )
        if self.context_parallel[0] > 1:
            if "transformer" in self.given:
                raise UsageError("context parallelism splits the transformer: not with a given one")
            context_parallel.enable(pipe, *self.context_parallel)
        return pipe

    # ------------------------------------------------------------------ generation
    def generate(self, request: GenerationRequest) -> np.ndarray:
        """Generate ``request``: uint8 RGB frames ``(num_frames, height, width, 3)``."""
        pipe = self.pipeline()  # the request was checked by the runner (check): trusted here
        self._prepare(pipe, request)
        video = self._generate(pipe, request)
        return to_uint8(video)

    def _prepare(self, pipe: Any, request: GenerationRequest) -> None:
        """Apply (and remember for describe()) the settings that depend on the request's size and CFG."""
        shift, shift_note = sizes.flow_shift_for(self.options.flow_shift, pipe, request.height, request.width)
        sizes.apply_flow_shift(pipe, shift)
        tiling, tiling_note = sizes.vae_tiling_for(self.options.vae_tiling, request.height, request.width)
        sizes.apply_vae_tiling(pipe, tiling)
        negative, negative_note = prompts.negative_prompt_for(request.negative_prompt, request.guidance)
        self._per_request = {
            "flow_shift": shift,
            "flow_shift_source": shift_note,
            "vae_tiling_used": tiling,
            "vae_tiling_source": tiling_note,
            "cfg": request.guidance > 1.0,
            "negative_prompt_used": negative,
            "negative_prompt_source": negative_note,
        }

    def _encode(self, texts: Any, device: Any, dtype: Any) -> list:
        pipe = self.pipeline()
        with prompts.encoding_placement(pipe, self.options.text_encoder, device):
            return timeline_attn.encode_texts(pipe, texts, device, dtype)

    def _embeds(self, texts: Any, device: Any, dtype: Any) -> list:
        return self.prompt_cache.get(texts, device, dtype)

    def _contexts(self, pipe: Any, request: GenerationRequest, n_lead: int):
        """The conditional context, the negative context (None without CFG) and the timeline state (None
        without one). Every text is encoded once per run (:class:`ipvgkit.models.prompts.PromptCache`)."""
        device = pipe._execution_device
        dtype = (pipe.transformer or pipe.transformer_2).dtype

        def encode(texts):
            return self._embeds(texts, device, dtype)

        events = request.timeline or []
        if events and request.timeline_mode in ("masked", "soft"):
            ctx = timeline_attn.build_context(
                pipe, request.prompt, [e.text for e in events], device, dtype, encode=encode
            )
            weights = timeline_attn.frame_event_weights(
                events, request.timeline_units, request.num_frames, request.fps, request.timeline_mode, n_lead
            )
            bias = timeline_attn.attention_bias(weights, ctx.token_group, request.timeline_mode)
            tpf = (request.height // self.size_multiple) * (request.width // self.size_multiple)
            state = timeline_attn.TimelineState(
                bias=bias, tokens_per_frame=tpf, cond_embeds=ctx.embeds, record=self.record_attention
            )
            state.context = ctx
            cond = ctx.embeds
        else:
            prompt = frames.fold_timeline_prompt(request.prompt, events) if events else request.prompt
            cond = timeline_attn.build_context(pipe, prompt, [], device, dtype, encode=encode).embeds
            state = None
        self.last_timeline = state
        negative_text, _ = prompts.negative_prompt_for(request.negative_prompt, request.guidance)
        negative = None
        if negative_text is not None:
            negative = timeline_attn.build_context(
                pipe, negative_text, [], device, dtype, encode=encode
            ).embeds
        return cond, negative, state

    def _generate(self, pipe: Any, request: GenerationRequest) -> np.ndarray:
        import torch

        mode = self.identity_mode(request)
        generator = torch.Generator(device="cpu").manual_seed(int(request.seed))
        refs = [identity.open_image(Path(p)) for p in request.ref_images] if mode != Identity.none else []
        if self.variant == "wan-i2v":
            cond, negative, state = self._contexts(pipe, request, 0)
            first = identity.fit_image(refs[0], request.width, request.height)
            with _maybe_timeline(pipe, state):
                out = pipe(
                    image=first, prompt_embeds=cond, negative_prompt_embeds=negative, height=request.height,
                    width=request.width, num_frames=request.num_frames, num_inference_steps=request.steps,
                    guidance_scale=request.guidance, generator=generator, output_type="np",
                )  # fmt: skip
            return out.frames[0]
        from ipvgkit.models.loop import LoopInputs, run_t2v

        ref_latents = None
        if mode == Identity.reference_concat:
            fitted = [identity.fit_image(im, request.width, request.height) for im in refs]
            ref_latents = identity.reference_latents(
                pipe, fitted, request.height, request.width, pipe._execution_device, torch.float32
            )
        n_lead = 0 if ref_latents is None else ref_latents.shape[2]
        cond, negative, state = self._contexts(pipe, request, n_lead)
        inputs = LoopInputs(
            prompt_embeds=cond, negative_embeds=negative, height=request.height, width=request.width,
            num_frames=request.num_frames, steps=request.steps, guidance=request.guidance, generator=generator,
            ref_latents=ref_latents,
        )  # fmt: skip
        face = contextlib.nullcontext()
        if mode == Identity.face_adapter:
            face = self.face.control(pipe.transformer, Path(request.ref_images[0]), cond)
        with _maybe_timeline(pipe, state), face:  # the face processors wrap the timeline ones
            return run_t2v(pipe, inputs)

    # ------------------------------------------------------------------ description
    def describe(self) -> dict:
        """Settings to record beside the outputs."""
        notes = []
        if self.device == "cpu" and self.options.dtype != "fp32":
            notes.append(f"running on CPU: fp32 used instead of {self.options.dtype}")
        if self.device == "cpu" and self.options.offload != "none":
            notes.append(f"offload={self.options.offload} ignored on CPU")
        note = "; ".join(notes) or None
        return {
            "backend": self.name,
            "model": self.options.model,
            "model_folder": str(self.resolved.folder),
            "model_source": self.resolved.source,
            "pipeline": self.resolved.pipeline_class,
            "variant": self.variant,
            "identity": self.options.identity,
            "adapter": {k: v for k, v in self.adapter.items()} or None,
            "lora": [str(p) for p in self.lora_files],
            "lora_scale": self.options.lora_scale,
            "loras": [spec.describe(self.options.lora_scale) for spec in self.loras],
            "lora_fuse": self.options.lora_fuse,
            "text_encoder": self.options.text_encoder,
            "prompt_cache": self.prompt_cache.stats(),
            "dtype": self.dtype_name,
            "dtype_requested": self.options.dtype,
            "device": self.device,
            "placement": self._placement or None,
            "offload": self.options.offload,
            "vae_tiling": self.options.vae_tiling,
            "compile": self.options.compile,
            "cache": self.options.cache,
            "context_parallel": self.context_parallel[0],
            "given_components": sorted(self.given) or None,
            **self._per_request,
            "note": note,
        }


DEFAULTS_SAID = (
    ("flow shift", "flow_shift", "flow_shift_source"),
    ("VAE tiling", "vae_tiling_used", "vae_tiling_source"),
    ("negative prompt", None, "negative_prompt_source"),
)


def defaults_said(described: dict | None) -> list[str]:
    """One line per setting a Wan backend chose by default for a case (from its ``describe()``), e.g.
    ``flow shift 3.0: derived from the size 832x480 (...)``, for the run's output; given ones are left out."""
    lines = []
    for label, value_key, source_key in DEFAULTS_SAID:
        source = (described or {}).get(source_key)
        if not source or source.startswith("given"):
            continue
        value = described.get(value_key) if value_key else None
        shown = {True: "on", False: "off", None: ""}.get(
            value, f"{value:g}" if isinstance(value, float) else value
        )
        lines.append(f"{label}{' ' + str(shown) if shown else ''}: {source}")
    return lines


def _has_two_experts(resolved: ResolvedModel) -> bool:
    """True for a Wan 2.2 A14B layout (a ``transformer_2`` component in ``model_index.json``)."""
    entry = resolved.model_index().get("transformer_2")
    return isinstance(entry, list) and entry[0] is not None


def _maybe_timeline(pipe: Any, state: timeline_attn.TimelineState | None) -> Any:
    """``TimelineControl`` when there is a timeline state, else nothing."""
    return timeline_attn.TimelineControl(pipe, state) if state is not None else contextlib.nullcontext()


def to_uint8(video: np.ndarray) -> np.ndarray:
    """Float frames in [0, 1] → uint8 ``(F, H, W, 3)``."""
    return np.clip(np.rint(np.asarray(video, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)
