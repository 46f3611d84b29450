"""Block swap: the frozen weights of some transformer blocks rest in CPU memory during training.

For each swapped block, every frozen tensor (``requires_grad=False`` parameters and buffers: the base
weights, not the LoRA / adapter weights the optimizer holds) is kept as a CPU copy (pinned when the
training device is CUDA, so the copy is asynchronous). A forward pre-hook puts a device copy of each into
the block's parameter / buffer dict; the forward hook puts the CPU copy back. The device copy is a new
tensor object, never the resting parameter changed in place, so anything autograd saved from the
forward still holds the device tensor after the block has been put back to rest, and the device copy is
freed as soon as nothing uses it. Trainable tensors are never touched: they stay on the device and keep
their identity.

With gradient checkpointing the backward pass recomputes each block (calling it again: the hooks bring
its weights back for the recomputation, and the recomputed saved tensors keep them alive only until the
block's backward is done). Recomputation may stop early (torch's non-reentrant checkpoint stops once
the last tensor the backward needs is recomputed), so the forward hook does not always run: every
pre-hook first puts the other swapped blocks back to rest, and :meth:`BlockSwap.offload` puts all of
them back (the training model calls it after each backward pass). Without gradient checkpointing
autograd keeps every block's device weights in the graph until the backward pass and nothing is saved,
so :func:`enable` refuses it.

Cost: one host-to-device copy of the swapped blocks' frozen weights per forward and one per
recomputation (docs/finetune.md, memory levers).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ipvgkit.errors import UsageError


def swapped_indices(num_blocks: int, n: int) -> list[int]:
    """The indices of the ``n`` swapped blocks among ``num_blocks``: the last ``n`` (declared here only)."""
    if n < 0 or n > num_blocks:
        raise UsageError(
            f"memory.block_swap={n}: the transformer has {num_blocks} blocks (use 0..{num_blocks})"
        )
    return list(range(num_blocks - n, num_blocks))


def _rest_copy(t: torch.Tensor, pin: bool) -> torch.Tensor:
    """A CPU copy of ``t``, pinned for asynchronous copies to CUDA; a tensor subclass (torchao's
    quantised weights) is copied by its own ``to`` and not pinned (its copies are synchronous)."""
    if type(t) is torch.Tensor and t.layout == torch.strided:
        return torch.empty(t.shape, dtype=t.dtype, device="cpu", pin_memory=pin).copy_(t)
    return t.to("cpu", copy=True)


class _Resting:
    """One block's frozen tensors: (owner module, dict name, key, CPU copy)."""

    def __init__(self, block: torch.nn.Module, pin: bool):
        self.entries: list[tuple[torch.nn.Module, str, str, torch.Tensor]] = []
        for module in block.modules():
            for kind in ("_parameters", "_buffers"):
                store = getattr(module, kind)
                for key, t in list(store.items()):
                    if t is None or t.requires_grad:
                        continue  # trainable: stays on the device, same object
                    cpu = _rest_copy(t.detach(), pin)
                    if kind == "_parameters":
                        cpu = torch.nn.Parameter(cpu, requires_grad=False)
                    store[key] = cpu
                    self.entries.append((module, kind, key, cpu))
        self.nbytes = sum(c.numel() * c.element_size() for *_, c in self.entries)
        self.resident = False

    def load(self, device: torch.device) -> None:
        for module, kind, key, cpu in self.entries:
            dev = cpu.to(device, non_blocking=True, copy=True)
            getattr(module, kind)[key] = (
                torch.nn.Parameter(dev, requires_grad=False) if kind == "_parameters" else dev
            )
        self.resident = True

    def rest(self) -> None:
        for module, kind, key, cpu in self.entries:
            getattr(module, kind)[key] = cpu
        self.resident = False


class BlockSwap:
    """Hooks that keep the frozen tensors of ``blocks[i]`` (``i`` in ``indices``) at rest on the CPU
    and bring them to ``device`` for each call of the block (module docstring)."""

    def __init__(self, blocks: Sequence[torch.nn.Module], indices: Sequence[int], device: str | torch.device):
        self.device = torch.device(device)
        self.num_blocks = len(blocks)
        self.indices = list(indices)
        pin = self.device.type == "cuda"
        self.resting: dict[int, _Resting] = {}
        self.handles: list[Any] = []
        self.loads = 0  # block visits to the device (forwards + recomputations)
        for i in self.indices:
            self.resting[i] = _Resting(blocks[i], pin)
            self.handles.append(blocks[i].register_forward_pre_hook(self._pre_hook(i)))
            self.handles.append(blocks[i].register_forward_hook(self._post_hook(i)))
        if pin:
            torch.cuda.empty_cache()  # the device copies made at load time are gone

    @property
    def nbytes(self) -> int:
        """Bytes of frozen weights resting on the CPU."""
        return sum(r.nbytes for r in self.resting.values())

    def _pre_hook(self, i: int):
        def hook(module: torch.nn.Module, args: Any) -> None:
            for j, r in self.resting.items():  # a stopped recomputation left j on the device
                if j != i and r.resident:
                    r.rest()
            self.resting[i].load(self.device)
            self.loads += 1

        return hook

    def _post_hook(self, i: int):
        def hook(module: torch.nn.Module, args: Any, output: Any) -> None:
            self.resting[i].rest()

        return hook

    def offload(self) -> None:
        """Put every swapped block back to rest (after a backward pass)."""
        for r in self.resting.values():
            if r.resident:
                r.rest()

    def remove(self) -> None:
        """Remove the hooks; the swapped blocks' frozen weights go back to the device for good."""
        for h in self.handles:
            h.remove()
        self.handles = []
        for r in self.resting.values():
            r.load(self.device)
        self.resting = {}

    def summary(self) -> str:
        where = "pinned CPU memory" if self.device.type == "cuda" else "CPU memory"
        text = (
            f"block swap: the frozen weights of the last {len(self.indices)} of {self.num_blocks} blocks "
            f"({_size(self.nbytes)}) rest in {where} and are copied to {self.device} for each "
            "forward and recomputation"
        )
        if self.device.type == "cpu":
            text += " (a CPU run: CPU-to-CPU copies, nothing is saved)"
        return text


def _size(nbytes: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.2f} {unit}"
    return f"{nbytes} B"


def enable(transformer: torch.nn.Module, n: int, device: str | torch.device) -> BlockSwap:
    """Swap the last ``n`` of ``transformer.blocks`` (needs gradient checkpointing on)."""
    blocks = transformer.blocks
    indices = swapped_indices(len(blocks), n)
    if n and not getattr(transformer, "is_gradient_checkpointing", False):
        raise UsageError(
            "memory.block_swap needs gradient_checkpointing: true (without it autograd keeps every "
            "block's device weights until the backward pass and nothing is saved)"
        )
    return BlockSwap(blocks, indices, device)
