"""What diffusers' context parallelism needs of a Wan model, checked before any weights are read:
a context-parallel plan for the transformer class, a head count and a video token count divisible by
the group size. (Enabling it needs a process group on GPUs: not testable on this CPU-only machine.)"""

from __future__ import annotations

import pytest

from ipvgkit.models import ModelOptions, load_backend
from ipvgkit.models.context_parallel import token_problems, transformer_problems
from tests.models.conftest import request


def test_tiny_wan_splits_over_its_head_count_only(models_dir):
    backend = load_backend(ModelOptions(model="tiny-wan", models_dir=models_dir))
    assert transformer_problems(backend.resolved, 2) == []  # 2 heads
    (problem,) = transformer_problems(backend.resolved, 3)
    assert "has 2 attention heads, not divisible by 3" in problem and "use one of 2" in problem


def test_vace_has_no_context_parallel_plan(models_dir):
    backend = load_backend(ModelOptions(model="tiny-wan-vace", models_dir=models_dir))
    (problem,) = backend.set_context_parallel(2, 2)
    assert "no context-parallel plan for WanVACETransformer3DModel" in problem


def test_video_tokens_must_split_evenly():
    # 9 frames -> 3 latent frames; 32x32 / 16 -> 4 tokens per frame: 12 tokens
    assert token_problems(2, 9, 32, 32, 16) == [] and token_problems(4, 9, 32, 32, 16) == []
    (problem,) = token_problems(8, 9, 32, 32, 16)
    assert "12 video tokens (32x32, 9 frames) do not split evenly over 8 ranks" in problem
    assert token_problems(8, 9, 32, 32, 16, lead=1) == []  # a reference latent frame: 16 tokens


def test_the_backend_checks_each_request_once_context_parallelism_is_set(models_dir):
    backend = load_backend(ModelOptions(model="tiny-wan", identity="none", models_dir=models_dir))
    odd = request(height=32, width=48)  # 3 x 6 tokens
    assert backend.problems(odd) == []
    assert backend.set_context_parallel(2, 4) == []
    assert backend.problems(odd) == [] and backend.describe()["context_parallel"] == 2
    backend.set_context_parallel(4, 4)
    assert any("18 video tokens" in p for p in backend.problems(odd))


def torchrun(*args: str, n: int = 2) -> None:
    """``torchrun --standalone --nproc_per_node n tests/support/cp_worker.py ARGS`` (gloo on the CPU)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(root / "src"), str(root)]))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}"]
    proc = subprocess.run(
        [*cmd, str(root / "tests/support/cp_worker.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
def test_a_transformer_split_over_two_ranks_matches_one_process(models_dir, tmp_path):
    """diffusers' real split on gloo: each rank holds 6 of the 12 video tokens; the timeline processor
    must find the frames of rank 1's tokens from their offset (its token 6 is in latent frame 1, not 0)."""
    import numpy as np

    from tests.support.cp_worker import outputs

    # tiny-wan written once before the ranks read it
    whole = load_backend(ModelOptions(model="tiny-wan", identity="none", device="cpu", models_dir=models_dir))
    torchrun("split", str(models_dir), str(tmp_path / "split.npz"))
    split = dict(np.load(tmp_path / "split.npz"))
    single = outputs(whole)
    for mode in ("masked", "soft", "prompt"):
        key = f"t_{mode}"
        assert split[key].shape == single[key].shape == (1, 16, 3, 4, 4)
        np.testing.assert_allclose(split[key], single[key], rtol=0, atol=1e-6, err_msg=mode)
    # the modes differ by far more than that tolerance: a wrong frame per token would show
    assert np.abs(single["t_masked"] - single["t_prompt"]).max() > 1e-4
    assert np.abs(single["t_masked"] - single["t_soft"]).max() > 1e-4
    assert split["video"].shape == (9, 32, 32, 3)
    assert int(np.abs(split["video"].astype(int) - single["video"].astype(int)).max()) <= 1


@pytest.mark.slow
def test_two_groups_of_two_ranks_split_on_their_own(models_dir, tmp_path):
    """4 ranks, --context-parallel 2: the ``(2, 1, 2)`` mesh; each group's result is one process's."""
    import numpy as np

    from tests.support.cp_worker import outputs

    whole = load_backend(ModelOptions(model="tiny-wan", identity="none", device="cpu", models_dir=models_dir))
    torchrun("split", str(models_dir), str(tmp_path / "split.npz"), "2", n=4)
    single = outputs(whole)
    for name in ("split.npz", "split.rank2.npz"):
        found = dict(np.load(tmp_path / name))
        for mode in ("masked", "soft", "prompt"):
            np.testing.assert_allclose(
                found[f"t_{mode}"], single[f"t_{mode}"], rtol=0, atol=1e-6, err_msg=name
            )
