"""The diffusers cache hooks that work with Wan's transformer (``--cache NAME``).

Wan pipelines (and our loop, :mod:`ipvgkit.models.loop`) run the conditional and unconditional passes as
two separate transformer calls, each inside ``transformer.cache_context("cond"|"uncond", step_index=...,
sigma=..., num_inference_steps=...)``. The hooks offered here keep one state per cache context, so the
passes never share cached values, and they skip whole blocks or attention modules: the timeline
processors of :mod:`ipvgkit.models.timeline_attn` still run on every step a block is computed.

* ``first-block``: First Block Cache (threshold 0.05): the later blocks are skipped while the first
  block's residual changes by less than 5% since the last full step.
* ``taylorseer``: TaylorSeer on every block's self-attention, cross-attention and feed-forward
  (diffusers' defaults: 3 warm-up steps, then a full step every 5 steps; the outputs in between are
  extrapolated with a first-order Taylor series, in fp32).
* ``sea``: SeaCache (diffusers' built-in Wan text-to-video adapter, threshold 0.25): the block stack is
  replaced by an extrapolated residual while the spectral indicator changes little.

Refused, with the reason: see :data:`UNSUPPORTED`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from ipvgkit.errors import UsageError

FIRST_BLOCK_THRESHOLD = 0.05
# diffusers' default TaylorSeer patterns ("^blocks.*attn", full match) match no module of Wan's transformer
# (its attention modules are blocks.N.attn1 / attn2): name them
TAYLORSEER_MODULES = (r"blocks\.\d+\.(attn1|attn2|ffn)", r"vace_blocks\.\d+\.(attn1|attn2|ffn)")


class Cache(StrEnum):
    """The cache hooks ``--cache`` accepts."""

    none = "none"
    first_block = "first-block"
    taylorseer = "taylorseer"
    sea = "sea"


CACHES = tuple(c.value for c in Cache)
UNSUPPORTED = {
    "faster-cache": "diffusers' FasterCache needs batched classifier-free guidance, which Wan pipelines do not use",
    "pab": "diffusers' Pyramid Attention Broadcast would reuse the conditional pass's attention in the "
    "separate unconditional pass of Wan pipelines",
    "mag": "diffusers' MagCache needs per-checkpoint magnitude ratios and diffusers ships none for Wan "
    "(only Flux's)",
    "text-kv": "diffusers' text K/V cache only knows NucleusMoE-Image blocks, not Wan's",
}


def check_cache(name: str) -> None:
    """``UsageError`` for a cache name that is refused or unknown, naming the accepted ones."""
    if name in UNSUPPORTED:
        raise UsageError(
            f"cache {name!r} is not supported: {UNSUPPORTED[name]}; choose one of {', '.join(CACHES)}"
        )
    if name not in CACHES:
        raise UsageError(f"unknown cache {name!r}; choose one of {', '.join(CACHES)}")


def cache_config(name: str) -> Any:
    """The diffusers cache config for ``name`` (see the module docstring)."""
    from diffusers.hooks import FirstBlockCacheConfig, SeaCacheConfig, TaylorSeerCacheConfig

    check_cache(name)
    if name == Cache.first_block:
        return FirstBlockCacheConfig(threshold=FIRST_BLOCK_THRESHOLD)
    if name == Cache.taylorseer:
        # fp32 Taylor factors: diffusers' bf16 default would round the extrapolation of fp32 models
        import torch

        return TaylorSeerCacheConfig(
            taylor_factors_dtype=torch.float32, cache_identifiers=list(TAYLORSEER_MODULES)
        )
    if name == Cache.sea:
        return SeaCacheConfig()
    raise UsageError(f"cache {name!r} has no hook")


def apply_cache(pipe: Any, name: str) -> bool:
    """Enable cache ``name`` on every transformer of ``pipe`` (both Wan 2.2 experts); False for ``none``."""
    check_cache(name)
    if name == Cache.none:
        return False
    for component in ("transformer", "transformer_2"):
        module = getattr(pipe, component, None)
        if module is not None:
            try:
                module.enable_cache(cache_config(name))
            except ValueError as exc:  # e.g. SeaCache has no adapter for Wan image-to-video transformers
                msg = str(exc).strip().splitlines()[0]
                raise UsageError(
                    f"cache {name!r} does not work with this model's {component}: {msg}"
                ) from exc
    return True
