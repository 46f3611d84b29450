"""diffusers' context parallelism for the Wan transformers (``--context-parallel N``).

``transformer.enable_parallelism(config=ContextParallelConfig(ulysses_degree=N))``: the transformer's
``_cp_plan`` splits the video tokens at ``blocks.0`` (and the rotary embedding with them), keeps the text
context whole and gathers the tokens again at ``proj_out``. Each self-attention runs through diffusers'
attention dispatch: Ulysses attention exchanges heads for tokens with an all-to-all, so each rank computes
full-sequence attention for ``heads / N`` heads. Ulysses, not ring attention: the default ``native``
(PyTorch SDPA) attention backend supports Ulysses, while ring attention needs the log-sum-exp of each
partial attention, which only the flash/sage backends return (``Native attention does not support
return_lse=True``). Ulysses needs the head count and the video token count divisible by ``N``; both are
checked before any weights are loaded.

With several groups in one launch (``WORLD_SIZE = G * N``) the device mesh is ``(G, 1, N)`` named
``("group", "ring", "ulysses")``: the ranks ``g*N .. g*N+N-1`` form group ``g``
(:class:`ipvgkit.distributed.ContextGroup`).
"""

from __future__ import annotations

from typing import Any

from ipvgkit.models import frames
from ipvgkit.models.resolve import ResolvedModel

TRANSFORMERS = ("transformer", "transformer_2")


def transformer_problems(resolved: ResolvedModel, size: int) -> list[str]:
    """Why the model's transformer(s) cannot be split over ``size`` ranks (no weights read)."""
    import diffusers

    out = []
    index = resolved.model_index()
    for name in TRANSFORMERS:
        entry = index.get(name)
        if not isinstance(entry, list) or entry[0] is None:
            continue
        cls = getattr(diffusers, str(entry[1]), None)
        if cls is None or getattr(cls, "_cp_plan", None) is None:
            out.append(
                f"--context-parallel {size}: diffusers has no context-parallel plan for {entry[1]} "
                f"({resolved.name}); only WanTransformer3DModel has one"
            )
            continue
        heads = int(resolved.component_config(name).get("num_attention_heads", 0))
        if heads % size:
            fits = [n for n in range(2, heads + 1) if heads % n == 0 and n <= 16]
            out.append(
                f"--context-parallel {size}: {resolved.name}'s {name} has {heads} attention heads, not "
                f"divisible by {size} (Ulysses attention splits the heads); use one of "
                f"{', '.join(map(str, fits)) or 'none'}"
            )
    return out


def token_problems(
    size: int, num_frames: int, height: int, width: int, multiple: int, lead: int = 0
) -> list[str]:
    """Why the video tokens of one request cannot be split evenly over ``size`` ranks."""
    per_frame = (height // multiple) * (width // multiple)
    tokens = (frames.num_latent_frames(num_frames) + lead) * per_frame
    if tokens % size:
        return [
            f"--context-parallel {size}: {tokens} video tokens ({width}x{height}, {num_frames} frames) "
            f"do not split evenly over {size} ranks; choose a size whose {per_frame} tokens per latent "
            f"frame, or a frame count, divide by {size}"
        ]
    return []


def enable(pipe: Any, size: int, world_size: int) -> None:
    """Split every transformer of ``pipe`` over ``size`` ranks (the process group must be initialised)."""
    from diffusers import ContextParallelConfig

    mesh = None
    if world_size > size:  # several groups: one mesh row per group, so each group splits on its own
        import torch
        from torch.distributed.device_mesh import init_device_mesh

        mesh = init_device_mesh(
            torch._C._get_accelerator().type,
            (world_size // size, 1, size),
            mesh_dim_names=("group", "ring", "ulysses"),
        )
    for name in TRANSFORMERS:
        module = getattr(pipe, name, None)
        if module is not None:
            module.enable_parallelism(config=ContextParallelConfig(ulysses_degree=size, mesh=mesh))
