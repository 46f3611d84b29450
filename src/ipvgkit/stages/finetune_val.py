"""Validation during ``ipvg finetune``: every ``validation.every`` steps, generate a small test set with
the current weights, score the videos with weight-free metrics, and record the numbers.

At step ``N`` (main process; the other ranks wait):

1. the current adapter (LoRA and / or face adapter) is written like ``RUN/final`` into
   ``RUN/validation/step-N/weights`` (each validated adapter stays on disk);
2. ``ipvg generate`` (:func:`ipvgkit.stages.generate.run_generation`, in this process) runs every case of
   ``validation.cases`` with the run's identity method into ``RUN/validation/step-N/videos``
   (``validation.frames/height/width`` default to the run's; ``steps``, ``guidance``, ``seed`` as given;
   the same seeds at every step). It generates with the training model itself (:class:`Validator`):
   the live, unwrapped transformer with its LoRA and face adapter as they are at step ``N``, no second
   copy of the base model. The text encoder and VAE are the training's when it loaded them; what it
   did not load is read once, at the first validation, and kept for the run's later ones (the run's
   notes say which). Nothing of the training changes: no autograd, every module back in its own
   train / eval mode, the processors restored, the global RNG state and the VAE's tiling kept, no
   parameter cast or moved (checked by the backend);
3. ``ipvg score`` (:func:`ipvgkit.stages.score.run_scoring`) scores them with ``validation.metrics``
   (default ``motion_amplitude``: optical flow, no weights) into ``RUN/validation/step-N/scores``;
4. one line ``{"step", "cases", "ok", <metric>: mean, ...}`` is appended to ``RUN/validation.jsonl``
   and ``RUN/validation.svg`` is redrawn (one line per metric, each scaled to its own range).

The videos are those ``ipvg generate --lora RUN/validation/step-N/weights`` makes from the files (bitwise
in fp32 on CPU, tested); with bf16 base weights on a GPU they differ slightly, since the live LoRA
runs in fp32 while a loaded one takes the base weights' dtype.

Keep the test set small (a few cases at a tiny size): validation time adds to training time. A resumed
run drops the lines of later steps first (they are redone).
"""

from __future__ import annotations

import contextlib
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


class Validator:
    """Generation with the training model itself for every validation of a run (module docstring,
    step 2): one ``WanBackend.with_components`` per validation around the live components."""

    def __init__(self, model: Any, cfg: Any, device: str):
        self.model = model  # the model layer's training model (WanTraining)
        self.cfg = cfg
        self.device = device
        self.components = model.components()  # unwrapped transformer (+ text encoder, tokenizer, VAE)
        self.shared = sorted(self.components)
        self.loaded: list[str] = []  # read from disk for validation at the first one, kept
        self.backend: Any = None  # the last validation's backend

    def options(self, weights: Path) -> Any:
        """The generation options: the run's model, identity method and weight dtype; the LoRA files of
        ``weights`` are recorded (their tensors are the live transformer's), the face adapter folder
        gives the adapter's config. A text encoder the training did not load waits on the CPU between
        encodings on a GPU (``text_encoder=offload``; the same numbers)."""
        import torch

        from ipvgkit.models.base import ModelOptions
        from ipvgkit.models.lora import LORA_WEIGHT_NAME

        cfg = self.cfg
        lora = [weights] if (weights / LORA_WEIGHT_NAME).is_file() else []
        face = weights if cfg.method == "face-adapter" else None
        dtype = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[
            self.model.weight_dtype
        ]
        own_text = "text_encoder" in self.shared or self.device == "cpu"
        return ModelOptions(
            model=cfg.model, models_dir=cfg.models_dir, lora=lora, adapter=face, identity=cfg.method,
            device=self.device, dtype=dtype, text_encoder="device" if own_text else "offload",
        )  # fmt: skip

    def generate(self, gen: Any) -> Any:
        """``run_generation(gen)`` with the live components (:func:`frozen` around it)."""
        from ipvgkit.models.wan import WanBackend
        from ipvgkit.stages.generate import run_generation

        backend = WanBackend.with_components(gen.model_options, self.model.resolved, **self.components)
        with frozen(self.model):
            report = run_generation(gen, backend=backend, progress=None)
        for name, module in backend.loaded_components().items():
            if name not in self.components:
                self.components[name] = module
                self.loaded.append(name)
        self.backend = backend
        return report

    @property
    def note(self) -> str:
        """What validation generates with, for the run's notes."""
        loaded = ", ".join(self.loaded) or "nothing but the scheduler config"
        return (
            "validation generates with the training transformer itself (no second copy); shared with "
            f"training: {', '.join(self.shared)}; loaded for validation (once, kept for the run): {loaded}"
        )


@contextlib.contextmanager
def frozen(model: Any):
    """Generation on the training model without changing it for training: the last prediction's
    processors restored, no autograd, every module in eval mode (then back in its own mode), the global
    torch RNG state and the training VAE's tiling kept."""
    import torch

    model.release()
    modules = list(model.trainable().modules())
    modes = [m.training for m in modules]
    vae = model.vae
    tiling = getattr(vae, "use_tiling", None)
    dev = model.device
    cuda = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=cuda), torch.no_grad():
            model.trainable().eval()
            yield
    finally:
        for m, mode in zip(modules, modes, strict=True):
            m.training = mode
        if tiling is not None:
            vae.use_tiling = tiling


def validate(run: Path, step: int, cfg: Any, weights: Path, validator: Validator, progress: Progress) -> dict:
    """Steps 2-4 of the module docstring for the weights written to ``weights``; returns the jsonl row."""
    from ipvgkit.stages.generate import GenerateConfig
    from ipvgkit.stages.score import ScoreConfig, run_scoring

    v = cfg.validation
    here = step_dir(run, step)
    gen = GenerateConfig(
        cases=Path(v.cases), out=here / "videos", model_options=validator.options(weights), steps=v.steps,
        guidance=v.guidance, frames=v.frames or cfg.frames, height=v.height or cfg.height,
        width=v.width or cfg.width, fps=cfg.fps, seed=v.seed, overwrite=True, background_encode=False,
    )  # fmt: skip
    report = validator.generate(gen)
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
