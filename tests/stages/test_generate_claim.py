"""Claims of ``ipvg generate`` (:mod:`ipvgkit.stages.generate_claim`): another host's claim is live
while its owner touches it and is taken over once it is REMOTE_STALE_SECONDS old; a process keeps
its own claims fresh with a heartbeat thread (checked in a real subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from ipvgkit.stages import generate_claim as gc

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _foreign_claim(dest: Path, age: float) -> Path:
    path = gc.claim_path(dest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": 1, "host": "node-elsewhere", "token": "theirs"}) + "\n")
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def test_another_hosts_claim_is_live_while_fresh(tmp_path):
    _foreign_claim(tmp_path / "1.mp4", age=gc.REMOTE_STALE_SECONDS - 60)
    claim, owner = gc.acquire(tmp_path / "1.mp4")
    assert claim is None and owner["host"] == "node-elsewhere"


def test_another_hosts_untouched_claim_is_taken_over(tmp_path):
    path = _foreign_claim(tmp_path / "1.mp4", age=gc.REMOTE_STALE_SECONDS + 60)
    claim, owner = gc.acquire(tmp_path / "1.mp4")
    assert claim is not None and owner is None
    assert json.loads(path.read_text())["host"] == gc.HOST
    claim.release()
    assert not path.exists()


def test_heartbeat_touches_only_the_claims_still_ours(tmp_path):
    mine, _ = gc.acquire(tmp_path / "a.mp4")
    lost, _ = gc.acquire(tmp_path / "b.mp4")
    old = time.time() - 3600
    for c in (mine, lost):
        os.utime(c.path, (old, old))
    lost.path.write_text(json.dumps({"pid": 1, "host": "x", "token": "someone-else"}))  # taken over
    os.utime(lost.path, (old, old))
    assert gc.heartbeat() == 1
    assert time.time() - mine.path.stat().st_mtime < 60
    assert lost.path.stat().st_mtime == old
    mine.release()
    lost.release()  # not ours any more: left in place
    assert not mine.path.exists() and lost.path.exists()
    assert gc.heartbeat() == 0


def test_a_running_process_keeps_its_claim_fresh(tmp_path):
    """A real process holding a claim: its heartbeat thread brings the mtime back after we age it."""
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from ipvgkit.stages import generate_claim as gc\n"
        "gc.HEARTBEAT_SECONDS = 0.2\n"
        "claim, _ = gc.acquire(Path(sys.argv[1]))\n"
        "print('held', flush=True)\n"
        "time.sleep(60)\n"
    )
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "1.mp4")], env=env,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout.readline().strip() == "held"
        path = gc.claim_path(tmp_path / "1.mp4")
        old = time.time() - 2 * gc.REMOTE_STALE_SECONDS
        os.utime(path, (old, old))
        deadline = time.time() + 30
        while path.stat().st_mtime == old and time.time() < deadline:
            time.sleep(0.1)
        assert time.time() - path.stat().st_mtime < 60
    finally:
        proc.kill()
        proc.wait()
