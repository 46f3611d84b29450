"""``ipvg demo``: the whole chain on the built-in tiny model, with no downloads.

Steps (each a normal stage call, so the demo exercises the real code paths):

1. write two small test sets from the real face photos shipped in packages (Track 1 ``eval.json``,
   Track 2 ``eval.json`` with timelines);
2. build a *reference* Track 1 submission: slow pans over each reference photo (the identity is kept
   perfectly, so it shows what good face scores look like);
3. generate both tracks with ``tiny-wan`` (a random-weight Wan; the videos are noise, but every file
   is a real H.264 video at its output name);
4. pack each submission into the organisers' zip names and re-check the zips;
5. score the reference and the generated Track 1 submission with the ``offline`` preset.

Rerunning resumes: finished videos and scores are reused; the demo's own zips are rebuilt.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ipvgkit.errors import CheckFailed, IpvgError
from ipvgkit.progress import Progress, ensure


@dataclass
class DemoConfig:
    out: Path = Path("demo-out")
    frames: int = 17
    height: int = 64
    width: int = 64
    fps: float = 8.0
    steps: int = 4
    seed: int = 0
    pan_frames: int = 33
    pan_size: int = 256
    models_dir: Path | None = None
    generate: bool = True
    score: bool = True
    overwrite: bool = False


@dataclass
class DemoStep:
    name: str
    ok: bool
    detail: str
    path: str = ""
    seconds: float = 0.0


@dataclass
class DemoReport:
    out: Path
    steps: list[DemoStep] = field(default_factory=list)
    zips: dict[str, Path] = field(default_factory=dict)
    reports: dict[str, Path] = field(default_factory=dict)
    totals: dict[str, dict] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.steps)


class _Within(Progress):
    """Forwards a stage's progress into the demo's, its phases named after the demo step."""

    def __init__(self, outer: Progress, step: str):
        self.outer, self.step = outer, step

    def phase(self, name: str, total: int | None = None) -> None:
        self.outer.phase(f"{self.step}: {name}", total)

    def advance(self, n: int = 1) -> None:
        self.outer.advance(n)

    def status(self, text: str) -> None:
        self.outer.status(f"{self.step}: {text}")

    def log(self, msg: str) -> None:
        self.outer.log(msg)


def _step(report: DemoReport, name: str, progress: Progress, fn: Callable[[], tuple[str, str]]) -> bool:
    """Run one step (a phase of one item); record (detail, path) or the one-line error. Returns success."""
    progress.phase(name, 1)
    t0 = time.perf_counter()
    try:
        detail, path = fn()
        ok = True
    except CheckFailed as e:
        detail, path, ok = f"{e} ({'; '.join(e.problems[:3])})" if e.problems else str(e), "", False
    except IpvgError as e:
        detail, path, ok = str(e), "", False
    report.steps.append(DemoStep(name, ok, detail, path, time.perf_counter() - t0))
    progress.phase(name, 1)
    progress.advance()
    return ok


def write_testsets(root: Path) -> dict[int, Path]:
    from ipvgkit.stages.demo_data import write_track1, write_track2

    return {1: write_track1(root / "track1"), 2: write_track2(root / "track2")}


def write_reference_submission(cases_path: Path, out: Path, n_frames: int, size: int) -> int:
    """One pan video per case over its first reference image; existing videos are kept."""
    from ipvgkit.data.testsets import load_cases
    from ipvgkit.media import encode_video
    from ipvgkit.media.synth import pan_frames

    written = 0
    for case in load_cases(cases_path):
        dest = out / case.output_name
        if dest.exists():
            continue
        encode_video(pan_frames(case.ref_images[0], n_frames, size, size), dest, fps=16)
        written += 1
    return written


def prepare_training_data(out: Path, cfg: DemoConfig) -> tuple[str, str]:
    """A tiny VIP-200K-format dataset from the face photos, prepared with ``ipvg prepare vip200k``."""
    from ipvgkit.stages.prepare_demo import prepare_demo

    rep, note = prepare_demo(out / "training", models_dir=cfg.models_dir)
    if rep.rejects:
        raise CheckFailed(f"{len(rep.rejects)} demo sample(s) rejected", [str(r) for r in rep.rejects])
    detail = f"{rep.samples} samples ({rep.done_now} prepared now, {rep.reused} reused); {note}"
    return detail, str(out / "training" / "prepared" / "manifest.jsonl")


FINETUNE_STEPS = 2


def finetune_demo(out: Path, cfg: DemoConfig) -> tuple[str, str]:
    """A few LoRA steps (reference-concat) of tiny-wan on the prepared demo data; a rerun resumes."""
    from ipvgkit.stages.finetune import finetune
    from ipvgkit.stages.finetune_config import FinetuneConfig, LoraSettings

    fcfg = FinetuneConfig(
        data=out / "training" / "prepared", out=out / "finetune", model="tiny-wan", models_dir=cfg.models_dir,
        frames=cfg.frames, height=cfg.height, width=cfg.width, max_steps=FINETUNE_STEPS, seed=cfg.seed,
        device="cpu", lora=LoraSettings(rank=4, alpha=4.0), resume="auto",
    )  # fmt: skip
    res = finetune(fcfg)
    loss = f", last loss {res.last['loss']:.3f}" if res.last else " (already trained)"
    return f"{res.steps} LoRA steps on the demo data{loss}", str(res.final)


def run_demo(cfg: DemoConfig, progress: Progress | None = None) -> DemoReport:
    """Run every step; a failed step is recorded and the later steps that need it are skipped. Each
    step is one ``progress`` phase (generation reports its cases inside it)."""
    progress = ensure(progress)
    out = Path(cfg.out)
    report = DemoReport(out=out)
    sets: dict[int, Path] = {}

    def testsets():
        sets.update(write_testsets(out / "testsets"))
        return f"Track 1: {sets[1]}, Track 2: {sets[2]}", str(out / "testsets")

    if not _step(report, "test sets", progress, testsets):
        return report

    def reference():
        n = write_reference_submission(sets[1], out / "reference" / "track1", cfg.pan_frames, cfg.pan_size)
        return f"{n} pan video(s) written over the reference photos", str(out / "reference" / "track1")

    _step(report, "reference submission (Track 1)", progress, reference)
    prepared = _step(
        report, "prepare training data (VIP-200K format)", progress, lambda: prepare_training_data(out, cfg)
    )
    tuned = prepared and _step(
        report, "fine-tune a LoRA (tiny-wan)", progress, lambda: finetune_demo(out, cfg)
    )
    loras = [out / "finetune" / "final"] if tuned else []
    generated = _generate_steps(cfg, sets, report, progress, loras) if cfg.generate else {}
    _pack_steps(out, sets, generated, report, progress)
    if cfg.score:
        _score_steps(cfg, sets, generated, report, progress)
    return report


def _generate_steps(
    cfg: DemoConfig, sets: dict[int, Path], report: DemoReport, progress: Progress, loras: list[Path]
) -> dict:
    """Generate both tracks with tiny-wan and the demo's LoRA (identity auto: reference-concat, as it was
    trained; without the LoRA identity none), said in the step's result."""
    from ipvgkit.models.base import Identity, ModelOptions
    from ipvgkit.stages.generate import GenerateConfig, run_generation

    generated: dict[int, Path] = {}
    for track in (1, 2):
        gen_dir = Path(cfg.out) / "generated" / f"track{track}"

        def generate(track=track, gen_dir=gen_dir):
            identity = Identity.auto if loras else Identity.none  # auto: the adapter says reference-concat
            options = ModelOptions(
                model="tiny-wan", identity=identity, models_dir=cfg.models_dir, device="cpu", lora=loras
            )
            gcfg = GenerateConfig(
                cases=sets[track], out=gen_dir, track=track, model_options=options, steps=cfg.steps,
                frames=cfg.frames, height=cfg.height, width=cfg.width, fps=cfg.fps, seed=cfg.seed,
                overwrite=cfg.overwrite,
            )  # fmt: skip
            rep = run_generation(gcfg, progress=_Within(progress, f"generate Track {track}"))
            rep.raise_if_failed()
            done, skipped = len(rep.by_status("ok")), len(rep.by_status("skipped"))
            generated[track] = gen_dir
            what = f"tiny-wan, identity {rep.identity}, {cfg.frames} frames"
            return f"{done} generated, {skipped} already done ({what})", str(gen_dir)

        _step(report, f"generate Track {track} (tiny-wan)", progress, generate)
    return generated


