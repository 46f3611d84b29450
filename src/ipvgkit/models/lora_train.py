"""Trainable LoRA adapters (peft) on a diffusers transformer, and the files they are saved as.

* :func:`inject_lora` adds a peft LoRA to the linear layers named by ``targets`` (a module name or a
  dotted suffix of one, e.g. ``to_q`` or ``attn2.to_k``); a target that matches no linear layer is an
  error listing the names that exist.
* :func:`save_diffusers_lora` writes ``pytorch_lora_weights.safetensors`` in diffusers' layout (keys
  ``transformer.blocks.N.attn1.to_q.lora_A.weight``, diffusers' ``lora_adapter_metadata`` with rank
  and alpha) so a plain ``WanPipeline.load_lora_weights(folder)`` loads it, plus our own metadata
  (``ipvg_*`` keys: training config, base model, identity method). Only tensors and strings: nothing
  in the file is ever unpickled.
* :func:`export_comfy` writes the same LoRA in the original Wan / ComfyUI layout
  (``diffusion_model.blocks.N.self_attn.q.lora_A.weight`` + ``.alpha``), the layout diffusers' own
  converter (``_convert_non_diffusers_wan_lora_to_diffusers``) reads back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import torch

from ipvgkit.errors import InputError, UsageError
from ipvgkit.fsutil import atomic_path
from ipvgkit.models.lora import LORA_WEIGHT_NAME

ADAPTER_NAME = "default"
COMFY_WEIGHT_NAME = "comfy_lora.safetensors"
METADATA_KEY = "lora_adapter_metadata"  # diffusers' LORA_ADAPTER_METADATA_KEY

# diffusers Wan module names -> original Wan (ComfyUI) names, per block
_COMFY_NAMES = {
    "attn1.to_q": "self_attn.q",
    "attn1.to_k": "self_attn.k",
    "attn1.to_v": "self_attn.v",
    "attn1.to_out.0": "self_attn.o",
    "attn2.to_q": "cross_attn.q",
    "attn2.to_k": "cross_attn.k",
    "attn2.to_v": "cross_attn.v",
    "attn2.to_out.0": "cross_attn.o",
    "attn2.add_k_proj": "cross_attn.k_img",
    "attn2.add_v_proj": "cross_attn.v_img",
    "ffn.net.0.proj": "ffn.0",
    "ffn.net.2": "ffn.2",
}


def linear_names(module: torch.nn.Module) -> list[str]:
    """The names of every ``nn.Linear`` inside ``module``."""
    return [n for n, m in module.named_modules() if isinstance(m, torch.nn.Linear)]


def _generic(name: str) -> str:
    return re.sub(r"(^|\.)\d+\.", r"\1N.", name, count=1) if name.startswith("blocks.") else name


def match_targets(module: torch.nn.Module, targets: Sequence[str]) -> list[str]:
    """The linear layers the targets name (exact name or dotted suffix); ``UsageError`` for a target
    that matches none, listing the linear layers that exist (block index written as N)."""
    if not targets:
        raise UsageError("lora.targets is empty: name at least one linear layer (e.g. to_q)")
    names = linear_names(module)
    matched: list[str] = []
    for t in targets:
        hits = [n for n in names if n == t or n.endswith("." + t)]
        if not hits:
            existing = sorted({_generic(n) for n in names})
            raise UsageError(f"LoRA target {t!r} matches no linear layer; existing: {', '.join(existing)}")
        matched.extend(h for h in hits if h not in matched)
    return matched


def inject_lora(module: torch.nn.Module, rank: int, alpha: float, targets: Sequence[str]) -> list[str]:
    """Add a trainable LoRA (A random, B zero: the output is unchanged at step 0); base weights frozen.
    Returns the adapted layer names."""
    from peft import LoraConfig

    if rank < 1:
        raise UsageError(f"lora.rank must be >= 1, got {rank}")
    layers = match_targets(module, targets)
    module.requires_grad_(False)
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=layers, init_lora_weights=True)
    module.add_adapter(config, adapter_name=ADAPTER_NAME)
    for p in module.parameters():
        if p.requires_grad:
            p.data = p.data.float()  # trainable weights in fp32 whatever the base dtype
    return layers


def trainable_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The trainable tensors by parameter name (what a checkpoint stores)."""
    return {n: p.detach().cpu().contiguous() for n, p in module.named_parameters() if p.requires_grad}


