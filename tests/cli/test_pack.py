"""``ipvg pack`` through typer's CliRunner: exit codes, messages, JSON, the zip on disk."""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ipvgkit.cli.app import app
from ipvgkit.media import encode_video, ffmpeg_exe
from tests.conftest import moving_frames

runner = CliRunner()


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cli_pack_sources")
    good = encode_video(moving_frames(t=6), d / "good.mp4", fps=8)
    vp9 = d / "vp9.mp4"
    subprocess.run(
        [ffmpeg_exe(), "-loglevel", "error", "-nostdin", "-y", "-i", str(good)]
        + ["-c:v", "libvpx-vp9", "-b:v", "100k", "-f", "mp4", str(vp9)],
        check=True,
        capture_output=True,
    )
    return {"good": good, "vp9": vp9}


def _sub(root: Path, files: dict[str, Path]) -> Path:
    for rel, src in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, root / rel)
    return root


def _run(*args: str):
    return runner.invoke(app, ["pack", *map(str, args), "--quiet"])


def test_pack_ok(tmp_path, videos):
    sub = _sub(tmp_path / "sub", {"id001/prompt1.mp4": videos["good"], "id001/prompt2.mp4": videos["good"]})
    (sub / ".DS_Store").write_bytes(b"x")
    out = tmp_path / "RUN.zip"
    r = _run(sub, "-o", out)
    assert r.exit_code == 0, r.output
    assert f"wrote {out}" in r.stdout
    assert "videos" in r.stdout and "48x32 x2" in r.stdout
    assert "note: .DS_Store: OS metadata file, left out of the zip" in r.stderr
    assert sorted(zipfile.ZipFile(out).namelist()) == [
        "submission/",
        "submission/id001/",
        "submission/id001/prompt1.mp4",
        "submission/id001/prompt2.mp4",
    ]
    assert (tmp_path / "RUN.pack.yaml").is_file()
    again = _run(sub, "-o", out)
    assert again.exit_code == 2
    assert "exists; pass --overwrite to replace it" in again.stderr
    assert _run(sub, "-o", out, "--overwrite").exit_code == 0


def test_pack_problems_exit_1_and_list_every_problem(tmp_path, videos):
    sub = _sub(tmp_path / "sub", {"1.mp4": videos["good"], "2.mp4": videos["vp9"]})
    (sub / "3.mp4").write_bytes(b"")
    (sub / "notes.txt").write_text("x")
    out = tmp_path / "RUN.zip"
    r = _run(sub, "-o", out)
    assert r.exit_code == 1
    for line in (
        "2.mp4: codec vp9, must be h264 (use --fix-encoding)",
        "3.mp4: empty file (0 bytes)",
        "notes.txt: unexpected file (only .mp4 videos belong in a submission)",
        "3 problem(s) in",
        "no zip written",
    ):
        assert line in r.stderr
    assert not out.exists()


