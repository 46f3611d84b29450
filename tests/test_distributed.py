"""Rank/world size from the launcher's environment, ``--shard K/N`` and the round-robin assignment."""

from __future__ import annotations

import pytest

from ipvgkit.distributed import (
    Shard,
    assign,
    device_for,
    env_shard,
    natural_key,
    parse_shard,
    resolve_shard,
)
from ipvgkit.errors import UsageError


@pytest.mark.parametrize(
    "text,expected", [("1/2", (1, 2)), ("2/2", (2, 2)), (" 3 / 8 ", (3, 8)), ("1/1", (1, 1))]
)
def test_parse_shard(text, expected):
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text", ["0/2", "3/2", "1/0", "2", "a/b", "-1/2", "1/2/3", "", "1.5/2"])
def test_bad_shard_is_a_usage_error(text):
    with pytest.raises(UsageError, match="--shard") as exc:
        parse_shard(text)
    assert exc.value.exit_code == 2


def test_no_environment_is_a_single_process():
    s = env_shard({})
    assert (s.rank, s.world_size, s.local_rank, s.is_distributed) == (0, 1, 0, False)


def test_torchrun_environment():
    s = env_shard({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (s.rank, s.world_size, s.local_rank, s.source) == (3, 4, 1, "env")
    assert s.label() == "share 4/4 (rank 3 of 4)"


@pytest.mark.parametrize(
    "env",
    [{"RANK": "2", "WORLD_SIZE": "2"}, {"RANK": "-1", "WORLD_SIZE": "2"}, {"RANK": "x", "WORLD_SIZE": "2"}],
)
def test_bad_environment_is_a_usage_error(env):
    with pytest.raises(UsageError):
        env_shard(env)


def test_shard_combines_with_ranks():
    assert resolve_shard("2/3", {}) == Shard(rank=1, world_size=3, local_rank=0, source="shard")
    # shard 2 of 3 of a job that runs 2 ranks: global share (2-1)*2 + 1 = 3 of 6
    s = resolve_shard("2/3", {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
    assert (s.rank, s.world_size, s.local_rank, s.source) == (3, 6, 1, "env+shard")
    assert resolve_shard("1/1", {}).is_distributed is False


def test_all_shares_partition_the_items():
    items = [str(i) for i in range(1, 12)]
    for n in (1, 2, 3, 5):
        shares = [assign(items, resolve_shard(f"{k}/{n}", {})) for k in range(1, n + 1)]
        flat = [x for s in shares for x in s]
        assert sorted(flat, key=natural_key) == sorted(items, key=natural_key)
        assert len(flat) == len(set(flat))
        assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_assignment_ignores_input_order():
    items = ["10", "2", "1", "id3/prompt1"]
    shard = Shard(rank=0, world_size=2)
    assert assign(items, shard) == assign(list(reversed(items)), shard) == ["1", "10"]


def test_natural_key_orders_numbers():
    names = ["id10/prompt1", "id2/prompt2", "id2/prompt10", "id2/prompt1", "b", "a"]
    assert sorted(names, key=natural_key) == [
        "a",
        "b",
        "id2/prompt1",
        "id2/prompt2",
        "id2/prompt10",
        "id10/prompt1",
    ]


def test_device_per_rank_on_cpu():
    import torch

    dist = Shard(rank=1, world_size=2, local_rank=1)
    assert device_for("cpu", dist) == "cpu"
    assert device_for("cuda:3", dist) == "cuda:3"
    assert device_for("auto", Shard()) == "auto"
    expected = (
        "cuda:1" if torch.cuda.device_count() > 1 else ("cuda:0" if torch.cuda.is_available() else "cpu")
    )
    assert device_for("auto", dist) == expected


def test_initialised_process_group_is_used_when_env_is_silent(tmp_path):
    import torch.distributed as dist

    if not dist.is_available():
        pytest.skip("torch.distributed is not built in")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        s = env_shard({})
        assert (s.rank, s.world_size, s.is_distributed) == (0, 1, False)
    finally:
        dist.destroy_process_group()
