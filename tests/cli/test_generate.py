"""``ipvg generate`` end to end with the built-in ``tiny-wan`` model: outputs, resume, failures,
usage errors, config precedence, shards and ranks (as torchrun sets them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ipvgkit.cli.app import app
from ipvgkit.media import probe_video, read_video
from ipvgkit.stages.generate import derive_seed, read_generation_log
from tests.stages.test_generate import write_testset_b, write_testset_c

runner = CliRunner()
SMALL = [
    "--model",
    "tiny-wan",
    "--identity",
    "none",
    "--frames",
    "9",
    "--height",
    "32",
    "--width",
    "32",
    "--steps",
    "2",
]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    """One models folder per module: tiny-wan is written there once and loaded by every test."""
    return tmp_path_factory.mktemp("models")


def invoke(args: list[str], models_dir: Path):
    return runner.invoke(app, ["generate", *args, "--models-dir", str(models_dir), "--quiet"])


def mtimes(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(out.glob("*.mp4"))}


@pytest.mark.slow
def test_track2_writes_one_h264_video_per_case_and_a_rerun_skips_them(tmp_path, models_dir):
    cases = write_testset_c(tmp_path / "ts", n=2)
    out = tmp_path / "out"
    args = ["--track", "2", "--cases", str(cases), *SMALL, "--out", str(out)]
    r = invoke(args, models_dir)
    assert r.exit_code == 0, r.output
    assert "done" in r.output and "skipped" in r.output
    for name in ("1.mp4", "2.mp4"):
        info = probe_video(out / name, decode_check=True, count_frames=True)
        assert (info.codec, info.n_frames, info.width, info.height, info.pix_fmt) == (
            "h264",
            9,
            32,
            32,
            "yuv420p",
        )
    before = mtimes(out)
    saved = yaml.safe_load((out / "generate.yaml").read_text())
    assert (saved["track"], saved["steps"], saved["frames"], saved["model_options"]["model"]) == (
        2,
        2,
        9,
        "tiny-wan",
    )

    r = invoke(args, models_dir)
    assert r.exit_code == 0, r.output
    assert mtimes(out) == before
    statuses = [(x["case_id"], x["status"]) for x in read_generation_log(out)]
    assert statuses == [("1", "ok"), ("2", "ok"), ("1", "skipped"), ("2", "skipped")]
    rec = read_generation_log(out)[0]
    assert rec["seed"] == derive_seed(0, "1") and rec["settings"]["model"] == "tiny-wan"


def test_missing_reference_fails_alone_with_exit_1_and_a_summary(tmp_path, models_dir):
    cases = write_testset_c(tmp_path / "ts", n=3, missing={2})
    out = tmp_path / "out"
    r = invoke(["--track", "2", "--cases", str(cases), *SMALL, "--out", str(out)], models_dir)
    assert r.exit_code == 1, r.output
    assert (out / "1.mp4").is_file() and (out / "3.mp4").is_file() and not (out / "2.mp4").exists()
    assert "failed" in r.output and "1 of 3 case(s) failed" in r.output
    assert "case 2" in r.output and "id2.png" in r.output


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--frames", "10"], "4k+1"),
        (["--height", "30"], "multiple of 16"),
        (["--steps", "0"], "steps must be at least 1"),
        (["--device", "tpu"], "unknown device 'tpu'"),
    ],
)
def test_request_level_problems_are_one_usage_line_before_any_model(tmp_path, extra, needle):
    """Issue 8 item 3: one exit-2 line, not one failure per case; the model (here one that does not
    exist) is never looked at."""
    cases = write_testset_b(tmp_path / "ts", n=3)
    out = tmp_path / "out"
    args = ["--track", "1", "--cases", str(cases), *SMALL, "--model", str(tmp_path / "no-model"), *extra]
    r = invoke([*args, "--out", str(out)], tmp_path / "models")
    assert r.exit_code == 2, r.output
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0] and "case" not in lines[0], r.stderr
    assert not out.exists() and not (tmp_path / "models").exists()


@pytest.mark.parametrize(
    "extra",
    [
        ["--shard", "0/2"],
        ["--shard", "3/2"],
        ["--shard", "1-2"],
        ["--identity", "magic"],
        ["--timeline-mode", "loud"],
        ["--timeline-units", "minutes"],
        ["--track", "3"],
        ["--set", "no_such_key=1"],
    ],
)
def test_usage_errors_exit_2(tmp_path, models_dir, extra):
    cases = write_testset_c(tmp_path / "ts", n=1)
    out = tmp_path / "out"
    r = invoke(["--cases", str(cases), *SMALL, "--out", str(out), *extra], models_dir)
    assert r.exit_code == 2, r.output
    assert not (out / "1.mp4").exists()


def test_wrong_track_for_the_test_set_exits_2(tmp_path, models_dir):
    cases = write_testset_c(tmp_path / "ts", n=1)
    r = invoke(["--track", "1", "--cases", str(cases), *SMALL, "--out", str(tmp_path / "o")], models_dir)
    assert r.exit_code == 2 and "track 2" in r.output


def test_missing_out_exits_2(tmp_path, models_dir):
    cases = write_testset_c(tmp_path / "ts", n=1)
    r = invoke(["--cases", str(cases), *SMALL], models_dir)
    assert r.exit_code == 2 and "--out" in r.output


def test_config_file_cli_and_set_precedence_and_json(tmp_path, models_dir):
    cases = write_testset_c(tmp_path / "ts", n=1)
    out = tmp_path / "out"
    cfg = tmp_path / "gen.yaml"
    cfg.write_text(
        yaml.safe_dump({"steps": 5, "seed": 5, "guidance": 2.0, "model_options": {"dtype": "fp32"}})
    )
    args = ["--cases", str(cases), *SMALL, "--out", str(out), "-c", str(cfg), "--set", "seed=9", "--json"]
    r = invoke(args, models_dir)
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert [x["status"] for x in report["results"]] == ["ok"]
    assert report["summary"][0] == {
        "status": "done",
        "videos": 1,
        "seconds_per_video": pytest.approx(report["results"][0]["seconds"]),
    }
    saved = yaml.safe_load((out / "generate.yaml").read_text())
    assert (saved["steps"], saved["seed"], saved["guidance"], saved["model_options"]["dtype"]) == (
        2,
        9,
        2.0,
        "fp32",
    )
    assert report["results"][0]["seed"] == derive_seed(9, "1")


def _decoded(out: Path) -> dict[str, bytes]:
    return {p.name: read_video(p).tobytes() for p in sorted(out.glob("*.mp4"))}


@pytest.mark.slow
def test_cli_shards_match_an_unsharded_run(tmp_path, models_dir):
    cases = write_testset_c(tmp_path / "ts", n=3)
    base = ["--track", "2", "--cases", str(cases), *SMALL]
    assert invoke([*base, "--out", str(tmp_path / "full")], models_dir).exit_code == 0
    split = tmp_path / "split"
    for k in ("1/2", "2/2"):
        r = invoke([*base, "--out", str(split), "--shard", k], models_dir)
        assert r.exit_code == 0, r.output
    logs = {
        p.name: [x["case_id"] for x in map(json.loads, p.read_text().splitlines())]
        for p in split.glob("*.jsonl")
    }
    assert logs == {"generation.rank0.jsonl": ["1", "3"], "generation.rank1.jsonl": ["2"]}
    assert _decoded(split) == _decoded(tmp_path / "full")
    assert len(_decoded(split)) == 3


@pytest.mark.slow
def test_two_processes_with_rank_env_split_the_cases(tmp_path, models_dir):
    """What ``torchrun --nproc_per_node 2`` does: two processes with RANK/WORLD_SIZE/LOCAL_RANK."""
    cases = write_testset_c(tmp_path / "ts", n=4)
    out = tmp_path / "out"
    # materialise tiny-wan once so that the two processes only read it
    assert (
        invoke(
            ["--cases", str(cases), *SMALL, "--out", str(tmp_path / "warm"), "--shard", "1/4"], models_dir
        ).exit_code
        == 0
    )
    cmd = [sys.executable, "-m", "ipvgkit", "generate", "--track", "2", "--cases", str(cases), *SMALL]
    cmd += ["--out", str(out), "--models-dir", str(models_dir), "--quiet"]
    procs = []
    for rank in (0, 1):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), OMP_NUM_THREADS="1")
        procs.append(
            subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    owned = {}
    for rank in (0, 1):
        recs = [json.loads(x) for x in (out / f"generation.rank{rank}.jsonl").read_text().splitlines()]
        owned[rank] = sorted(r["case_id"] for r in recs if r["status"] == "ok")
    assert owned == {0: ["1", "3"], 1: ["2", "4"]}
    assert sorted(p.name for p in out.glob("*.mp4")) == ["1.mp4", "2.mp4", "3.mp4", "4.mp4"]
    assert (out / "generate.yaml").is_file() and not (out / "generation.jsonl").exists()
    assert "rank 1 of 2" in outs[1][1]


def test_model_flags_reach_the_saved_config(tmp_path, models_dir):
    cases = write_testset_c(tmp_path / "ts", n=1)
    out = tmp_path / "out"
    args = ["--cases", str(cases), "--out", str(out), "--model", str(tmp_path / "no-such-model")]
    args += ["--vae-tiling", "--compile", "--lora", "a", "--lora", "b", "--lora-scale", "0.5"]
    args += ["--dtype", "fp16", "--offload", "model", "--cache", "first-block", "--identity", "vace"]
    r = invoke(args, models_dir)
    assert r.exit_code in (1, 2) and "no-such-model" in r.output  # the backend refuses the model
    mo = yaml.safe_load((out / "generate.yaml").read_text())["model_options"]
    assert (mo["vae_tiling"], mo["compile"], mo["lora"], mo["lora_scale"]) == (True, True, ["a", "b"], 0.5)
    assert (mo["dtype"], mo["offload"], mo["cache"], mo["identity"]) == (
        "fp16",
        "model",
        "first-block",
        "vace",
    )
    assert mo["models_dir"] == str(models_dir)


def test_help_has_examples():
    r = runner.invoke(app, ["generate", "--help"])
    assert r.exit_code == 0
    assert "Examples" in r.output and "torchrun" in r.output and "--shard" in r.output