def test_check_folder_and_zip(tmp_path, videos):
    sub = _sub(tmp_path / "sub", {"1.mp4": videos["good"], "2.mp4": videos["good"]})
    r = _run("--check", sub, "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["ok"] is True and data["layout"] == "flat" and data["summary"]["videos"] == 2
    assert data["summary"]["fps"] == {"min": 8.0, "median": 8.0, "max": 8.0}
    assert list(tmp_path.iterdir()) == [sub]  # --check writes nothing

    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.write(videos["vp9"], "submission/1.mp4")
        zf.writestr("submission/../2.mp4", videos["good"].read_bytes())  # write() would drop the ".."
    r = _run("--check", bad)
    assert r.exit_code == 1
    assert "path escapes the zip's folder" in r.stderr and "not a valid submission" in r.stderr

    ok_zip = tmp_path / "ok.zip"
    with zipfile.ZipFile(ok_zip, "w") as zf:
        zf.write(videos["good"], "submission/1.mp4")
    r = _run("--check", ok_zip, "--cases", sub)  # a folder that is not a test set
    assert r.exit_code == 1 and "is not a test set" in r.stderr
    r = _run("--check", ok_zip)
    assert r.exit_code == 0 and "is a valid submission (1 videos)" in r.stdout


def test_json_on_failure(tmp_path, videos):
    sub = _sub(tmp_path / "sub", {"1.mp4": videos["vp9"]})
    r = _run("--check", sub, "--json")
    assert r.exit_code == 1
    data = json.loads(r.stdout)
    assert data["ok"] is False
    assert data["problems"] == ["1.mp4: codec vp9, must be h264 (use --fix-encoding)"]
    assert data["videos"][0]["codec"] == "vp9"


def test_fix_encoding_then_pack(tmp_path, videos):
    sub = _sub(tmp_path / "sub", {"1.mp4": videos["vp9"], "2.mp4": videos["good"]})
    out = tmp_path / "RUN.zip"
    r = _run(sub, "-o", out, "--fix-encoding", tmp_path / "fixed", "--set", "preset=ultrafast")
    assert r.exit_code == 0, r.output
    assert "fix-encoding: 1 re-encoded, 1 linked or copied, 0 kept from an earlier run" in r.stderr
    assert (sub / "1.mp4").read_bytes() == videos["vp9"].read_bytes()
    assert "preset: ultrafast" in (tmp_path / "RUN.pack.yaml").read_text()
    r = _run("--check", out, "--json")
    assert json.loads(r.stdout)["summary"]["codecs"] == {"h264": 2}
    r = _run(sub, "-o", tmp_path / "x.zip", "--fix-encoding", sub / "inside")
    assert r.exit_code == 2 and "outside the submission folder" in r.stderr


def test_usage_errors(tmp_path, videos):
    sub = _sub(tmp_path / "sub", {"1.mp4": videos["good"]})
    r = _run(sub)
    assert r.exit_code == 2 and "-o RUN.zip" in r.stderr
    r = _run("--check", sub, "-o", tmp_path / "x.zip")
    assert r.exit_code == 2 and "--check only validates" in r.stderr
    r = _run(sub, "-o", tmp_path / "x.zip", "--layout", "diagonal")
    assert r.exit_code == 2 and "layout" in r.stderr
    r = _run(tmp_path / "missing", "-o", tmp_path / "x.zip")
    assert r.exit_code == 1 and "no such folder" in r.stderr


def test_help_has_examples():
    r = runner.invoke(app, ["pack", "--help"])
    assert r.exit_code == 0
    assert "ipvg pack --check" in r.output and "--fix-encoding" in r.output


def test_small_videos_warn_with_counts_and_strict_fails(tmp_path, videos):
    big = encode_video(moving_frames(t=33, h=256, w=320), tmp_path / "big.mp4", fps=16, preset="ultrafast")
    sub = _sub(tmp_path / "sub", {"1.mp4": big, "2.mp4": big, "3.mp4": videos["good"]})
    r = _run("--check", sub)
    assert r.exit_code == 0, r.output
    err = " ".join(r.stderr.split())  # rich may wrap long lines
    assert "warning: 1 of 3 videos shorter than 2 s, far from what the organisers expect" in err
    assert "1 of 3 videos smaller than 256 px on the short side" in err
    assert "1 of 3 videos fewer than 16 frames" in err and "3.mp4 (6 frames)" in err
    r = _run("--check", sub, "--strict")
    assert r.exit_code == 1
    err = " ".join(r.stderr.split())
    assert "3.mp4: 0.75 s long, shorter than 2 s (far from what the organisers expect)" in err
    assert "3.mp4: 48x32, smaller than 256 px on the short side" in err and "3 problem(s)" in err
    assert "1.mp4:" not in err
    # the thresholds are config keys: expect.min_frames etc.
    out = tmp_path / "RUN.zip"
    r = _run(
        sub, "-o", out, "--strict", "--set", "expect.min_duration_s=0.5", "--set", "expect.min_short_side=32"
    )
    assert r.exit_code == 1 and "fewer than 16 frames" in r.stderr and "shorter than" not in r.stderr
    r = _run(sub, "-o", out, "--strict", "--set", "expect.min_duration_s=0.5", "--set", "expect.min_short_side=32",
             "--set", "expect.min_frames=6")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "min_frames: 6" in (tmp_path / "RUN.pack.yaml").read_text()


def test_cases_the_test_set_cannot_load_fail_the_pack(tmp_path, videos, tom_hanks):
    ts = tmp_path / "testset"
    (ts / "id001").mkdir(parents=True)
    (ts / "id002").mkdir()
    shutil.copyfile(tom_hanks, ts / "id001" / "ref.png")
    (ts / "id001" / "prompt1.txt").write_text("a person waves")
    shutil.copyfile(tom_hanks, ts / "id002" / "ref.png")  # no prompt file: the loader cannot make a case
    sub = _sub(tmp_path / "sub", {"id001/prompt1.mp4": videos["good"]})
    r = _run(sub, "-o", tmp_path / "RUN.zip", "--cases", ts)
    assert r.exit_code == 1
    err = " ".join(r.stderr.split())
    assert "test set case id002 cannot be loaded (no prompt1.txt ... in" in err and "1 problem(s)" in err
    assert not (tmp_path / "RUN.zip").exists()


def test_a_score_select_best_folder_packs_as_it_is(tmp_path, tom_hanks):
    from tests.stages.test_score import make_submission, make_testset

    ts = make_testset(tmp_path, tom_hanks, n_ids=1, prompts=2)
    a = make_submission(tmp_path / "a", ts, tom_hanks, shift=0).rename(tmp_path / "still")
    b = make_submission(tmp_path / "b", ts, tom_hanks, shift=6).rename(tmp_path / "moving")
    best = tmp_path / "best"
    args = [a, b, "--cases", ts, "--metrics", "motion_amplitude", "--select", best, "-o", tmp_path / "scores"]
    r = runner.invoke(app, ["score", *map(str, args), "-q"])
    assert r.exit_code == 0, r.output
    r = _run(best, "--cases", ts, "-o", tmp_path / "best.zip")
    assert r.exit_code == 0, r.output
    names = sorted(n for n in zipfile.ZipFile(tmp_path / "best.zip").namelist() if not n.endswith("/"))
    assert names == ["submission/id001/prompt1.mp4", "submission/id001/prompt2.mp4"]
    others = sorted(p.name for p in best.rglob("*") if p.is_file() and p.suffix != ".mp4")
    for name in others:  # whatever bookkeeping the select stage keeps in BEST is left out, with a note
        assert f"note: {name}: ipvg score --select's bookkeeping file, left out of the zip" in r.stderr
