"""``ipvg generate --context-parallel N``: every refusal is one exit-2 line before any weights are
loaded (nothing is written to --out), and the choice is recorded in the resolved config."""

from __future__ import annotations

import pytest
import torch
import yaml
from typer.testing import CliRunner

from ipvgkit.cli.app import app
from tests.cli.test_generate import SMALL
from tests.stages.test_generate import write_testset_b, write_testset_c

runner = CliRunner()
TWO_RANKS = {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}


def invoke(args, tmp_path, env=None):
    models = tmp_path / "models"
    return runner.invoke(app, ["generate", *args, "--models-dir", str(models), "--quiet"], env=env)


def one_refusal(r, out, needle: str) -> str:
    assert r.exit_code == 2, r.output
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert not out.exists()
    return lines[0]


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        (None, "WORLD_SIZE 1 is not divisible by 2"),
        ({"RANK": "0", "WORLD_SIZE": "3", "LOCAL_RANK": "0"}, "WORLD_SIZE 3 is not divisible by 2"),
    ],
)
def test_a_world_size_not_divisible_is_refused(tmp_path, env, needle):
    cases, out = write_testset_b(tmp_path / "ts"), tmp_path / "out"
    args = ["--track", "1", "--cases", str(cases), *SMALL, "--out", str(out), "--context-parallel", "2"]
    line = one_refusal(invoke(args, tmp_path, env), out, needle)
    assert "torchrun --nproc_per_node 2" in line


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal of a machine without a GPU")
def test_without_a_gpu_it_is_refused_naming_the_device_mesh(tmp_path):
    cases, out = write_testset_b(tmp_path / "ts"), tmp_path / "out"
    args = ["--track", "1", "--cases", str(cases), *SMALL, "--out", str(out), "--context-parallel", "2"]
    line = one_refusal(invoke(args, tmp_path, TWO_RANKS), out, "context parallelism needs 2 GPUs")
    assert "diffusers' device mesh" in line
    assert not (tmp_path / "models").exists()  # refused before the model was looked at


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--offload", "model"], "--context-parallel 2 with --offload model"),
        (["--cache", "first-block"], "--context-parallel 2 with --cache first-block"),
    ],
)
def test_what_cannot_run_split_is_refused(tmp_path, extra, needle):
    cases, out = write_testset_c(tmp_path / "ts", n=2), tmp_path / "out"
    args = ["--track", "2", "--cases", str(cases), *SMALL, "--out", str(out), "--context-parallel", "2"]
    one_refusal(invoke([*args, *extra], tmp_path, TWO_RANKS), out, needle)


@pytest.mark.skipif(torch.cuda.is_available(), reason="stops at the refusal of a machine without a GPU")
@pytest.mark.parametrize("mode", ["masked", "soft", "prompt"])
def test_track_2_timelines_are_not_refused_in_any_mode(tmp_path, mode):
    """The timeline processor works split (tests/models/test_context_parallel.py): a Track 2 run gets
    past every setting refusal to the one of this CPU-only machine."""
    cases, out = write_testset_c(tmp_path / "ts", n=2), tmp_path / "out"
    args = ["--track", "2", "--cases", str(cases), *SMALL, "--out", str(out), "--context-parallel", "2"]
    one_refusal(invoke([*args, "--timeline-mode", mode], tmp_path, TWO_RANKS), out, "needs 2 GPUs")


def test_zero_is_a_usage_error(tmp_path):
    cases, out = write_testset_b(tmp_path / "ts"), tmp_path / "out"
    r = invoke(
        ["--track", "1", "--cases", str(cases), *SMALL, "--out", str(out), "--context-parallel", "0"],
        tmp_path,
    )
    assert r.exit_code == 2 and not out.exists()


@pytest.mark.slow
def test_the_choice_is_recorded_in_the_resolved_config(tmp_path):
    cases, out = write_testset_b(tmp_path / "ts", n=1), tmp_path / "out"
    r = invoke(
        ["--track", "1", "--cases", str(cases), *SMALL, "--out", str(out), "--context-parallel", "1"],
        tmp_path,
    )
    assert r.exit_code == 0, r.output
    saved = yaml.safe_load((out / "generate.yaml").read_text())
    assert saved["context_parallel"] == 1
    assert (out / "1.mp4").is_file()
