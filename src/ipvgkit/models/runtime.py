"""Device, dtype and speed options of the diffusers backends (``ModelOptions``).

All are off by default. On CPU the dtype is always fp32 (bf16/fp16 matmuls are slow or unsupported
there); ``describe()`` records the dtype actually used. Unknown values raise ``UsageError`` naming the
accepted ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ipvgkit.devices import resolve_device
from ipvgkit.errors import UsageError
from ipvgkit.models import caches
from ipvgkit.models.base import DType, Offload, values

if TYPE_CHECKING:
    import torch

    from ipvgkit.models.base import ModelOptions

DTYPES = values(DType)
OFFLOADS = values(Offload)
CACHES = caches.CACHES  # the cache hooks: ipvgkit.models.caches


def quiet_hf_loading() -> None:
    """Hide diffusers'/transformers' loading progress bars and type notices: our CLI shows its own."""
    from diffusers.utils import logging as d_logging
    from transformers.utils import logging as t_logging

    d_logging.disable_progress_bar()
    d_logging.set_verbosity_error()
    t_logging.disable_progress_bar()
    t_logging.set_verbosity_error()


def validate_options(options: ModelOptions) -> None:
    """Raise ``UsageError`` for a dtype/offload/cache value this module does not know."""
    if options.dtype not in DTYPES:
        raise UsageError(f"unknown dtype {options.dtype!r}; choose one of {', '.join(DTYPES)}")
    if options.offload not in OFFLOADS:
        raise UsageError(f"unknown offload {options.offload!r}; choose one of {', '.join(OFFLOADS)}")
    caches.check_cache(options.cache)
    if options.lora_scale < 0:
        raise UsageError(f"lora_scale must be >= 0, got {options.lora_scale}")
    resolve_device(options.device)


def resolve_dtype(dtype: str, device: str) -> tuple[torch.dtype, str]:
    """The torch dtype to load with and its name; fp32 on CPU whatever was asked."""
    import torch

    if device == "cpu":
        return torch.float32, "fp32"
    torch_dtypes = {DType.bf16: torch.bfloat16, DType.fp16: torch.float16, DType.fp32: torch.float32}
    return torch_dtypes[DType(dtype)], DType(dtype).value


def place_pipeline(pipe: Any, options: ModelOptions, device: str) -> str:
    """Move the pipeline to ``device`` or set up CPU offload; returns the placement used."""
    if options.offload == "none" or device == "cpu":
        pipe.to(device)
        return device
    gpu_id = int(device.split(":")[1]) if ":" in device else None
    if options.offload == "model":
        pipe.enable_model_cpu_offload(gpu_id=gpu_id)
    else:
        pipe.enable_sequential_cpu_offload(gpu_id=gpu_id)
    return f"{device} (offload={options.offload})"


def place_others(pipe: Any, keep: set[str], device: str) -> str:
    """Move the pipeline's components not named in ``keep`` to ``device`` (the given ones stay where
    their owner keeps them). Returns the placement."""
    import torch

    for name, module in pipe.components.items():
        if name not in keep and isinstance(module, torch.nn.Module):
            module.to(device)
    return f"{device} ({', '.join(sorted(keep))} left where they are)"


def apply_speed_options(pipe: Any, options: ModelOptions) -> dict:
    """Apply VAE tiling, a diffusers cache hook and ``torch.compile``; returns what was applied."""
    applied: dict = {}
    if options.vae_tiling:
        vae = getattr(pipe, "vae", None)
        if vae is None or not hasattr(vae, "enable_tiling"):
            raise UsageError("vae_tiling: this model's VAE has no tiling support; drop --vae-tiling")
        vae.enable_tiling()
        applied["vae_tiling"] = True
    if caches.apply_cache(pipe, options.cache):
        applied["cache"] = options.cache
    if options.compile:
        for name in ("transformer", "transformer_2"):
            module = getattr(pipe, name, None)
            if module is not None:
                module.compile()  # nn.Module.compile: torch.compile in place, the component stays the same
        applied["compile"] = True
    return applied


GIVEN = ("transformer", "vae", "text_encoder", "tokenizer")  # components a caller may give a backend


def check_given(options: ModelOptions, given: dict) -> None:
    """``UsageError`` for a component a backend cannot be given, or an option that would change a given
    transformer for its owner (``WanBackend.with_components``)."""
    unknown = sorted(set(given) - set(GIVEN))
    if unknown:
        raise UsageError(f"unknown component(s) {', '.join(unknown)}; give {', '.join(GIVEN)}")
    if options.offload != "none" and any(v is not None for v in given.values()):
        raise UsageError("given components stay where they are: offload not available")
    if given.get("transformer") is None:
        return
    refused = [
        name
        for name, on in (
            ("cache", options.cache != "none"),
            ("compile", options.compile),
            ("lora_fuse", options.lora_fuse),
            ("lora_scale", options.lora_scale != 1.0),
        )
        if on
    ]
    if refused:
        raise UsageError(f"a given transformer is used as it is: {', '.join(refused)} not available")


def signature(modules: dict[str, Any]) -> list[tuple]:
    """Every parameter and buffer of ``modules``: (component, name, identity, dtype, device); equal
    before and after loading a pipeline around them when nothing cast, moved or replaced them."""
    out = []
    for key, module in sorted(modules.items()):
        if hasattr(module, "named_parameters"):
            tensors = [*module.named_parameters(), *module.named_buffers()]
            out += [(key, n, id(t), t.dtype, t.device) for n, t in tensors]
    return out
