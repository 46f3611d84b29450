"""``ipvg generate`` on real runs (issue 8, part A): nothing silent, usage errors before any weights,
timelines fitted to the video, long timeline contexts, two processes on one output folder, help and
completion. Each test failed on the main branch before these changes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ipvgkit.cli.app import app
from ipvgkit.media import probe_video
from ipvgkit.stages.generate import read_generation_log
from tests.stages.test_generate import write_testset_b, write_testset_c

runner = CliRunner()
TINY = ["--model", "tiny-wan", "--frames", "9", "--height", "32", "--width", "32", "--steps", "2"]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


def invoke(args: list[str], models_dir: Path):
    return runner.invoke(app, ["generate", *args, "--models-dir", str(models_dir), "--quiet"])


def seconds_testset(root: Path, n: int = 2, text: str | None = None) -> Path:
    """A Track 2 test set whose timelines are in seconds and run to 5 s."""
    path = write_testset_c(root, n=n)
    data = json.loads(path.read_text())
    for entry in data.values():
        entry["temporal_captions"] = [
            {"start": 0, "end": 2, "description": text or "walks in"},
            {"start": 2, "end": 5, "description": text or "waves at the camera"},
        ]
    path.write_text(json.dumps(data))
    return path


def test_identity_auto_without_an_identity_path_is_a_usage_error(tmp_path, models_dir):
    cases = write_testset_b(tmp_path / "ts", n=2)
    out = tmp_path / "out"
    r = invoke(["--track", "1", "--cases", str(cases), *TINY, "--out", str(out)], models_dir)
    assert r.exit_code == 2, r.output
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    for choice in ("VACE", "I2V", "--identity reference-concat", "ipvg finetune", "--identity none"):
        assert choice in lines[0]
    assert not (out / "generation.jsonl").exists() and not list(out.glob("*.mp4"))


def test_identity_mode_is_in_the_log_and_the_summary(tmp_path, models_dir):
    cases = write_testset_b(tmp_path / "ts", n=1)
    out = tmp_path / "out"
    args = ["--track", "1", "--cases", str(cases), *TINY, "--model", "tiny-wan-vace", "--out", str(out)]
    r = invoke(args, models_dir)
    assert r.exit_code == 0, r.output
    assert "identity: vace" in r.stdout
    assert [x["settings"]["identity"] for x in read_generation_log(out)] == ["vace"]
    r = invoke(args, models_dir)  # a rerun skips: the log still says which mode was asked for
    assert r.exit_code == 0 and "identity: auto" in r.stdout
    assert [x["settings"]["identity"] for x in read_generation_log(out)] == ["vace", "auto"]


def test_no_model_is_a_usage_error(tmp_path, models_dir):
    cases = write_testset_b(tmp_path / "ts", n=1)
    args = ["--cases", str(cases), "--identity", "none", "--out", str(tmp_path / "out")]
    r = invoke(args, models_dir)
    assert r.exit_code == 2, r.output
    assert "no model given: pass --model" in r.stderr
    assert not list((tmp_path / "out").glob("*.mp4"))


def test_seconds_timelines_longer_than_the_video_are_scaled_and_said_once(tmp_path, models_dir):
    """The exact command of issue 8 item 4 writes one video per case."""
    cases = seconds_testset(tmp_path / "ts", n=3)
    out = tmp_path / "out"
    cmd = ["--track", "2", "--cases", str(cases), "--model", "tiny-wan", "--identity", "none"]
    cmd += ["--frames", "9", "--height", "32", "--width", "32", "--steps", "2", "--out", str(out)]
    r = invoke(cmd, models_dir)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.glob("*.mp4")) == ["1.mp4", "2.mp4", "3.mp4"]
    said = [line for line in r.stderr.splitlines() if "timeline-fit scale" in line]
    assert len(said) == 1 and "3 case(s)" in said[0] and "x0.11" in said[0], r.stderr  # 0.5625 s / 5 s
    saved = json.loads(json.dumps(read_generation_log(out)))
    assert all(x["status"] == "ok" for x in saved)


def test_timeline_fit_error_and_extend(tmp_path, models_dir):
    cases = seconds_testset(tmp_path / "ts", n=1)
    base = ["--track", "2", "--cases", str(cases), *TINY, "--identity", "none", "--fps", "4"]
    r = invoke([*base, "--timeline-fit", "error", "--out", str(tmp_path / "e")], models_dir)
    assert r.exit_code == 1 and "after the video's end" in r.output
    r = invoke([*base, "--timeline-fit", "extend", "--out", str(tmp_path / "x")], models_dir)
    assert r.exit_code == 0, r.output
    assert probe_video(tmp_path / "x" / "1.mp4", count_frames=True).n_frames == 21  # 5 s at 4 fps -> 4k+1
    assert "timeline-fit extend: 1 case(s)" in r.stderr
    r = invoke(
        [*base, "--timeline-fit", "extend", "--max-frames", "13", "--out", str(tmp_path / "m")], models_dir
    )
    assert r.exit_code == 1 and "over --max-frames 13" in r.output


def test_timeline_context_over_512_tokens_is_cut_with_a_warning_naming_the_case(tmp_path, models_dir):
    cases = seconds_testset(tmp_path / "ts", n=1, text="a very long description " * 15)  # 360 bytes
    out = tmp_path / "out"
    r = invoke(
        ["--track", "2", "--cases", str(cases), *TINY, "--identity", "none", "--out", str(out)], models_dir
    )
    assert r.exit_code == 0, r.output
    warned = [line for line in r.stderr.splitlines() if "512" in line]
    assert len(warned) == 1 and warned[0].startswith("case 1: warning: timeline context of"), r.stderr
    (rec,) = read_generation_log(out)
    assert rec["notes"] and "cut to" in rec["notes"][0]


@pytest.mark.slow
def test_two_processes_on_one_out_generate_each_case_once(tmp_path, models_dir):
    cases = write_testset_c(tmp_path / "ts", n=6)
    assert invoke(["--cases", str(cases), *TINY, "--identity", "none", "--out", str(tmp_path / "warm"),
                   "--shard", "1/6"], models_dir).exit_code == 0  # fmt: skip
    out = tmp_path / "out"
    out.mkdir()
    (out / ".3.tmp-otherprocess.mp4").write_bytes(b"half")  # a dead run's temp: removed by the claimer
    cmd = [sys.executable, "-m", "ipvgkit", "generate", "--track", "2", "--cases", str(cases), *TINY]
    cmd += ["--identity", "none", "--out", str(out), "--models-dir", str(models_dir), "--quiet", "--json"]
    cmd += ["--set", "claim_poll_seconds=0.2"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]  # fmt: skip
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    reports = [json.loads(o[0]) for o in outs]
    mine = [sorted(x["case_id"] for x in rep["results"] if x["status"] == "ok") for rep in reports]
    assert sorted(mine[0] + mine[1]) == ["1", "2", "3", "4", "5", "6"]  # each generated exactly once
    for rep, own in zip(reports, mine, strict=True):
        others = {x["case_id"] for x in rep["results"] if x["status"] == "skipped"}
        assert others == {"1", "2", "3", "4", "5", "6"} - set(own)
    assert sorted(p.name for p in out.glob("*.mp4")) == [f"{i}.mp4" for i in range(1, 7)]
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # claims and temps are gone


def test_a_dead_processes_claim_is_taken_over(tmp_path, models_dir):
    from ipvgkit.stages.generate_claim import HOST, claim_path

    cases = write_testset_c(tmp_path / "ts", n=1)
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    claim_path(out / "1.mp4").write_text(json.dumps({"pid": int(dead.stdout), "host": HOST, "token": "x"}))
    r = invoke(
        ["--track", "2", "--cases", str(cases), *TINY, "--identity", "none", "--out", str(out)], models_dir
    )
    assert r.exit_code == 0, r.output
    assert (out / "1.mp4").is_file() and not claim_path(out / "1.mp4").exists()


def test_a_live_claim_is_waited_for_and_counted_as_done_elsewhere(tmp_path, models_dir):
    """A case claimed by a live process (here: this test's own pid) is not generated; once that process
    has written the video and dropped its claim, the waiting run (a real subprocess) exits 0."""
    import shutil

    from ipvgkit.stages.generate_claim import HOST, claim_path

    cases = write_testset_c(tmp_path / "ts", n=1)
    first = tmp_path / "first"
    assert invoke(["--track", "2", "--cases", str(cases), *TINY, "--identity", "none", "--out", str(first)],
                  models_dir).exit_code == 0  # fmt: skip
    out = tmp_path / "out"
    out.mkdir()
    claim = claim_path(out / "1.mp4")
    claim.write_text(json.dumps({"pid": os.getpid(), "host": HOST, "token": "live"}))
    cmd = [sys.executable, "-m", "ipvgkit", "generate", "--track", "2", "--cases", str(cases), *TINY]
    cmd += ["--identity", "none", "--out", str(out), "--models-dir", str(models_dir), "--quiet"]
    cmd += ["--set", "claim_poll_seconds=0.2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    waiting = proc.stderr.readline()  # blocks until the run says it waits
    assert "waiting for 1 case(s) claimed by other processes" in waiting and f"pid {os.getpid()}" in waiting
    assert proc.poll() is None  # still waiting
    shutil.copy(first / "1.mp4", out / "1.mp4")  # the other process finishes the case ...
    claim.unlink()  # ... and drops its claim
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert "1 of the skipped case(s) were generated by another process" in stdout
    assert [x["status"] for x in read_generation_log(out)] == ["skipped"]


def test_boolean_flags_show_as_flags_in_help():
    r = runner.invoke(
        app, ["generate", "--help"]
    )  # no COLUMNS here: rich consoles keep the width they start with
    assert r.exit_code == 0
    assert "<bool>" not in r.output
    assert re.search(r"--compile\s+torch.compile", r.output) and re.search(r"--overwrite\s+Redo", r.output)


def test_install_completion_works(tmp_path):
    env = dict(os.environ, HOME=str(tmp_path), SHELL="/bin/bash")
    r = subprocess.run([sys.executable, "-m", "ipvgkit", "--install-completion"], env=env,
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "_IPVG_COMPLETE" in (tmp_path / ".bash_completions" / "ipvg.sh").read_text()
    env = dict(os.environ, _IPVG_COMPLETE="complete_bash", COMP_WORDS="ipvg gen", COMP_CWORD="1")
    r = subprocess.run([sys.executable, "-m", "ipvgkit"], env=env, capture_output=True, text=True, timeout=60)
    assert r.stdout.split() == ["generate"]


def test_shard_is_one_based_in_and_out(tmp_path, models_dir):
    cases = write_testset_c(tmp_path / "ts", n=2)
    r = invoke(["--cases", str(cases), *TINY, "--identity", "none", "--shard", "2/2", "--out", str(tmp_path / "o")],
               models_dir)  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "share 2/2" in r.output and "2.mp4" in {p.name for p in (tmp_path / "o").glob("*.mp4")}


def test_error_after_the_bar_started_is_one_line_without_a_spinner(tmp_path, models_dir):
    """On a terminal (a real pty): the error is the only thing on screen, with no bar line above it."""
    cases = write_testset_b(tmp_path / "ts", n=1)
    cmd = [sys.executable, "-m", "ipvgkit", "generate", "--track", "1", "--cases", str(cases), *TINY]
    cmd += ["--out", str(tmp_path / "out"), "--models-dir", str(models_dir)]
    env = dict(os.environ, COLUMNS="80", TERM="xterm")
    # the pty is opened in a helper process: opening one here could take this worker's fd 0-2 slots
    r = subprocess.run([sys.executable, "-c", PTY_HELPER, json.dumps(cmd)], env=env, capture_output=True,
                       timeout=300)  # fmt: skip
    chunks, proc = [r.stdout], r
    screen = _screen(b"".join(chunks).decode(errors="replace"))
    assert proc.returncode == 2, r.stderr
    assert len(screen) == 1 and screen[0].startswith("error: --identity auto"), screen


PTY_HELPER = """
import json, os, pty, subprocess, sys
master, slave = pty.openpty()
proc = subprocess.Popen(json.loads(sys.argv[1]), stdin=slave, stdout=slave, stderr=slave)
os.close(slave)
chunks = []
while True:
    try:
        data = os.read(master, 4096)
    except OSError:
        break
    if not data:
        break
    chunks.append(data)
sys.stdout.buffer.write(b"".join(chunks))
sys.exit(proc.wait())
"""


def _screen(text: str) -> list[str]:
    """The non-empty lines left on a terminal after ``text`` (carriage return, newline, cursor up and
    erase-line: what rich's live display uses); other escape sequences are dropped."""
    lines, row, col = [""], 0, 0
    for token in re.findall(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r|\n|[^\x1b\r\n]+", text):
        if token == "\r":
            col = 0
        elif token == "\n":
            row, col = row + 1, 0
            lines += [""] * (row + 1 - len(lines))
        elif token.startswith("\x1b["):
            arg, cmd = token[2:-1], token[-1]
            if cmd == "A":
                row = max(0, row - int(arg or 1))
            elif cmd == "K":
                lines[row] = "" if arg == "2" else lines[row][:col]
        elif not token.startswith("\x1b"):
            line = lines[row].ljust(col)
            lines[row] = line[:col] + token + line[col + len(token) :]
            col += len(token)
    return [line.strip() for line in lines if line.strip()]
