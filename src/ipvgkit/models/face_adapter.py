"""The face adapter (``--identity face-adapter``): a face embedding as extra cross-attention tokens.

IP-Adapter / Lynx style. A face embedding ``(B, E)`` (ArcFace 512-d from insightface, or dlib's 128-d)
goes through a small perceiver resampler (``num_tokens`` learned queries, ``depth`` layers of
cross-attention to the projected embedding + feed-forward) to ``K = num_tokens`` tokens of the
transformer's width. In every block's text cross-attention (``attn2``) the video queries also attend to
those tokens through the block's own ``to_k_ip`` / ``to_v_ip``; the result goes through the block's
output projection (its weight, without the bias) times a per-block ``scale`` that starts at zero, so an
untrained adapter changes nothing (tested bitwise).

The processor (:class:`FaceAttnProcessor`) wraps whatever processor the cross-attention already has
(the default one, or the timeline processor of :mod:`ipvgkit.models.timeline_attn`), so both apply:
enter :class:`FaceControl` after ``TimelineControl``. Like the timeline processors, the face tokens act
on the transformer call whose text context is ``FaceState.cond_embeds`` only (the unconditional call of
classifier-free guidance sees no face).

Files: ``face_adapter.safetensors`` (the adapter's state dict; metadata ``ipvg_face_adapter`` = the
json config) and ``face_adapter.json`` (the same config: base model, dims, steps), read strictly.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ipvgkit.errors import InputError, MissingWeightsError, UsageError

WEIGHTS_FILE = "face_adapter.safetensors"
CONFIG_FILE = "face_adapter.json"
METADATA_KEY = "ipvg_face_adapter"


@dataclass
class FaceAdapterConfig:
    """The adapter's shape (and where it came from)."""

    embed_dim: int
    dim: int  # the transformer's inner width (cross-attention keys / values)
    num_blocks: int
    num_tokens: int = 4
    depth: int = 2
    heads: int = 8
    base_model: str = ""
    steps: int = 0
    face_backend: str = ""  # the embedding's backend when known (dlib / buffalo_l)
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict, where: str) -> FaceAdapterConfig:
        try:
            return cls(**data)
        except TypeError as exc:
            raise InputError(f"{where}: not a face adapter config ({exc})") from exc


