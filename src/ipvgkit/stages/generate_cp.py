"""Context parallelism in ``ipvg generate`` (``--context-parallel N``): one video on N GPUs at once.

The default multi-GPU run is data parallel: each rank generates its own share of the cases (throughput).
With ``--context-parallel N`` under ``torchrun`` (``WORLD_SIZE`` a multiple of N) the ranks form groups
of N consecutive ranks (:func:`ipvgkit.distributed.context_groups`); the cases are shared by group, and
every rank of a group runs the same case with the same seed, its transformer splitting the video tokens
with the others (:mod:`ipvgkit.models.context_parallel`): the latency of one video drops. Only the
group's first rank (the writer) claims the case, encodes the video and writes the log line; it sends each
request it is about to generate to the other members (a broadcast in the group), and ``None`` when it is
done, so the members follow its decisions (resume, claims held by other processes) exactly.

Refused before any weights are loaded (usage errors): a world size not divisible by N, ``--offload``,
``--cache``, an explicit ``--device cuda:N``, and a machine without a GPU per rank. Track 2 timelines
work in every mode: the timeline processor finds each token's frame from the rank's token offset
(:func:`ipvgkit.models.timeline_attn.token_offset`).
"""

from __future__ import annotations

from typing import Any

from ipvgkit.distributed import ContextGroup, Shard, combine_shard, context_groups
from ipvgkit.errors import IpvgError, UsageError
from ipvgkit.models.base import GenerationRequest
from ipvgkit.progress import Progress
from ipvgkit.stages.generate_types import GenerateConfig


def layout(cfg: GenerateConfig, base: Shard) -> tuple[Shard, ContextGroup]:
    """(this rank's share of the cases, its context-parallel group); one group per rank without CP."""
    if int(cfg.context_parallel) <= 1:
        return combine_shard(base, cfg.shard), ContextGroup()
    return context_groups(base, int(cfg.context_parallel), cfg.shard)


def setting_problems(cfg: GenerateConfig) -> list[str]:
    """The settings context parallelism cannot run with (none when it is off)."""
    n, mo = int(cfg.context_parallel), cfg.model_options
    if n <= 1:
        return []
    out = []
    if str(mo.offload) != "none":
        out.append(
            f"--context-parallel {n} with --offload {mo.offload}: offloading moves the transformer off the "
            "GPU between uses, while context parallelism keeps a whole copy on each of the N GPUs for "
            "latency; drop --offload"
        )
    if str(mo.cache) != "none":
        out.append(
            f"--context-parallel {n} with --cache {mo.cache}: diffusers' cache hooks decide what to skip on "
            "each rank from that rank's slice of the tokens, so the ranks of a group could disagree and "
            "stall each other; drop --cache"
        )
    if str(mo.device) not in ("auto", "cuda"):
        out.append(
            f"--context-parallel {n} with --device {mo.device}: each rank uses cuda:LOCAL_RANK; drop --device"
        )
    return out


def require_gpus(cfg: GenerateConfig, base: Shard) -> None:
    """A usage error unless every rank has a CUDA GPU of its own."""
    n = int(cfg.context_parallel)
    if n <= 1:
        return
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise UsageError(
            f"context parallelism needs {n} GPUs; diffusers' device mesh is built on the accelerator "
            "(torch.accelerator.device_count() is 0 here): run on a machine with GPUs, or drop "
            "--context-parallel (several processes then share the cases)"
        )
    if base.local_rank >= count:
        raise UsageError(
            f"--context-parallel {n}: LOCAL_RANK {base.local_rank} has no GPU of its own ({count} visible); "
            "launch at most one rank per GPU"
        )


def check(cfg: GenerateConfig, base: Shard) -> None:
    """Every refusal of context parallelism, as one usage error, before any weights are loaded."""
    problems = setting_problems(cfg)
    if problems:
        raise UsageError("; ".join(problems))
    require_gpus(cfg, base)


def attach(backend: Any, cfg: GenerateConfig, base: Shard) -> None:
    """Tell the backend to split its transformer over the group (``set_context_parallel``)."""
    n = int(cfg.context_parallel)
    setter = getattr(backend, "set_context_parallel", None)
    if not callable(setter):
        raise UsageError(f"--context-parallel {n}: the {backend.name} backend has no context parallelism")
    problems = setter(n, base.world_size)
    if problems:
        raise UsageError("; ".join(problems))


class GroupLink:
    """The writer-to-members channel of one group: a ``torch.distributed`` process group per group (NCCL
    on GPUs; gloo on a CPU, which only the tests use)."""

    def __init__(self, group: ContextGroup, device: str):
        import torch
        import torch.distributed as dist

        self.dist = dist
        self.device = torch.device(device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if not dist.is_initialized():  # gloo on a CPU: only the tests get here (run_generation refuses)
            on_gpu = self.device.type == "cuda"
            dist.init_process_group("nccl" if on_gpu else "gloo", device_id=self.device if on_gpu else None)
        self.group, _ = dist.new_subgroups(group_size=group.size)  # every rank, every group, same order
        self.src = group.ranks[0]

    def send(self, request: GenerationRequest | None) -> None:
        """The writer: the request it generates next (``None``: it is done)."""
        self.dist.broadcast_object_list([request], src=self.src, group=self.group, device=self.device)

    def receive(self) -> GenerationRequest | None:
        box: list[Any] = [None]
        self.dist.broadcast_object_list(box, src=self.src, group=self.group, device=self.device)
        return box[0]


def follow(backend: Any, link: GroupLink, group: ContextGroup, progress: Progress) -> int:
    """A member (not the writer): generate each request the writer sends, until it sends ``None``; the
    frames are dropped (the writer encodes them). Returns the number of videos it took part in."""
    progress.log(
        f"context-parallel group {group.group + 1}/{group.groups}: member {group.member + 1} of "
        f"{group.size}; the group's first rank ({group.ranks[0]}) writes the videos and the log"
    )
    done = 0
    while (request := link.receive()) is not None:
        progress.status(f"generating {request.case_id} (member {group.member + 1}/{group.size})")
        try:
            backend.generate(request)
        except (IpvgError, RuntimeError, ValueError) as exc:  # the writer records the case's failure
            progress.log(f"case {request.case_id}: failed on member {group.member + 1}: {exc}")
        done += 1
    return done
