"""Which share of a batch this process owns: ``torchrun``/``accelerate`` ranks and ``--shard K/N``.

Independent generation needs no process group: every process reads its rank from the environment
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, as set by ``torchrun`` and ``accelerate launch``) and takes
a deterministic share of the work (items sorted, round-robin ``i % world == rank``). ``--shard K/N``
(1-based ``K``) does the same by hand for job arrays. Both combine: shard ``K/N`` of a job that runs
``W`` ranks is the global share ``(K-1)*W + RANK`` out of ``N*W``.

If ``torch.distributed`` is already initialised and the environment has no ``RANK``/``WORLD_SIZE``,
its rank and world size are used; nothing here initialises a process group.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from ipvgkit.errors import UsageError
from ipvgkit.fsutil import natural_key

T = TypeVar("T")

_SHARD_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Shard:
    """This process's share: ``rank`` (0-based) of ``world_size`` shares; ``local_rank`` picks the GPU."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    source: str = "single"  # single | env | shard | env+shard | torch.distributed

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    def owns(self, index: int) -> bool:
        """Round-robin: item ``index`` of the sorted list belongs to rank ``index % world_size``."""
        return index % self.world_size == self.rank

    def label(self) -> str:
        """``share K/N`` (1-based, as ``--shard K/N`` is given) and the 0-based rank a launcher sets."""
        if not self.is_distributed:
            return "single process"
        return f"share {self.rank + 1}/{self.world_size} (rank {self.rank} of {self.world_size})"


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` with 1-based ``K`` (1 <= K <= N) -> ``(K, N)``; anything else is a :class:`UsageError`."""
    m = _SHARD_RE.match(str(text))
    if not m:
        raise UsageError(f"--shard {text!r}: expected K/N with 1 <= K <= N, e.g. --shard 1/4")
    k, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 1 <= k <= n:
        raise UsageError(f"--shard {text!r}: K must be between 1 and N (1-based), e.g. --shard 1/{max(n, 1)}")
    return k, n


def _env_int(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise UsageError(f"environment variable {name}={raw!r} is not an integer") from None


def _torch_distributed() -> tuple[int, int] | None:
    """(rank, world) from an initialised ``torch.distributed`` (only if torch is already imported)."""
    dist = sys.modules.get("torch.distributed")
    if dist is None:
        return None
    try:
        if dist.is_available() and dist.is_initialized():
            return int(dist.get_rank()), int(dist.get_world_size())
    except Exception:  # noqa: BLE001 - a half-configured backend is treated as absent
        return None
    return None


def env_shard(env: Mapping[str, str] | None = None) -> Shard:
    """The rank from ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` (or an initialised process group)."""
    env = os.environ if env is None else env
    rank, world, local = _env_int(env, "RANK"), _env_int(env, "WORLD_SIZE"), _env_int(env, "LOCAL_RANK")
    if rank is None and world is None:
        from_pg = _torch_distributed()
        if from_pg is None:
            return Shard()
        rank, world = from_pg
        source = "torch.distributed"
    else:
        source = "env"
    rank = 0 if rank is None else rank
    world = 1 if world is None else world
    if world < 1 or not 0 <= rank < world:
        raise UsageError(f"RANK={rank} WORLD_SIZE={world}: need WORLD_SIZE >= 1 and 0 <= RANK < WORLD_SIZE")
    local = rank if local is None else local
    if local < 0:
        raise UsageError(f"LOCAL_RANK={local} must not be negative")
    return Shard(rank=rank, world_size=world, local_rank=local, source=source if world > 1 else "single")


def resolve_shard(shard: str | None = None, env: Mapping[str, str] | None = None) -> Shard:
    """Combine the launcher's ranks with ``--shard K/N`` into one share (see the module docstring)."""
    return combine_shard(env_shard(env), shard)


def combine_shard(base: Shard, shard: str | None) -> Shard:
    """Share ``base`` further with ``--shard K/N``: share ``(K-1)*W + rank`` of ``N*W``."""
    if not shard:
        return base
    k, n = parse_shard(shard)
    world = n * base.world_size
    rank = (k - 1) * base.world_size + base.rank
    if world == 1:
        return Shard(local_rank=base.local_rank)
    source = "env+shard" if base.is_distributed else "shard"
    return Shard(rank=rank, world_size=world, local_rank=base.local_rank, source=source)


@dataclass(frozen=True)
class ContextGroup:
    """Context parallelism's layout (``--context-parallel N``): consecutive ranks form groups of ``size``
    (ranks ``g*N .. g*N+N-1`` are group ``g``); every member of a group runs the same case, and only its
    first member (``writer``) claims, encodes and records it."""

    size: int = 1
    group: int = 0
    groups: int = 1
    member: int = 0

    @property
    def writer(self) -> bool:
        return self.member == 0

    @property
    def ranks(self) -> list[int]:
        """The global ranks of this group (its writer first)."""
        return list(range(self.group * self.size, (self.group + 1) * self.size))


def context_groups(base: Shard, size: int, shard: str | None = None) -> tuple[Shard, ContextGroup]:
    """(the share of the cases this rank's group takes, the group) for groups of ``size`` ranks out of
    ``base`` (the launcher's ranks). Cases are shared by group, not by rank: group ``g`` of ``G`` is share
    ``g`` of ``G`` (combined with ``--shard K/N`` like ranks are)."""
    if size < 1:
        raise UsageError(f"--context-parallel {size}: must be at least 1")
    if base.world_size % size:
        raise UsageError(
            f"--context-parallel {size}: WORLD_SIZE {base.world_size} is not divisible by {size} "
            f"(launch a multiple of {size} ranks, e.g. torchrun --nproc_per_node {size})"
        )
    groups = base.world_size // size
    group, member = divmod(base.rank, size)
    by_group = Shard(
        rank=group,
        world_size=groups,
        local_rank=base.local_rank,
        source=base.source if groups > 1 else "single",
    )
    return combine_shard(by_group, shard), ContextGroup(size=size, group=group, groups=groups, member=member)


def assign(items: Iterable[T], shard: Shard, key: Callable[[T], object] | None = None) -> list[T]:
    """The items this shard owns: sort by ``key`` (default: natural order of ``str(item)``), then
    round-robin. Every item goes to exactly one rank, the same one on every rank."""
    key = key or (lambda x: natural_key(str(x)))
    ordered = sorted(items, key=key)
    return [x for i, x in enumerate(ordered) if shard.owns(i)]


def device_for(requested: str, shard: Shard) -> str:
    """The device a rank should use: ``cuda:LOCAL_RANK`` for ``auto``/``cuda`` when CUDA is present
    and several ranks run; an explicit ``cuda:N`` or ``cpu`` is kept as given."""
    if requested not in ("auto", "cuda"):
        return requested
    if not shard.is_distributed and requested == "auto":
        return requested
    import torch

    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        return f"cuda:{shard.local_rank % max(count, 1)}"
    return "cpu" if requested == "auto" else requested
