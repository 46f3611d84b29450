"""Per-case claims, so that several ``ipvg generate`` processes can share one output folder.

Before a process generates a case it creates ``.<video name>.claim`` beside the video with
``os.open(O_CREAT | O_EXCL)`` (atomic on local and NFSv3+ file systems) holding its pid, host, start
time and a random token; it deletes the claim once the video is written (or the case failed). A claim
whose owner is a dead process on this host (or that stayed empty, from a crash between create and
write, for :data:`EMPTY_STALE_SECONDS`) is stale and is taken over by renaming it away. A claim owned
by a process on another host is treated as live (its liveness cannot be checked from here).
Half-written temp files of a case are deleted only by the process that holds its claim.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ipvgkit.stages.bookkeeping import CLAIM_SUFFIX, claim_name

__all__ = ["CLAIM_SUFFIX"]  # re-exported: the name is declared in stages/bookkeeping.py
EMPTY_STALE_SECONDS = 30.0
HEARTBEAT_SECONDS = 30.0
REMOTE_STALE_SECONDS = 600.0  # 20 missed heartbeats
HOST = socket.gethostname()


def claim_path(dest: Path) -> Path:
    """Where the claim of the video ``dest`` lives."""
    return dest.parent / claim_name(dest.name)


@dataclass(frozen=True)
class Claim:
    """A claim this process holds."""

    path: Path
    token: str

    def release(self) -> None:
        """Delete the claim if it is still ours."""
        _HEART.drop(self)
        owner = read_owner(self.path)
        if owner is not None and owner.get("token") == self.token:
            self.path.unlink(missing_ok=True)


class _Heartbeat:
    """The daemon thread that touches this process's claims (started with the first claim)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.held: dict[Path, str] = {}
        self.thread: threading.Thread | None = None

    def add(self, claim: Claim) -> None:
        with self.lock:
            self.held[claim.path] = claim.token
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._loop, name="ipvg-claim-heartbeat", daemon=True)
                self.thread.start()

    def drop(self, claim: Claim) -> None:
        with self.lock:
            if self.held.get(claim.path) == claim.token:
                del self.held[claim.path]

    def beat(self) -> int:
        """Touch every held claim that is still ours; returns how many were touched."""
        with self.lock:
            held = list(self.held.items())
        n = 0
        for path, token in held:
            owner = read_owner(path)
            if owner is not None and owner.get("token") == token:
                with contextlib.suppress(OSError):
                    os.utime(path)
                    n += 1
        return n

    def _loop(self) -> None:
        while True:
            time.sleep(HEARTBEAT_SECONDS)
            self.beat()


_HEART = _Heartbeat()


def heartbeat() -> int:
    """Touch this process's claims now (the heartbeat thread does it every HEARTBEAT_SECONDS)."""
    return _HEART.beat()


def read_owner(path: Path) -> dict[str, Any] | None:
    """The owner recorded in a claim file; None when it is missing, empty or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def owner_alive(owner: dict[str, Any], age: float = 0.0) -> bool:
    """False for a process on this host that no longer exists, or a claim of another host that was
    not touched for ``REMOTE_STALE_SECONDS`` (``age``: seconds since the claim's mtime)."""
    if owner.get("host") != HOST:
        return age <= REMOTE_STALE_SECONDS
    try:
        os.kill(int(owner.get("pid", -1)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def describe_owner(owner: dict[str, Any] | None) -> str:
    if not owner:
        return "another process"
    return f"pid {owner.get('pid')} on {owner.get('host')} since {owner.get('start')}"


def _is_stale(path: Path) -> tuple[bool, dict[str, Any] | None]:
    owner = read_owner(path)
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return True, owner
    if owner is None:
        return age > EMPTY_STALE_SECONDS, None
    return not owner_alive(owner, age), owner


def _take_over(path: Path, judged: dict[str, Any] | None) -> None:
    """Move a stale claim away; if another process replaced it in between, put that one back."""
    grave = path.with_name(f"{path.name}.stale-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(path, grave)
    except FileNotFoundError:
        return
    moved = read_owner(grave)
    if moved is not None and judged is not None and moved.get("token") != judged.get("token"):
        with contextlib.suppress(OSError):  # we moved a fresh, live claim: restore it unless a new one exists
            os.link(grave, path)
    grave.unlink(missing_ok=True)


def acquire(dest: Path) -> tuple[Claim | None, dict[str, Any] | None]:
    """Claim the video ``dest``: ``(claim, None)``, or ``(None, owner)`` when a live process holds it."""
    path = claim_path(dest)
    path.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    info = {
        "pid": os.getpid(),
        "host": HOST,
        "start": datetime.now(UTC).isoformat(timespec="seconds"),
        "token": token,
    }
    owner = None
    for _ in range(5):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            stale, owner = _is_stale(path)
            if not stale:
                return None, owner
            _take_over(path, owner)
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(info) + "\n")
        claim = Claim(path, token)
        _HEART.add(claim)
        return claim, None
    return None, owner


__all__ = ["CLAIM_SUFFIX", "Claim", "acquire", "claim_path", "describe_owner", "heartbeat", "read_owner"]