def _pack_steps(out: Path, sets: dict, generated: dict, report: DemoReport, progress: Progress) -> None:
    """Pack each submission into the organisers' zip name and check the zip again."""
    from ipvgkit.stages.pack import PackConfig, check_submission, pack_submission

    to_pack = {"reference_facial_results.zip": (out / "reference" / "track1", sets[1])}
    if 1 in generated:
        to_pack["facial_results.zip"] = (generated[1], sets[1])
    if 2 in generated:
        to_pack["sequential_action_results.zip"] = (generated[2], sets[2])
    for zip_name, (folder, cases) in to_pack.items():
        if not folder.is_dir():
            continue

        def pack(zip_name=zip_name, folder=folder, cases=cases):
            dest = out / "zips" / zip_name
            rep = pack_submission(PackConfig(submission=folder, output=dest, cases=cases, overwrite=True))
            again = check_submission(dest, cases=cases)
            if again.problems:
                raise CheckFailed(f"{dest}: re-check failed", again.problems)
            report.zips[zip_name] = dest
            return f"{len(rep.videos)} videos, checked again from the zip", str(dest)

        _step(report, f"pack {zip_name}", progress, pack)


def _score_steps(
    cfg: DemoConfig, sets: dict, generated: dict, report: DemoReport, progress: Progress
) -> None:
    """Score the reference and the generated Track 1 submission with the offline preset."""
    from ipvgkit.stages.score import ScoreConfig, run_scoring

    out = Path(cfg.out)
    to_score = {"reference": (out / "reference" / "track1", sets[1])}
    if 1 in generated:
        to_score["generated"] = (generated[1], sets[1])
    for label, (folder, cases) in to_score.items():

        def score(label=label, folder=folder, cases=cases):
            score_dir = out / "scores" / f"{label}-track1"
            rep = run_scoring(
                ScoreConfig(
                    submission=folder, cases=cases, out=score_dir, preset="offline",
                    models_dir=cfg.models_dir, overwrite=cfg.overwrite,
                )
            )  # fmt: skip
            means = rep.summary.get("metrics", {})
            report.totals[label] = rep.summary
            report.reports[label] = score_dir / "report.html"
            shown = ", ".join(
                f"{k}={v['mean']:.3f}" if isinstance(v, dict) and v.get("mean") is not None else f"{k}=n/a"
                for k, v in means.items()
            )
            return shown or "scored", str(score_dir / "report.html")

        _step(report, f"score {label} Track 1 (offline preset)", progress, score)