class _ResamplerLayer(nn.Module):
    """Queries attend to the embedding's tokens and themselves (perceiver), then a feed-forward."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_kv = nn.Linear(dim, 2 * dim, bias=False)
        self.to_out = nn.Linear(dim, dim, bias=False)
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, queries: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        q_in = self.norm_q(queries)
        ctx = torch.cat([self.norm_kv(kv), q_in], dim=1)
        q = self.to_q(q_in).unflatten(2, (self.heads, -1)).transpose(1, 2)
        k, v = (t.unflatten(2, (self.heads, -1)).transpose(1, 2) for t in self.to_kv(ctx).chunk(2, dim=-1))
        att = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2, 3)
        queries = queries + self.to_out(att)
        return queries + self.ff(self.norm_ff(queries))


class FaceAdapter(nn.Module):
    """Resampler + per-block ``to_k_ip`` / ``to_v_ip`` + zero-initialised per-block ``scale``."""

    def __init__(self, cfg: FaceAdapterConfig):
        super().__init__()
        if cfg.dim % cfg.heads:
            raise UsageError(f"face adapter heads {cfg.heads} must divide the width {cfg.dim}")
        self.cfg = cfg
        self.proj_in = nn.Linear(cfg.embed_dim, cfg.num_tokens * cfg.dim)
        self.queries = nn.Parameter(torch.randn(1, cfg.num_tokens, cfg.dim) * cfg.dim**-0.5)
        self.layers = nn.ModuleList([_ResamplerLayer(cfg.dim, cfg.heads) for _ in range(cfg.depth)])
        self.norm_out = nn.LayerNorm(cfg.dim)
        self.to_k_ip = nn.ModuleList([nn.Linear(cfg.dim, cfg.dim, bias=False) for _ in range(cfg.num_blocks)])
        self.to_v_ip = nn.ModuleList([nn.Linear(cfg.dim, cfg.dim, bias=False) for _ in range(cfg.num_blocks)])
        self.scale = nn.Parameter(torch.zeros(cfg.num_blocks))

    def tokens(self, embedding: torch.Tensor) -> torch.Tensor:
        """``(B, E)`` face embeddings -> ``(B, K, dim)`` tokens."""
        if embedding.dim() != 2 or embedding.shape[1] != self.cfg.embed_dim:
            raise UsageError(
                f"face embedding of shape {tuple(embedding.shape)}, the adapter takes (B, {self.cfg.embed_dim})"
            )
        x = embedding.to(self.proj_in.weight)
        kv = self.proj_in(x).view(x.shape[0], self.cfg.num_tokens, self.cfg.dim)
        q = self.queries.expand(x.shape[0], -1, -1)
        for layer in self.layers:
            q = layer(q, kv)
        return self.norm_out(q)


def build_adapter(transformer: Any, embed_dim: int, **kw: Any) -> FaceAdapter:
    """An untrained adapter for ``transformer`` (a diffusers ``WanTransformer3DModel``)."""
    c = transformer.config
    dim = int(c.num_attention_heads * c.attention_head_dim)
    cfg = FaceAdapterConfig(embed_dim=int(embed_dim), dim=dim, num_blocks=len(transformer.blocks), **kw)
    return FaceAdapter(cfg)


@dataclass
class FaceState:
    """Shared by the face processors of one transformer call (like ``TimelineState``)."""

    adapter: FaceAdapter
    embedding: torch.Tensor  # (B, E)
    cond_embeds: torch.Tensor | None = None  # the context tensor that switches the processors on
    active: bool = False
    ip_tokens: torch.Tensor | None = None  # computed once per call (so gradients reach the resampler)


class FaceAttnProcessor:
    """The wrapped processor's output + ``scale_i * W_out softmax(q k_ip^T) v_ip`` (module docstring)."""

    def __init__(self, state: FaceState, index: int, fallback: Any):
        self.state = state
        self.index = index
        self.fallback = fallback

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        out = self.fallback(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)
        st = self.state
        if not st.active or encoder_hidden_states is None or st.ip_tokens is None:
            return out
        ad, i = st.adapter, self.index
        tokens = st.ip_tokens.to(hidden_states.dtype)
        query = attn.norm_q(attn.to_q(hidden_states)).unflatten(2, (attn.heads, -1)).transpose(1, 2)
        key = ad.to_k_ip[i](tokens.to(ad.to_k_ip[i].weight)).to(query.dtype)
        value = ad.to_v_ip[i](tokens.to(ad.to_v_ip[i].weight)).to(query.dtype)
        key = key.unflatten(2, (attn.heads, -1)).transpose(1, 2)
        value = value.unflatten(2, (attn.heads, -1)).transpose(1, 2)
        ip = F.scaled_dot_product_attention(query, key, value, dropout_p=0.0, is_causal=False)
        ip = ip.transpose(1, 2).flatten(2, 3)
        proj = attn.to_out[0]
        weight = getattr(proj, "base_layer", proj).weight  # a LoRA-adapted layer keeps its base weight
        return out + (ad.scale[i] * F.linear(ip.to(weight.dtype), weight)).to(out.dtype)


