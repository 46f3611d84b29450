"""Validation during ``ipvg finetune``: every ``validation.every`` steps, generate a small test set with
the current weights, score the videos with weight-free metrics, and record the numbers.

At step ``N`` (main process; the other ranks wait):

1. the current adapter (LoRA and / or face adapter) is written like ``RUN/final`` into
   ``RUN/validation/step-N/weights``;
2. ``ipvg generate`` (:func:`ipvgkit.stages.generate.run_generation`, in this process, a second copy of
   the base model) runs every case of ``validation.cases`` with those weights and the run's identity
   method into ``RUN/validation/step-N/videos`` (``validation.frames/height/width`` default to the
   run's; ``steps``, ``guidance``, ``seed`` as given; the same seeds at every step);
3. ``ipvg score`` (:func:`ipvgkit.stages.score.run_scoring`) scores them with ``validation.metrics``
   (default ``motion_amplitude``: optical flow, no weights) into ``RUN/validation/step-N/scores``;
4. one line ``{"step", "cases", "ok", <metric>: mean, ...}`` is appended to ``RUN/validation.jsonl``
   and ``RUN/validation.svg`` is redrawn (one line per metric, each scaled to its own range).

Keep the test set small (a few cases at a tiny size): validation time adds to training time. A resumed
run drops the lines of later steps first (they are redone).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ipvgkit.fsutil import atomic_write_text
from ipvgkit.progress import Progress

VALIDATION = "validation"
VALIDATION_LOG = "validation.jsonl"
VALIDATION_SVG = "validation.svg"
DEFAULT_METRICS = ("motion_amplitude",)


@dataclass
class ValidationSettings:
    """``every`` 0: no validation (docs/finetune.md)."""

    every: int = 0
    cases: Path | None = None
    metrics: list[str] = field(default_factory=lambda: list(DEFAULT_METRICS))
    steps: int = 4
    guidance: float = 5.0
    seed: int = 0
    frames: int | None = None
    height: int | None = None
    width: int | None = None

    def __post_init__(self) -> None:
        if self.every < 0:
            raise ValueError(f"validation.every must be >= 0, got {self.every}")
        if self.every and self.cases is None:
            raise ValueError("validation.every needs validation.cases (a small test set file)")
        if self.every and not self.metrics:
            raise ValueError("validation.metrics is empty")
        if self.steps < 1:
            raise ValueError(f"validation.steps must be >= 1, got {self.steps}")


def step_dir(run: Path, step: int) -> Path:
    return Path(run) / VALIDATION / f"step-{step:06d}"


def validate(run: Path, step: int, cfg: Any, weights: Path, device: str, progress: Progress) -> dict:
    """Steps 2-4 of the module docstring for the weights in ``weights``; returns the jsonl row."""
    from ipvgkit.models.base import ModelOptions
    from ipvgkit.stages.generate import GenerateConfig, run_generation
    from ipvgkit.stages.score import ScoreConfig, run_scoring

    v = cfg.validation
    here = step_dir(run, step)
    lora = [weights] if (weights / "pytorch_lora_weights.safetensors").is_file() else []
    face = weights if cfg.method == "face-adapter" else None
    options = ModelOptions(
        model=cfg.model, models_dir=cfg.models_dir, lora=lora, adapter=face, identity=cfg.method,
        device=device, dtype="fp32" if device == "cpu" else "bf16",
    )  # fmt: skip
    gen = GenerateConfig(
        cases=Path(v.cases), out=here / "videos", model_options=options, steps=v.steps, guidance=v.guidance,
        frames=v.frames or cfg.frames, height=v.height or cfg.height, width=v.width or cfg.width,
        fps=cfg.fps, seed=v.seed, overwrite=True, background_encode=False,
    )  # fmt: skip
    report = run_generation(gen, progress=None)
    ok = sum(1 for r in report.results if r.status == "ok")
    row: dict[str, Any] = {"step": step, "cases": len(report.results), "ok": ok}
    if ok:
        score = ScoreConfig(
            submission=here / "videos", cases=Path(v.cases), out=here / "scores", metrics=list(v.metrics),
            models_dir=cfg.models_dir, overwrite=True, report=False,
        )  # fmt: skip
        summary = run_scoring(score).summary["metrics"]
        row.update({m: summary.get(m, {}).get("mean") for m in v.metrics})
    progress.log(
        "validation at step " + str(step) + ": " + ", ".join(f"{k} {row[k]}" for k in row if k != "step")
    )
    with (Path(run) / VALIDATION_LOG).open("a") as f:
        f.write(json.dumps(row) + "\n")
    write_svg(run, list(v.metrics))
    return row


def read_rows(run: Path) -> list[dict]:
    path = Path(run) / VALIDATION_LOG
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a torn last line of a killed run
    return rows


def forget_after(run: Path, step: int) -> None:
    """A resumed run: drop the rows (and folders) of the steps after ``step``."""
    from ipvgkit.stages.finetune_ckpt import trim_metrics

    trim_metrics(run, step, VALIDATION_LOG)
    folder = Path(run) / VALIDATION
    if folder.is_dir():
        for d in folder.glob("step-*"):
            if d.name[5:].isdigit() and int(d.name[5:]) > step:
                shutil.rmtree(d, ignore_errors=True)


COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")


def write_svg(run: Path, metrics: list[str], width: int = 640, height: int = 320) -> Path:
    """``RUN/validation.svg``: each metric's mean against step, scaled to its own range (plain SVG)."""
    rows = read_rows(run)
    pad = 48
    steps = [r["step"] for r in rows] or [0]
    x0, x1 = min(steps), max(steps)
    xs = (width - 2 * pad) / max(1, x1 - x0)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{width / 2}" y="20" text-anchor="middle" font-family="sans-serif" font-size="14">validation</text>',
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="black"/>',
        f'<text x="{width - pad}" y="{height - pad + 16}" text-anchor="end" font-size="11" font-family="sans-serif">step {x1}</text>',
    ]  # fmt: skip
    for i, m in enumerate(metrics):
        pts = [(r["step"], r[m]) for r in rows if isinstance(r.get(m), (int, float))]
        if not pts:
            continue
        y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
        ys = (height - 2 * pad) / (y1 - y0 if y1 > y0 else 1.0)
        poly = " ".join(f"{pad + (s - x0) * xs:.1f},{height - pad - (y - y0) * ys:.1f}" for s, y in pts)
        colour = COLOURS[i % len(COLOURS)]
        parts.append(f'<polyline points="{poly}" fill="none" stroke="{colour}" stroke-width="2"/>')
        parts.append(
            f'<text x="{pad}" y="{pad + 14 * i}" font-size="11" font-family="sans-serif" fill="{colour}">'
            f"{m} {y0:.4g}..{y1:.4g}</text>"
        )
    return atomic_write_text(Path(run) / VALIDATION_SVG, "\n".join(parts) + "\n</svg>\n")
