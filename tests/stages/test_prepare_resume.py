"""kill -9 in the middle of `ipvg prepare`, rerun: the same manifest as an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.data.sources.builders import person, write_video

N_SEG = 40


def _dataset(root: Path):
    videos = root / "videos"
    write_video(videos / "long.mp4", 30 * N_SEG, 30.0)
    segs = [(30 * k, 30 * k + 29) for k in range(N_SEG)]
    faces = [30 * k + 15 for k in range(N_SEG)]
    ann = root / "ann.json"
    ann.write_text(json.dumps([person("long", 0, 30 * N_SEG, 30.0, segs, faces)]))
    return ann, videos


def _cmd(ann, videos, out):
    return [sys.executable, "-m", "ipvgkit", "prepare", "vip200k", "--annotations", str(ann), "--videos",
            str(videos), "--out", str(out), "-j", "1", "-q", "--face-backend", "none",
            "--set", "sample.buckets=[96x128]"]  # fmt: skip


def _env():
    src = str(Path(__file__).resolve().parents[2] / "src")
    return {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_kill_9_then_rerun_gives_the_uninterrupted_manifest(tmp_path):
    ann, videos = _dataset(tmp_path)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        _cmd(ann, videos, killed), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    journal = killed / "journal.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and journal.read_bytes().count(b"\n") >= 3:
            break
        time.sleep(0.01)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done_at_kill = journal.read_bytes().count(b"\n")
    assert 3 <= done_at_kill < N_SEG
    assert not (killed / "manifest.jsonl").exists()  # nothing half-finished is presented as finished

    rerun = subprocess.run(_cmd(ann, videos, killed), env=_env(), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert f"({N_SEG - done_at_kill} prepared now, {done_at_kill} reused)" in rerun.stdout.replace("\n", " ")

    fresh = tmp_path / "fresh"
    clean = subprocess.run(_cmd(ann, videos, fresh), env=_env(), capture_output=True, text=True)
    assert clean.returncode == 0, clean.stderr
    assert (killed / "manifest.jsonl").read_bytes() == (fresh / "manifest.jsonl").read_bytes()
    assert len((fresh / "manifest.jsonl").read_text().splitlines()) == N_SEG
    refs = sorted(p.name for p in (killed / "refs").iterdir())
    assert refs == sorted(p.name for p in (fresh / "refs").iterdir()) and len(refs) == N_SEG