def load_trainable_state(module: torch.nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Copy a checkpoint's trainable tensors back, strictly (a missing/extra/misshaped key is an error)."""
    params = {n: p for n, p in module.named_parameters() if p.requires_grad}
    missing = sorted(set(params) - set(state))
    extra = sorted(set(state) - set(params))
    if missing or extra:
        key = (missing or extra)[0]
        raise InputError(
            f"{where}: {'missing' if missing else 'unexpected'} key {key!r} (another LoRA layout)"
        )
    with torch.no_grad():
        for n, p in params.items():
            if state[n].shape != p.shape:
                raise InputError(
                    f"{where}: key {n!r} has shape {tuple(state[n].shape)}, expected {tuple(p.shape)}"
                )
            p.copy_(state[n].to(p.dtype))


def diffusers_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The LoRA in diffusers' key layout: ``transformer.<layer>.lora_A.weight`` / ``lora_B.weight``."""
    from peft.utils import get_peft_model_state_dict

    sd = get_peft_model_state_dict(module, adapter_name=ADAPTER_NAME)
    return {f"transformer.{k}": v.detach().cpu().float().contiguous() for k, v in sd.items()}


def lora_from_full_state(full: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The diffusers-layout LoRA out of a gathered full state dict of the adapted transformer (what
    accelerate's ``get_state_dict`` returns under FSDP / DeepSpeed): peft's ``....lora_A.default.weight``."""
    tag = f".{ADAPTER_NAME}."
    return {
        "transformer." + k.replace(tag, "."): v.detach().cpu().float().contiguous()
        for k, v in full.items()
        if ".lora_A" + tag in k or ".lora_B" + tag in k
    }


def save_diffusers_lora(
    folder: Path,
    state: dict[str, torch.Tensor],
    rank: int,
    alpha: float,
    layers: Sequence[str],
    meta: dict[str, str],
) -> Path:
    """Write ``folder/pytorch_lora_weights.safetensors`` (module docstring), atomically."""
    from safetensors.torch import save_file

    adapter_meta = {
        "transformer.r": rank,
        "transformer.lora_alpha": alpha,
        "transformer.target_modules": sorted(layers),
        "transformer.lora_dropout": 0.0,
        "transformer.bias": "none",
    }
    metadata = {"format": "pt", METADATA_KEY: json.dumps(adapter_meta, indent=2, sort_keys=True), **meta}
    dest = Path(folder) / LORA_WEIGHT_NAME
    with atomic_path(dest) as tmp:
        save_file(state, str(tmp), metadata=metadata)
    return dest


def comfy_state(diffusers_sd: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """diffusers keys -> ComfyUI / original Wan keys (+ one ``.alpha`` scalar per layer)."""
    out: dict[str, torch.Tensor] = {}
    pat = re.compile(r"^transformer\.blocks\.(\d+)\.(.+)\.(lora_[AB])\.weight$")
    for key, value in diffusers_sd.items():
        m = pat.match(key)
        name = _COMFY_NAMES.get(m.group(2)) if m else None
        if name is None:
            raise UsageError(f"--export comfy: no ComfyUI name for LoRA layer {key!r}")
        base = f"diffusion_model.blocks.{m.group(1)}.{name}"
        out[f"{base}.{m.group(3)}.weight"] = value
        out[f"{base}.alpha"] = torch.tensor(float(alpha))
    return out


def export_comfy(folder: Path, state: dict[str, torch.Tensor], alpha: float, meta: dict[str, str]) -> Path:
    """Write ``folder/comfy_lora.safetensors`` in the ComfyUI layout, atomically."""
    from safetensors.torch import save_file

    dest = Path(folder) / COMFY_WEIGHT_NAME
    with atomic_path(dest) as tmp:
        save_file(comfy_state(state, alpha), str(tmp), metadata={"format": "pt", **meta})
    return dest


def read_metadata(path: Path) -> dict[str, str]:
    """The string metadata of a safetensors file (no tensor is loaded, nothing unpickled)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})
