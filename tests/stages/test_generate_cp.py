"""Context parallelism's planning (``--context-parallel N``): which rank runs which case, who writes,
and the refusals known before any weights are loaded. The GPU part (diffusers' device mesh, NCCL) cannot
run on a CPU-only machine; ``tests/cli/test_generate_cp.py`` checks the CPU refusal end to end."""

from __future__ import annotations

import pytest

from ipvgkit.distributed import ContextGroup, Shard, assign, context_groups
from ipvgkit.errors import UsageError
from ipvgkit.models.base import ModelOptions
from ipvgkit.progress import Recorder
from ipvgkit.stages import generate_cp
from ipvgkit.stages.generate_exec import Runner, execute
from ipvgkit.stages.generate_plan import load_entries, plan_cases
from tests.stages.test_generate import GradientBackend, cfg_for, write_testset_b

CASES = [str(i) for i in range(1, 8)]


def plan_for(world: int, size: int, shard: str | None = None) -> dict[int, tuple[list[str], bool]]:
    """rank -> (the cases it runs, whether it writes them)."""
    out = {}
    for rank in range(world):
        share, group = context_groups(Shard(rank=rank, world_size=world, local_rank=rank), size, shard)
        out[rank] = (assign(CASES, share), group.writer)
    return out


def test_eight_ranks_in_two_groups_of_four_share_the_cases_by_group():
    plan = plan_for(8, 4)
    group0, group1 = ["1", "3", "5", "7"], ["2", "4", "6"]
    assert plan == {
        0: (group0, True), 1: (group0, False), 2: (group0, False), 3: (group0, False),
        4: (group1, True), 5: (group1, False), 6: (group1, False), 7: (group1, False),
    }  # fmt: skip


def test_one_group_of_all_ranks_runs_every_case_with_rank_0_writing():
    plan = plan_for(8, 8)
    assert all(cases == CASES for cases, _ in plan.values())
    assert [rank for rank, (_, writer) in plan.items() if writer] == [0]


def test_groups_combine_with_shard_like_ranks_do():
    # --shard 2/2 of a job of 2 groups: the group shares 2 and 3 of 4
    plan = plan_for(4, 2, shard="2/2")
    assert plan[0] == (["3", "7"], True) and plan[1] == (["3", "7"], False)
    assert plan[2] == (["4"], True) and plan[3] == (["4"], False)


def test_the_group_layout_is_consecutive_ranks():
    _, group = context_groups(Shard(rank=6, world_size=8, local_rank=6), 4)
    assert group == ContextGroup(size=4, group=1, groups=2, member=2)
    assert group.ranks == [4, 5, 6, 7] and not group.writer


@pytest.mark.parametrize("world", [1, 3, 6])
def test_world_size_not_divisible_is_refused(world):
    with pytest.raises(UsageError, match=f"WORLD_SIZE {world} is not divisible by 4"):
        context_groups(Shard(rank=0, world_size=world), 4)


def test_without_context_parallelism_the_cases_are_shared_by_rank(tmp_path):
    cfg = cfg_for(tmp_path, tmp_path / "out")
    share, group = generate_cp.layout(cfg, Shard(rank=1, world_size=2, local_rank=1, source="env"))
    assert (share.rank, share.world_size, group) == (1, 2, ContextGroup())


def test_the_same_case_has_the_same_seed_on_every_member(tmp_path):
    cases = write_testset_b(tmp_path / "ts", n=5)
    cfg = cfg_for(cases, tmp_path / "out", context_parallel=2)
    entries, _ = load_entries(cfg, Recorder())
    seen = {}
    for rank in range(4):
        share, _ = generate_cp.layout(cfg, Shard(rank=rank, world_size=4, local_rank=rank, source="env"))
        mine = assign(entries, share, key=lambda e: e[0])
        plan = plan_cases(cfg, mine, tmp_path / "out", share)
        seen[rank] = [(j.case.case_id, j.request.seed) for j in plan.jobs]
    assert seen[0] == seen[1] and seen[2] == seen[3] and not set(seen[0]) & set(seen[2])
    assert len(seen[0]) + len(seen[2]) == 5


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        (dict(offload="model"), "with --offload model"),
        (dict(cache="first-block"), "with --cache first-block"),
        (dict(device="cuda:1"), "with --device cuda:1"),
    ],
)
def test_settings_that_cannot_be_split_are_refused(tmp_path, options, needle):
    cfg = cfg_for(tmp_path, tmp_path / "out", context_parallel=2)
    cfg.model_options = ModelOptions(model="gradient", **options)
    problems = generate_cp.setting_problems(cfg)
    assert len(problems) == 1 and needle in problems[0]
    cfg.context_parallel = 1
    assert generate_cp.setting_problems(cfg) == []


def test_a_backend_without_context_parallelism_is_refused(tmp_path):
    cfg = cfg_for(tmp_path, tmp_path / "out", context_parallel=2)
    with pytest.raises(UsageError, match="the gradient backend has no context parallelism"):
        generate_cp.attach(GradientBackend(), cfg, Shard(rank=0, world_size=2))


def test_the_writer_sends_each_request_before_generating_it_and_none_at_the_end(tmp_path):
    """What the group's members follow: the requests in the order the writer generates them."""
    cases = write_testset_b(tmp_path / "ts", n=3)
    out = tmp_path / "out"
    cfg = cfg_for(cases, out, background_encode=False)
    entries, _ = load_entries(cfg, Recorder())
    out.mkdir()
    jobs = plan_cases(cfg, entries, out, Shard()).jobs
    backend, sent = GradientBackend(), []

    def before(request):
        sent.append(None if request is None else (request.case_id, list(backend.generated)))

    execute(cfg, backend, jobs, Runner(out / "log.jsonl", Recorder()), "cpu", backend.describe, before)
    assert sent == [("1", []), ("2", ["1"]), ("3", ["1", "2"]), None]


@pytest.mark.slow
def test_the_writer_and_a_member_generate_the_cases_together_and_resume(tmp_path):
    """Two ranks on gloo (tests/support/cp_worker.py): rank 0 plans, claims, encodes and logs; rank 1
    follows every request; a rerun with nothing left loads, sends ``None`` and ends on both ranks."""
    import json

    from ipvgkit.models import ModelOptions, load_backend
    from ipvgkit.stages.generate import read_generation_log
    from tests.models.test_context_parallel import torchrun

    models, out = tmp_path / "models", tmp_path / "out"
    load_backend(ModelOptions(model="tiny-wan", models_dir=models))  # written once, before the ranks
    cases = write_testset_b(tmp_path / "ts", n=2)
    out.mkdir()
    torchrun("run", str(models), str(cases), str(out))
    assert sorted(p.name for p in out.glob("*.mp4")) == ["1.mp4", "2.mp4"]
    records = read_generation_log(out)
    assert (out / "generation.jsonl").is_file()
    assert sorted((r["case_id"], r["status"]) for r in records) == [("1", "ok"), ("2", "ok")]
    assert all(r["backend"]["context_parallel"] == 2 for r in records)
    assert json.loads((out / "member1.json").read_text()) == {"followed": 2}
    assert not list(out.glob("generation.rank*.jsonl"))  # the member writes no log
    torchrun("run", str(models), str(cases), str(out))
    assert json.loads((out / "member1.json").read_text()) == {"followed": 0}
