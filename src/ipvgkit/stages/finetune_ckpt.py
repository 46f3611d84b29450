"""Run-folder records of ``ipvg finetune``: checkpoints, metrics.jsonl, loss.svg.

A checkpoint is ``RUN/checkpoints/checkpoint-NNNNNN`` (NNNNNN = optimizer steps done), written by
accelerate's ``save_state`` into a temp folder (``.checkpoint-NNNNNN.tmp-*``) that is renamed when
complete: a folder with that name always holds a whole checkpoint (``trainer_state.json`` is written
last, before the rename). Only the last ``keep`` are kept.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from ipvgkit.errors import UsageError
from ipvgkit.fsutil import atomic_write_text

FINAL = "final"  # RUN/final: the trained adapter

STATE_FILE = "trainer_state.json"
ADAPTER_STATE = "adapter_state.safetensors"
METRICS = "metrics.jsonl"
LOSS_SVG = "loss.svg"
_CKPT = re.compile(r"^checkpoint-(\d{6,})$")


def checkpoints_dir(run: Path) -> Path:
    return Path(run) / "checkpoints"


def checkpoint_path(run: Path, step: int) -> Path:
    return checkpoints_dir(run) / f"checkpoint-{step:06d}"


def list_checkpoints(run: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run, oldest first."""
    folder = checkpoints_dir(run)
    if not folder.is_dir():
        return []
    out = []
    for p in folder.iterdir():
        m = _CKPT.match(p.name)
        if m and (p / STATE_FILE).is_file():
            out.append((int(m.group(1)), p))
    return sorted(out)


def find_resume(run: Path, resume: str | None) -> Path | None:
    """The checkpoint to resume from: ``auto`` = the run's latest (None when it has none); a path = that
    checkpoint folder, or the latest checkpoint of that run folder."""
    if resume is None:
        return None
    if resume == "auto":
        found = list_checkpoints(run)
        return found[-1][1] if found else None
    p = Path(resume).expanduser()
    if (p / STATE_FILE).is_file():
        return p
    found = list_checkpoints(p)
    if not found:
        raise UsageError(f"--resume {resume}: no complete checkpoint there (expected {STATE_FILE})")
    return found[-1][1]


def read_state(ckpt: Path) -> dict[str, Any]:
    return json.loads((Path(ckpt) / STATE_FILE).read_text())


def prune(run: Path, keep: int) -> None:
    """Delete all but the last ``keep`` complete checkpoints, and leftover temp folders."""
    for _step, p in list_checkpoints(run)[:-keep]:
        shutil.rmtree(p, ignore_errors=True)
    folder = checkpoints_dir(run)
    for p in folder.glob(".checkpoint-*.tmp-*"):
        shutil.rmtree(p, ignore_errors=True)


def config_mismatch(saved: dict[str, Any], now: dict[str, Any], free: tuple[str, ...]) -> str | None:
    """The first config key (dotted) that differs between a checkpoint's config and this run's."""

    def walk(a: Any, b: Any, prefix: str) -> str | None:
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b)):
                key = f"{prefix}{k}"
                if key in free:
                    continue
                found = walk(a.get(k), b.get(k), key + ".")
                if found:
                    return found
            return None
        return None if a == b else f"{prefix.rstrip('.')} ({a!r} in the checkpoint, {b!r} now)"

    return walk(saved, now, "")


def trim_metrics(run: Path, step: int, name: str = METRICS) -> None:
    """Keep the metrics lines (of ``name``) of steps <= ``step`` (a resumed run rewrites the later ones)."""
    path = Path(run) / name
    if not path.is_file():
        return
    keep = [ln for ln, row in _rows(path) if row["step"] <= step]
    atomic_write_text(path, "".join(ln + "\n" for ln in keep))


def read_metrics(run: Path) -> list[dict[str, Any]]:
    path = Path(run) / METRICS
    if not path.is_file():
        return []
    return [row for _ln, row in _rows(path)]


def _rows(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """The complete lines of a metrics file (a line torn by a killed run is dropped)."""
    out = []
    for ln in path.read_text().splitlines():
        try:
            out.append((ln, json.loads(ln)))
        except json.JSONDecodeError:
            continue
    return out


def loss_svg(rows: list[dict[str, Any]], width: int = 640, height: int = 320) -> str:
    """A plain SVG line plot of loss against step (no plotting library needed)."""
    pad = 48
    pts = [(r["step"], r["loss"]) for r in rows if r.get("loss") is not None]
    if not pts:
        pts = [(0, 0.0)]
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    xs = (width - 2 * pad) / max(1, x1 - x0)
    ys = (height - 2 * pad) / (y1 - y0 if y1 > y0 else 1.0)

    def xy(p: tuple[float, float]) -> str:
        return f"{pad + (p[0] - x0) * xs:.1f},{height - pad - (p[1] - y0) * ys:.1f}"

    poly = " ".join(xy(p) for p in pts)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">\n'
        f'<rect width="100%" height="100%" fill="white"/>\n'
        f'<text x="{width / 2}" y="20" text-anchor="middle" font-family="sans-serif" font-size="14">'
        f"training loss</text>\n"
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="black"/>\n'
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="black"/>\n'
        f'<text x="{pad}" y="{height - pad + 16}" font-size="11" font-family="sans-serif">{x0}</text>\n'
        f'<text x="{width - pad}" y="{height - pad + 16}" text-anchor="end" font-size="11" '
        f'font-family="sans-serif">step {x1}</text>\n'
        f'<text x="{pad - 4}" y="{pad + 4}" text-anchor="end" font-size="11" font-family="sans-serif">{y1:.4g}</text>\n'
        f'<text x="{pad - 4}" y="{height - pad}" text-anchor="end" font-size="11" font-family="sans-serif">{y0:.4g}</text>\n'
        f'<polyline points="{poly}" fill="none" stroke="#1f77b4" stroke-width="2"/>\n'
        "</svg>\n"
    )


def write_loss_svg(run: Path) -> Path:
    return atomic_write_text(Path(run) / LOSS_SVG, loss_svg(read_metrics(run)))


def check_run_folder(out: Path, cfg: Any, main: bool) -> Path | None:
    """The checkpoint to resume from (None: start at step 0); ``--overwrite`` clears the run folder
    first (on the main rank); a folder that holds a run without ``--resume``/``--overwrite`` is an error."""
    if cfg.overwrite and cfg.resume:
        raise UsageError("--overwrite and --resume exclude each other")
    found = list_checkpoints(out)
    if cfg.overwrite and main:
        for p in (checkpoints_dir(out), out / FINAL):
            shutil.rmtree(p, ignore_errors=True)
        for name in (METRICS, LOSS_SVG):
            (out / name).unlink(missing_ok=True)
        found = []
    if found and cfg.resume is None and not cfg.overwrite:
        raise UsageError(
            f"{out} already holds a run (checkpoint at step {found[-1][0]}): pass --resume (auto) to "
            "continue it or --overwrite to start again"
        )
    return find_resume(out, cfg.resume)