class FaceControl:
    """Installs the face processors on ``transformer``'s blocks for one call or one generation; use as a
    context manager after any ``TimelineControl`` (both then apply). Restores everything on exit."""

    def __init__(self, transformer: Any, state: FaceState, keep_after: bool = False):
        self.transformer = transformer
        self.state = state
        self.keep_after = keep_after  # training: stay on after the call (backward recomputation)
        self._saved: list[tuple[Any, Any]] = []
        self._hooks: list[Any] = []

    def __enter__(self) -> FaceControl:
        n = len(self.transformer.blocks)
        if n != self.state.adapter.cfg.num_blocks:
            raise UsageError(
                f"the face adapter has {self.state.adapter.cfg.num_blocks} blocks, the model {n}"
            )
        for i, block in enumerate(self.transformer.blocks):
            self._saved.append((block.attn2, block.attn2.processor))
            block.attn2.set_processor(FaceAttnProcessor(self.state, i, block.attn2.processor))
        self._hooks.append(self.transformer.register_forward_pre_hook(self._pre, with_kwargs=True))
        self._hooks.append(self.transformer.register_forward_hook(self._post))
        return self

    def _pre(self, module: Any, args: tuple, kwargs: dict) -> None:
        context = kwargs.get("encoder_hidden_states", args[2] if len(args) > 2 else None)
        st = self.state
        st.active = context is not None and context is st.cond_embeds
        st.ip_tokens = st.adapter.tokens(st.embedding) if st.active else None

    def _post(self, module: Any, args: tuple, output: Any) -> None:
        if self.keep_after:
            return
        self.state.active = False
        self.state.ip_tokens = None

    def __exit__(self, *exc: object) -> None:
        for hook in self._hooks:
            hook.remove()
        for attn, proc in reversed(self._saved):
            attn.set_processor(proc)
        self._hooks.clear()
        self._saved.clear()
        self.state.active = False


