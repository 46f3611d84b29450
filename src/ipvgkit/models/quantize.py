"""Quantised frozen base weights for training (``memory.quantize``, docs/finetune.md): torchao.

The rule, declared once (:func:`quantizable`): every **frozen** ``nn.Linear`` inside the transformer
blocks (``blocks.N...``: the self- and cross-attention projections and the feed-forward layers, the
base layers of the LoRA included) stores its weight quantised; the trainable modules (LoRA A/B, the
face adapter) never are, and the embedders (patch, text, time), the output head, the norms and the
modulation tables stay at the base dtype, as in musubi-tuner's and diffusion-pipe's fp8 modes: they
are a sliver of the weights and the most sensitive to rounding.

* ``int8``: torchao ``Int8WeightOnlyConfig`` (symmetric, one scale per output row); works on CPU.
* ``fp8``: torchao ``Float8WeightOnlyConfig`` (float8 e4m3, one scale per output row) on a CUDA GPU
  of compute capability >= 8.9 (Ada, Hopper and newer); anywhere else a one-line ``UsageError``.

Weight-only: the matmul runs in the activations' dtype with the weight dequantised on the fly, so the
backward pass computes the input gradient through the quantised weight and the LoRA parameters
(which sit beside the base layer, not inside it) get their gradients as usual.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ipvgkit.errors import MissingDependencyError, UsageError

if TYPE_CHECKING:  # torch is imported where it is used: the CLI's --help (config choices) must not
    import torch

Quantize = Literal["none", "int8", "fp8"]
QUANTIZES = ("none", "int8", "fp8")
FP8_MIN_CAPABILITY = (8, 9)
QUANTIZED_PREFIX = "blocks."  # only linears under the transformer blocks (module docstring)
INSTALL_HINT = "pip install 'ipvgkit[quant]' (torchao)"


@dataclass
class QuantReport:
    """What :func:`quantize_frozen` did: how many linears, their weight bytes before and after."""

    kind: str
    count: int
    bytes_before: int
    bytes_after: int

    def note(self) -> str:
        ratio = self.bytes_before / self.bytes_after if self.bytes_after else 0.0
        return (
            f"memory.quantize {self.kind}: {self.count} frozen linear weights of the transformer blocks, "
            f"{_size(self.bytes_before)} -> {_size(self.bytes_after)} ({ratio:.2f}x smaller)"
        )


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


def _torchao() -> Any:
    try:
        import torchao.quantization as tq
    except ImportError as exc:
        raise MissingDependencyError(f"memory.quantize needs torchao: {INSTALL_HINT} ({exc})") from None
    return tq


def check_supported(kind: str, device: torch.device, sharded: bool = False) -> None:
    """``UsageError`` for an unknown kind, a sharded run (FSDP / DeepSpeed flatten and shard plain
    tensors, not torchao's) or fp8 without a CUDA GPU of compute capability >= 8.9;
    ``MissingDependencyError`` without torchao."""
    if kind not in QUANTIZES:
        raise UsageError(f"memory.quantize must be one of {', '.join(QUANTIZES)}, got {kind!r}")
    if kind == "none":
        return
    if sharded:
        raise UsageError(
            "memory.quantize runs on unsharded runs only (DDP or one process): FSDP and DeepSpeed shard "
            "plain tensors, not torchao's quantised ones"
        )
    if kind == "fp8":
        import torch

        need = ".".join(map(str, FP8_MIN_CAPABILITY))
        if device.type != "cuda":
            raise UsageError(
                f"memory.quantize fp8 needs a CUDA GPU of compute capability >= {need}; this run's device "
                f"is {device.type} (use memory.quantize=int8)"
            )
        cap = torch.cuda.get_device_capability(device)
        if cap < FP8_MIN_CAPABILITY:
            raise UsageError(
                f"memory.quantize fp8 needs compute capability >= {need}; {torch.cuda.get_device_name(device)}"
                f" has {cap[0]}.{cap[1]} (use memory.quantize=int8)"
            )
    _torchao()


def quantizable(module: torch.nn.Module) -> list[str]:
    """The linears whose weights :func:`quantize_frozen` quantises (the rule of the module docstring):
    every ``nn.Linear`` under ``blocks.`` with no trainable parameter (LoRA A/B and the face adapter's
    layers are trainable; peft's LoRA wrapper is no ``nn.Linear``, its frozen ``base_layer`` is)."""
    import torch

    return [
        name
        for name, m in module.named_modules()
        if isinstance(m, torch.nn.Linear)
        and name.startswith(QUANTIZED_PREFIX)
        and not any(p.requires_grad for p in m.parameters())
    ]


def weight_bytes(t: torch.Tensor) -> int:
    """Storage bytes of a weight: a plain tensor's, or the sum of a torchao tensor's inner tensors
    (quantised data + scales)."""
    import torch

    flatten = getattr(type(t), "__tensor_flatten__", None)
    if flatten is not None and type(t) is not torch.Tensor and type(t) is not torch.nn.Parameter:
        names, _ = t.__tensor_flatten__()
        return sum(weight_bytes(getattr(t, n)) for n in names if getattr(t, n) is not None)
    return t.numel() * t.element_size()


def quantize_frozen(module: torch.nn.Module, kind: str, device: torch.device) -> QuantReport:
    """Quantise the weights of :func:`quantizable` in place (torchao ``quantize_``); call after the
    LoRA and face adapter are attached, with the module on ``device``."""
    import torch

    check_supported(kind, device)
    if kind == "none":
        return QuantReport(kind, 0, 0, 0)
    tq = _torchao()
    names = set(quantizable(module))
    if not names:
        raise UsageError("memory.quantize: the transformer has no frozen linear layer under blocks.")
    lookup = dict(module.named_modules())
    before = sum(weight_bytes(lookup[n].weight) for n in names)
    config = (
        tq.Int8WeightOnlyConfig(set_inductor_config=False)
        if kind == "int8"
        else tq.Float8WeightOnlyConfig(set_inductor_config=False)
    )
    ids = {id(lookup[n]) for n in names}
    tq.quantize_(module, config, filter_fn=lambda m, _fqn: id(m) in ids)
    # DDP broadcasts every parameter from rank 0 when it wraps the module, which torchao's tensors do
    # not support; every rank loaded and quantised the same frozen weights, so they need no broadcast
    ignore = list(getattr(module, "_ddp_params_and_buffers_to_ignore", []))
    torch.nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
        module, ignore + [f"{n}.weight" for n in sorted(names)]
    )
    after = sum(weight_bytes(lookup[n].weight) for n in names)
    return QuantReport(kind, len(names), before, after)
