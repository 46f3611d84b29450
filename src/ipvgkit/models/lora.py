"""LoRA adapters in diffusers format (``pytorch_lora_weights.safetensors``, keys
``transformer.blocks.N....lora_A.weight``), loaded with ``pipe.load_lora_weights`` and weighted with
``pipe.set_adapters`` (``ModelOptions.lora_scale``; 0 gives exactly the base model's output)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ipvgkit.errors import InputError

LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"


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


def load_loras(pipe: Any, paths: Sequence[Path], scale: float) -> list[str]:
    """Load every LoRA into ``pipe`` as adapters ``ipvg_lora_0``, ... all weighted ``scale``."""
    names = []
    for i, p in enumerate(paths):
        f = lora_file(p)
        name = f"ipvg_lora_{i}"
        pipe.load_lora_weights(str(f.parent), weight_name=f.name, adapter_name=name)
        names.append(name)
    if names:
        pipe.set_adapters(names, adapter_weights=[float(scale)] * len(names))
    return names