# ---------------------------------------------------------------------- files
def save_adapter(folder: Path, adapter: FaceAdapter) -> Path:
    """``folder/face_adapter.safetensors`` + ``face_adapter.json`` (atomically each)."""
    from safetensors.torch import save_file

    from ipvgkit.fsutil import atomic_path, atomic_write_text

    folder = Path(folder)
    meta = json.dumps(asdict(adapter.cfg), sort_keys=True)
    state = {k: v.detach().cpu().float().contiguous() for k, v in adapter.state_dict().items()}
    with atomic_path(folder / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", METADATA_KEY: meta})
    atomic_write_text(folder / CONFIG_FILE, json.dumps(asdict(adapter.cfg), indent=2, sort_keys=True) + "\n")
    return folder / WEIGHTS_FILE


def read_config(folder: Path) -> FaceAdapterConfig:
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise InputError(f"{folder}: no {CONFIG_FILE} (train one with ipvg finetune --method face-adapter)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from exc
    return FaceAdapterConfig.from_dict(data, str(path))


def load_adapter(folder: Path) -> FaceAdapter:
    """The adapter saved in ``folder``, strictly (a missing / unexpected / misshaped key is one line)."""
    from safetensors.torch import load_file

    cfg = read_config(folder)
    path = Path(folder) / WEIGHTS_FILE
    if not path.is_file():
        raise InputError(f"{folder}: no {WEIGHTS_FILE}")
    adapter = FaceAdapter(cfg)
    state = load_file(str(path))
    own = adapter.state_dict()
    for key in sorted(set(own) | set(state)):
        if key not in state or key not in own:
            raise InputError(f"{path}: {'missing' if key not in state else 'unexpected'} key {key!r}")
        if state[key].shape != own[key].shape:
            raise InputError(
                f"{path}: key {key!r} has shape {tuple(state[key].shape)}, expected {tuple(own[key].shape)}"
            )
    adapter.load_state_dict(state, strict=True)
    return adapter.eval().requires_grad_(False)


def read_embedding(path: Path) -> np.ndarray:
    """A prepare folder's face embedding (``faces/ID.npy``: one float32 vector)."""
    try:
        emb = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"face embedding {path} cannot be read: {exc}") from exc
    if emb.ndim != 1:
        raise InputError(f"face embedding {path} has shape {emb.shape}, expected one vector")
    return emb.astype(np.float32)


def reference_embedding(image_path: Path, backend_name: str, models_dir: Path | None) -> np.ndarray:
    """The embedding of the largest face in a reference image (``ipvgkit.faces``); ``InputError`` when
    no face is found."""
    from ipvgkit.faces import get_backend
    from ipvgkit.faces.base import detect_largest, source_image
    from ipvgkit.models.identity import open_image

    image = np.asarray(open_image(Path(image_path)))
    backend = get_backend(backend_name, models_dir)
    face = detect_largest(backend, image)
    if face is None:
        raise InputError(f"no face found in the reference image {image_path}")
    src, _ = source_image(image, face)
    return backend.embed(src, [face])[0].astype(np.float32)


# ---------------------------------------------------------------------- generation
def backend_for(cfg: FaceAdapterConfig, models_dir: Path | None = None) -> str:
    """The face backend the reference embedding is computed with: the one the adapter was trained with
    when its config says, else by dimension (128: dlib; otherwise insightface's buffalo_l when its
    weights are there, else dlib, and the dimension check then says why it cannot run)."""
    from ipvgkit.faces import files
    from ipvgkit.weights import locate

    if cfg.face_backend:
        return cfg.face_backend
    if cfg.embed_dim == 128:
        return "dlib"
    try:
        locate(files.PACKS["buffalo_l"], models_dir)
        return "buffalo_l"
    except MissingWeightsError:  # absent weights: the offline backend
        return "dlib"


class GenerationAdapter:
    """A loaded face adapter for ``ipvg generate --identity face-adapter --adapter DIR``."""

    def __init__(self, folder: Path, models_dir: Path | None = None):
        self.folder = Path(folder)
        self.cfg = read_config(self.folder)
        self.models_dir = models_dir
        self.backend = backend_for(self.cfg, models_dir)
        self._adapter: FaceAdapter | None = None
        self._embeddings: dict[str, np.ndarray] = {}

    def info(self) -> dict:
        return {"identity": "face-adapter", "face_adapter": str(self.folder), "face_backend": self.backend,
                "embed_dim": self.cfg.embed_dim, "base_model": self.cfg.base_model}  # fmt: skip

    SHAPE = ("embed_dim", "dim", "num_blocks", "num_tokens", "depth", "heads")

    def use(self, adapter: FaceAdapter) -> None:
        """Generate with ``adapter`` (a loaded module, e.g. a training run's live one, used as it is:
        not copied, cast or frozen) instead of reading the folder's weights; its shape must be the
        folder config's."""
        ours, theirs = asdict(self.cfg), asdict(adapter.cfg)
        diff = [f"{k} {theirs[k]} (the folder's {ours[k]})" for k in self.SHAPE if ours[k] != theirs[k]]
        if diff:
            raise UsageError(f"the face adapter module does not fit {self.folder}: {', '.join(diff)}")
        self._adapter = adapter

    @property
    def adapter(self) -> FaceAdapter | None:
        """The module generation uses (None until the first ``control`` or ``use``)."""
        return self._adapter

    def embedding(self, image_path: Path) -> np.ndarray:
        key = str(image_path)
        if key not in self._embeddings:
            emb = reference_embedding(Path(image_path), self.backend, self.models_dir)
            if emb.shape[0] != self.cfg.embed_dim:
                raise UsageError(
                    f"the {self.backend} face embedding is {emb.shape[0]}-d, the adapter {self.folder} "
                    f"takes {self.cfg.embed_dim}-d (train it on embeddings of the same face backend)"
                )
            self._embeddings[key] = emb
        return self._embeddings[key]

    def control(self, transformer: Any, image_path: Path, cond_embeds: torch.Tensor) -> FaceControl:
        """The processors for one generation (enter after the timeline control)."""
        emb = torch.from_numpy(self.embedding(image_path))[None]  # checks the dimension first
        if self._adapter is None:
            self._adapter = load_adapter(self.folder)
        device = next(transformer.parameters()).device
        adapter = self._adapter.to(device)
        emb = emb.to(device)
        return FaceControl(transformer, FaceState(adapter, emb, cond_embeds=cond_embeds))
