"""Track 2 timeline control for Wan: per-latent-frame text in the cross-attention.

The conditioning context is ``[global prompt tokens | event 1 tokens | event 2 tokens | ... | zero padding]``,
each text encoded separately by the T5 encoder (without its padding) and concatenated along the sequence;
the zero padding up to 512 tokens (what Wan was trained with) counts as global. A custom processor on
every ``blocks[i].attn2`` (and ``vace_blocks[i].attn2``) adds a bias to the text attention logits so that
query tokens of latent frame ``l`` see

* ``masked``: the global tokens and the tokens of their own event only (bias ``-inf`` elsewhere: exactly
  zero attention weight on other events; frames in no event see only the global tokens);
* ``soft``: every event's tokens with the additive bias ``log w_e(l)``, ``w`` from
  :func:`ipvgkit.models.frames.soft_event_weights` (a sigmoid ramp over about one latent frame at each
  event border: low but non-zero weight for a neighbouring event near a border, vanishing far away).

The I2V model's image tokens (first in the context) are attended to without any mask, as in diffusers'
``WanAttnProcessor``. The processor is only active during the conditional forward pass (the one whose
``encoder_hidden_states`` is the timeline context); the unconditional (negative prompt) pass runs the
plain processor. Leading reference latent frames (reference-concat, VACE reference images) see only the
global tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ipvgkit.data.cases import Event
from ipvgkit.models import frames
from ipvgkit.models.base import TimelineMode, values

MAX_TEXT_TOKENS = 512  # Wan's text context length
SOFT_LOG_FLOOR = -60.0  # log-weight floor of the soft mode (e^-60: non-zero, negligible)
MODES = values(TimelineMode)


@dataclass
class TextContext:
    """An encoded conditioning context and which tokens belong to which text (0 = global, j = event j)."""

    embeds: torch.Tensor  # (1, L, D)
    token_group: torch.Tensor  # (L,) long
    texts: list[str]
    spans: list[tuple[int, int]]  # (start, end) of the global prompt's and each event's own tokens

    @property
    def length(self) -> int:
        return int(self.embeds.shape[1])


def encode_texts(
    pipe: Any, texts: Sequence[str], device: torch.device, dtype: torch.dtype
) -> list[torch.Tensor]:
    """T5-encode each text like diffusers' Wan pipelines do, returning each one's ``(len, D)`` tokens
    without padding (at most 512 tokens each)."""
    from diffusers.pipelines.wan.pipeline_wan import prompt_clean
    from diffusers.utils.torch_utils import get_module_execution_device

    cleaned = [prompt_clean(t) for t in texts]
    inputs = pipe.tokenizer(
        cleaned,
        padding="max_length",
        max_length=MAX_TEXT_TOKENS,
        truncation=True,
        add_special_tokens=True,
        return_attention_mask=True,
        return_tensors="pt",
    )
    ids, mask = inputs.input_ids, inputs.attention_mask
    seq_lens = mask.gt(0).sum(dim=1).long().tolist()
    enc_device = get_module_execution_device(pipe.text_encoder)  # right with CPU offload too
    with torch.no_grad():  # as in WanPipeline.__call__: no autograd graph kept alive by the prompt cache
        hidden = pipe.text_encoder(ids.to(enc_device), mask.to(enc_device)).last_hidden_state
    hidden = hidden.to(device=device, dtype=dtype)
    return [hidden[i, :n] for i, n in enumerate(seq_lens)]


def fit_parts(parts: list[torch.Tensor], limit: int = MAX_TEXT_TOKENS) -> list[torch.Tensor]:
    """Cut the event texts' tokens (the longest first, to one common cap) so that the global prompt and
    every event fit in ``limit`` tokens, with a :class:`~ipvgkit.models.base.BackendWarning` saying so
    (the runner names the case). Each event keeps at least one token; parts that fit are returned as is."""
    total = sum(int(p.shape[0]) for p in parts)
    if total <= limit or len(parts) < 2:
        return parts
    import warnings

    from ipvgkit.models.base import BackendWarning

    events = [int(p.shape[0]) for p in parts[1:]]
    head = min(int(parts[0].shape[0]), limit - len(events))
    budget = limit - head
    cap = max(1, max(c for c in range(1, max(events) + 1) if sum(min(n, c) for n in events) <= budget))
    fitted = [parts[0][:head], *(p[:cap] for p in parts[1:])]
    cut = sum(1 for n in events if n > cap)
    warnings.warn(
        BackendWarning(
            f"timeline context of {total} tokens is over the text encoder's {limit}: {cut} event text(s) "
            f"cut to {cap} tokens" + (f", the prompt to {head}" if head < parts[0].shape[0] else "")
        ),
        stacklevel=2,
    )
    return fitted


def build_context(
    pipe: Any,
    prompt: str,
    event_texts: Sequence[str],
    device: torch.device,
    dtype: torch.dtype,
    encode: Callable[[Sequence[str]], list[torch.Tensor]] | None = None,
) -> TextContext:
    """Encode the global prompt and each event separately and concatenate them (zero-padded to 512).
    ``encode`` (texts -> unpadded embeddings) replaces :func:`encode_texts`, e.g. a per-run cache."""
    texts = [prompt, *event_texts]
    parts = fit_parts(encode(texts) if encode is not None else encode_texts(pipe, texts, device, dtype))
    groups = [torch.full((p.shape[0],), g, dtype=torch.long) for g, p in enumerate(parts)]
    ends = np.cumsum([p.shape[0] for p in parts]).tolist()
    spans = [(int(e - p.shape[0]), int(e)) for e, p in zip(ends, parts, strict=True)]
    embeds = torch.cat(parts, dim=0)
    token_group = torch.cat(groups)
    n_pad = MAX_TEXT_TOKENS - embeds.shape[0]
    if n_pad > 0:
        embeds = torch.cat([embeds, embeds.new_zeros(n_pad, embeds.shape[1])])
        token_group = torch.cat([token_group, torch.zeros(n_pad, dtype=torch.long)])
    return TextContext(embeds.unsqueeze(0), token_group, texts, spans)


def frame_event_weights(
    events: Sequence[Event], units: str | None, num_frames: int, fps: float, mode: str, n_lead: int = 0
) -> np.ndarray:
    """``(n_lead + latent_frames, n_events)`` weights: one-hot rows (``masked``) or sigmoid ramps (``soft``);
    the ``n_lead`` leading rows (reference latent frames) are zero."""
    n_lat = frames.num_latent_frames(num_frames)
    if mode == "masked":
        w = np.zeros((n_lat, len(events)))
        for lat, j in enumerate(frames.event_of_latent_frames(events, units, num_frames, fps)):
            if j >= 0:
                w[lat, j] = 1.0
    elif mode == "soft":
        w = frames.soft_event_weights(events, units, num_frames, fps)
    else:
        raise ValueError(f"timeline mode {mode!r} uses no attention processor")
    return np.concatenate([np.zeros((n_lead, len(events))), w], axis=0)


def attention_bias(weights: np.ndarray, token_group: torch.Tensor, mode: str) -> torch.Tensor:
    """``(frames, L)`` additive bias on the text logits: 0 for global tokens; for event ``j``'s tokens
    0/-inf (``masked``) or ``max(log w_j, -60)`` (``soft``)."""
    w = torch.as_tensor(weights, dtype=torch.float32)  # (frames, n_events)
    n_frames = w.shape[0]
    w_full = torch.cat([torch.ones(n_frames, 1), w], dim=1)  # group 0 = global, always weight 1
    per_token = w_full[:, token_group]  # (frames, L)
    if mode == "masked":
        return torch.where(per_token > 0.5, 0.0, float("-inf"))
    return per_token.clamp_min(1e-30).log().clamp_min(SOFT_LOG_FLOOR)


@dataclass
class TimelineState:
    """Shared by all timeline processors of one generation."""

    bias: torch.Tensor  # (frames, L_text)
    tokens_per_frame: int
    cond_embeds: torch.Tensor | None = None  # the context tensor that switches the processors on
    active: bool = False
    record: bool = False
    records: list[torch.Tensor] = field(default_factory=list)  # (Lq, L_text) head-averaged weights
    context: TextContext | None = None  # the context the bias was built for (token spans)

    _expanded: dict = field(default_factory=dict, repr=False)

    @property
    def text_len(self) -> int:
        return int(self.bias.shape[1])

    def token_bias(
        self, n_query: int, device: torch.device, dtype: torch.dtype, offset: int = 0
    ) -> torch.Tensor:
        """The ``(1, 1, n_query, L)`` bias of the query tokens ``offset .. offset+n_query-1`` of the video
        (frame-major order; ``offset`` > 0 for a context-parallel rank's slice), built once per shape."""
        key = (n_query, str(device), dtype, offset)
        if key not in self._expanded:
            position = torch.arange(offset, offset + n_query)
            frame = (position // self.tokens_per_frame).clamp_max(self.bias.shape[0] - 1)
            self._expanded[key] = self.bias[frame].to(device=device, dtype=dtype)[None, None]
        return self._expanded[key]


class TimelineAttnProcessor:
    """``WanAttnProcessor``'s interface with a per-frame text bias (see module docstring)."""

    def __init__(self, state: TimelineState, fallback: Any):
        self.state = state
        self.fallback = fallback

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        st = self.state
        if not st.active or encoder_hidden_states is None:
            return self.fallback(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)
        from diffusers.models.transformers.transformer_wan import (
            _get_added_kv_projections,
            _get_qkv_projections,
        )

        n_img = encoder_hidden_states.shape[1] - st.text_len
        if n_img < 0 or (n_img > 0 and attn.add_k_proj is None):
            raise RuntimeError(
                f"timeline context has {encoder_hidden_states.shape[1]} tokens, expected {st.text_len}"
            )
        context_img = encoder_hidden_states[:, :n_img] if n_img else None
        context = encoder_hidden_states[:, n_img:]

        query, key, value = _get_qkv_projections(attn, hidden_states, context)
        query = attn.norm_q(query).unflatten(2, (attn.heads, -1)).transpose(1, 2)  # B, H, Lq, D
        key = attn.norm_k(key).unflatten(2, (attn.heads, -1)).transpose(1, 2)
        value = value.unflatten(2, (attn.heads, -1)).transpose(1, 2)

        offset = token_offset(self.fallback, query.shape[2])
        bias = st.token_bias(query.shape[2], query.device, query.dtype, offset)  # 1, 1, Lq, L
        out = F.scaled_dot_product_attention(
            query, key, value, attn_mask=bias, dropout_p=0.0, is_causal=False
        )
        if st.record:
            logits = (query.float() @ key.float().transpose(-1, -2)) * query.shape[-1] ** -0.5 + bias.float()
            st.records.append(logits.softmax(dim=-1).mean(dim=(0, 1)).cpu())
        out = out.transpose(1, 2).flatten(2, 3).type_as(query)

        if context_img is not None:
            key_img, value_img = _get_added_kv_projections(attn, context_img)
            key_img = attn.norm_added_k(key_img).unflatten(2, (attn.heads, -1)).transpose(1, 2)
            value_img = value_img.unflatten(2, (attn.heads, -1)).transpose(1, 2)
            out_img = F.scaled_dot_product_attention(
                query, key_img, value_img, dropout_p=0.0, is_causal=False
            )
            out = out + out_img.transpose(1, 2).flatten(2, 3).type_as(query)

        out = attn.to_out[0](out)
        return attn.to_out[1](out)


def token_offset(processor: Any, n_local: int) -> int:
    """The index in the whole video sequence of a processor's first query token: 0, unless diffusers'
    context parallelism (``enable_parallelism``) split the tokens, in which case rank ``r`` of the group
    holds chunk ``r`` of equal chunks (``EquipartitionSharder``), i.e. tokens from ``r * n_local``."""
    config = getattr(processor, "_parallel_config", None)
    cp = getattr(config, "context_parallel_config", None)
    if cp is None:
        return 0
    import torch.distributed as dist

    return dist.get_rank(cp._flattened_mesh.get_group()) * n_local


def _cross_attentions(transformer: Any) -> list[Any]:
    mods = [b.attn2 for b in getattr(transformer, "blocks", [])]
    mods += [b.attn2 for b in getattr(transformer, "vace_blocks", []) if hasattr(b, "attn2")]
    return mods


class TimelineControl:
    """Installs the timeline processors on a pipeline's transformer(s) for one generation; use as a
    context manager (the original processors and hooks are restored on exit)."""

    def __init__(self, pipe: Any, state: TimelineState):
        self.pipe = pipe
        self.state = state
        self._saved: list[tuple[Any, Any]] = []
        self._hooks: list[Any] = []

    def __enter__(self) -> TimelineControl:
        for name in ("transformer", "transformer_2"):
            module = getattr(self.pipe, name, None)
            if module is None:
                continue
            for attn in _cross_attentions(module):
                self._saved.append((attn, attn.processor))
                attn.set_processor(TimelineAttnProcessor(self.state, attn.processor))
            self._hooks.append(module.register_forward_pre_hook(self._pre_hook, with_kwargs=True))
            self._hooks.append(module.register_forward_hook(self._post_hook))
        return self

    def _pre_hook(self, module: Any, args: tuple, kwargs: dict) -> None:
        context = kwargs.get("encoder_hidden_states", args[2] if len(args) > 2 else None)
        self.state.active = context is not None and context is self.state.cond_embeds

    def _post_hook(self, module: Any, args: tuple, output: Any) -> None:
        self.state.active = False

    def __exit__(self, *exc: object) -> None:
        for hook in self._hooks:
            hook.remove()
        for attn, proc in self._saved:
            attn.set_processor(proc)
        self._hooks.clear()
        self._saved.clear()
        self.state.active = False
