"""LoRA adapters: ``--lora PATH[:SCALE][:EXPERTS]`` (repeatable), loaded with ``pipe.load_lora_weights``.

* ``PATH``: a ``.safetensors`` file or a folder holding ``pytorch_lora_weights.safetensors`` (or one
  ``.safetensors`` file). Any key layout diffusers' Wan loader converts works: diffusers/peft
  (``transformer.blocks.N.attn1.to_q.lora_A.weight``), the original Wan / lightx2v / ComfyUI layout
  (``diffusion_model.blocks.N.self_attn.q.lora_down.weight`` + ``.alpha``, ``.diff_b``) and musubi's
  (``lora_unet_...``).
* ``SCALE``: this LoRA's strength (default ``ModelOptions.lora_scale``, i.e. ``--lora-scale``, 1.0);
  0 gives exactly the base model.
* ``EXPERTS`` (Wan 2.2 A14B, two experts): ``both`` (default), ``high`` (``transformer``, the high-noise
  expert) or ``low`` (``transformer_2``, the low-noise expert). Published step-distilled LoRAs for A14B
  come as one file per expert: ``--lora high.safetensors:1:high --lora low.safetensors:1:low``.
  A one-expert model takes ``both`` or ``high``.

``ModelOptions.lora_fuse`` (``--lora-fuse``) merges the weighted LoRAs into the base weights after loading
and removes the LoRA layers (faster steps; the output equals the unfused one up to float rounding).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from ipvgkit.errors import InputError, UsageError

LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"


class Experts(StrEnum):
    """Which Wan 2.2 expert(s) a LoRA goes into."""

    both = "both"
    high = "high"
    low = "low"


EXPERT_COMPONENTS = {
    Experts.both: ("transformer", "transformer_2"),
    Experts.high: ("transformer",),
    Experts.low: ("transformer_2",),
}


@dataclass(frozen=True)
class LoraSpec:
    """One ``--lora`` value, parsed; ``scale`` None means ``ModelOptions.lora_scale``."""

    path: Path
    scale: float | None = None
    experts: Experts = Experts.both

    def describe(self, default_scale: float) -> dict:
        scale = default_scale if self.scale is None else self.scale
        return {"path": str(self.path), "scale": scale, "experts": str(self.experts)}


def parse_spec(spec: str | Path) -> LoraSpec:
    """``PATH[:SCALE][:EXPERTS]`` → :class:`LoraSpec`; ``UsageError`` for a bad scale or expert name.

    The suffixes are read from the right, only when they look like a scale/expert name, so a path that
    contains ``:`` elsewhere still works (``--lora ./a:b/lora.safetensors``)."""
    text = str(spec)
    experts = Experts.both
    scale: float | None = None
    head, sep, tail = text.rpartition(":")
    if sep and tail in Experts.__members__:
        experts, text = Experts(tail), head
        head, sep, tail = text.rpartition(":")
    if sep and _is_number(tail):
        scale, text = float(tail), head
        if scale < 0:
            raise UsageError(f"--lora {spec}: the scale must be >= 0, got {scale:g}")
    elif sep and tail and not any(c in tail for c in "./\\"):  # a word, not part of a path: a typo
        raise UsageError(
            f"--lora {spec}: {tail!r} is neither a scale (a number) nor an expert "
            f"({', '.join(Experts.__members__)}); the form is PATH[:SCALE][:EXPERTS]"
        )
    if not text:
        raise UsageError(f"--lora {spec}: no path; the form is PATH[:SCALE][:EXPERTS]")
    return LoraSpec(Path(text).expanduser(), scale, experts)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def lora_file(path: Path) -> Path:
    """The ``.safetensors`` file of a LoRA given as a folder or a file; ``InputError`` when absent."""
    path = Path(path).expanduser()
    if path.is_dir():
        default = path / LORA_WEIGHT_NAME
        if default.is_file():
            return default
        found = sorted(path.glob("*.safetensors"))
        if len(found) == 1:
            return found[0]
        what = (
            "no .safetensors file"
            if not found
            else f"several .safetensors files ({', '.join(f.name for f in found)})"
        )
        raise InputError(f"LoRA folder {path} has {what}; expected {LORA_WEIGHT_NAME}")
    if path.is_file():
        if path.suffix != ".safetensors":
            raise InputError(f"LoRA file {path} is not a .safetensors file")
        return path
    raise InputError(f"LoRA not found: {path}")


def resolve_specs(specs: Sequence[str | Path], two_experts: bool) -> list[LoraSpec]:
    """Parse every ``--lora`` and find its file; ``UsageError`` for ``low`` on a one-expert model."""
    out = []
    for raw in specs:
        spec = parse_spec(raw)
        if spec.experts == Experts.low and not two_experts:
            raise UsageError(
                f"--lora {raw}: ':low' targets transformer_2, which this model does not have "
                "(only Wan 2.2 A14B has two experts); drop ':low'"
            )
        out.append(LoraSpec(lora_file(spec.path), spec.scale, spec.experts))
    return out


def load_loras(pipe: Any, specs: Sequence[LoraSpec], default_scale: float, fuse: bool = False) -> list[str]:
    """Load every LoRA into the experts it targets as adapters ``ipvg_lora_0``, ..., each with its own
    scale; with ``fuse`` merge them into the weights and drop the LoRA layers. Returns the adapter names."""
    weights: dict[str, tuple[list[str], list[float]]] = {}
    names = []
    for i, spec in enumerate(specs):
        name = f"ipvg_lora_{i}"
        names.append(name)
        scale = float(default_scale if spec.scale is None else spec.scale)
        for component in EXPERT_COMPONENTS[spec.experts]:
            if getattr(pipe, component, None) is None:
                continue
            extra = {"load_into_transformer_2": True} if component == "transformer_2" else {}
            pipe.load_lora_weights(
                str(spec.path.parent), weight_name=spec.path.name, adapter_name=name, **extra
            )
            adapters, scales = weights.setdefault(component, ([], []))
            adapters.append(name)
            scales.append(scale)
    for component, (adapters, scales) in weights.items():
        getattr(pipe, component).set_adapters(adapters, weights=scales)
    if fuse and weights:
        pipe.fuse_lora(components=list(weights), lora_scale=1.0)
        pipe.unload_lora_weights()  # the LoRA layers go, the fused weights stay
    return names
