"""run_scoring and run_selection end to end on real videos of real faces (offline metrics, tiny models)."""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ipvgkit.data.testsets import load_testset
from ipvgkit.errors import MissingWeightsError, UsageError
from ipvgkit.media import encode_video, probe_video
from ipvgkit.metrics import VideoSample, get_metric
from ipvgkit.stages.score import (
    MISSING_VIDEO,
    PARTIAL_NAME,
    ScoreConfig,
    build_metrics,
    open_sample,
    run_scoring,
)
from ipvgkit.stages.select import run_selection


def face_clip(image: Path, t: int = 10, size: int = 160, shift: int = 2, seed: int = 0) -> np.ndarray:
    """A clip panning slowly over a real photo (the face stays in view)."""
    im = np.asarray(Image.open(image).convert("RGB").resize((256, 256)))
    rng = np.random.default_rng(seed)
    x0, y0 = int(rng.integers(0, 20)), int(rng.integers(0, 20))
    crops = [im[y0 : y0 + 220, x0 + i * shift : x0 + i * shift + 220] for i in range(t)]
    return np.stack([np.asarray(Image.fromarray(c).resize((size, size))) for c in crops])


def make_testset(root: Path, ref: Path, n_ids: int = 2, prompts: int = 2) -> Path:
    ts = root / "testset"
    for i in range(1, n_ids + 1):
        d = ts / f"id{i:03d}"
        d.mkdir(parents=True)
        shutil.copy(ref, d / "ref.png")
        for k in range(1, prompts + 1):
            (d / f"prompt{k}.txt").write_text(f"a person, take {k}", encoding="utf-8")
    return ts


def make_submission(root: Path, ts: Path, ref: Path, skip: tuple[str, ...] = (), shift: int = 2) -> Path:
    sub = root / "submission"
    for case in load_testset(ts).cases:
        if case.output_name in skip:
            continue
        seed = sum(map(ord, case.output_name))
        encode_video(face_clip(ref, shift=shift, seed=seed), sub / case.output_name, fps=8)
    return sub


@pytest.fixture
def setup(tmp_path, tom_hanks):
    ts = make_testset(tmp_path, tom_hanks)
    sub = make_submission(tmp_path, ts, tom_hanks, skip=("id002/prompt2.mp4",))
    return ts, sub


def _cfg(ts, sub, out, **kw) -> ScoreConfig:
    return ScoreConfig(submission=sub, cases=ts, out=out, **kw)


def test_offline_preset_end_to_end(tmp_path, setup):
    ts, sub = setup
    out = tmp_path / "out"
    rep = run_scoring(_cfg(ts, sub, out, preset="offline"))
    assert rep.metric_names == ["facesim_dlib", "motion_amplitude", "dynamic_degree", "timeline_contrast"]
    assert rep.missing == ["id002/prompt2.mp4"] and not rep.ok and rep.failed == []
    rows = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert [r["output_name"] for r in rows] == [c.output_name for c in load_testset(ts).cases]
    missing = rows[3]
    assert missing["metrics"] == {n: None for n in rep.metric_names}
    assert set(missing["errors"].values()) == {MISSING_VIDEO}
    for r in rows[:3]:
        assert r["not_applicable"] == {"timeline_contrast": True}  # Track 1: no timeline
        assert all(v is not None for k, v in r["metrics"].items() if k != "timeline_contrast"), r
        assert r["metrics"]["facesim_dlib"] > 0.5  # the same person as the reference
        assert r["extra"]["facesim_dlib"]["frames_no_face"] < 16
        assert r["total"] is not None
    summary = json.loads((out / "summary.json").read_text())
    tc = summary["metrics"]["timeline_contrast"]
    assert (tc["n"], tc["n_not_applicable"], tc["n_failed"]) == (0, 3, 1)
    for n in rep.metric_names[:3]:
        vals = [r["metrics"][n] for r in rows[:3]]
        assert summary["metrics"][n]["mean"] == pytest.approx(np.mean(vals))
        assert summary["metrics"][n]["n"] == 3
    assert summary["videos"] == {"cases": 4, "scored": 3, "missing": 1, "with_failures": 1}
    assert summary["total"] is not None and 0 <= summary["total"] <= 1
    assert (out / "score.yaml").is_file() and not (out / PARTIAL_NAME).exists()
    html = (out / "report.html").read_text()
    assert "<svg" in html and "data:image/jpeg;base64," in html
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in html
    assert "<script src" not in html and "<link" not in html  # inline script only (table sorting)


def test_resume_reuses_unchanged_videos(tmp_path, setup):
    ts, sub = setup
    out = tmp_path / "out"
    metrics = ["motion_amplitude", "dynamic_degree"]
    first = run_scoring(_cfg(ts, sub, out, metrics=metrics))
    assert (first.scored, first.reused) == (3, 0)
    again = run_scoring(_cfg(ts, sub, out, metrics=metrics))
    assert (again.scored, again.reused) == (0, 3)
    assert again.rows == first.rows
    # a changed video is scored again, the others are reused
    v = sub / "id001" / "prompt1.mp4"
    encode_video(np.repeat(face_clip(Path(ts / "id001" / "ref.png"))[:1], 10, axis=0), v, fps=8)
    third = run_scoring(_cfg(ts, sub, out, metrics=metrics))
    assert (third.scored, third.reused) == (1, 2)
    assert third.rows[0].metrics["dynamic_degree"] == 0.0
    # another metric set is another signature: nothing is reused
    other = run_scoring(_cfg(ts, sub, out, metrics=["motion_amplitude"]))
    assert (other.scored, other.reused) == (3, 0)
    forced = run_scoring(_cfg(ts, sub, out, metrics=["motion_amplitude"], overwrite=True))
    assert (forced.scored, forced.reused) == (3, 0)


def test_missing_weights_fail_before_any_video(tmp_path, setup):
    ts, sub = setup
    out = tmp_path / "out"
    with pytest.raises(MissingWeightsError, match="clip-vit-base-patch32.*needed by clipscore"):
        run_scoring(
            _cfg(ts, sub, out, metrics=["motion_amplitude", "clipscore"], models_dir=tmp_path / "none")
        )
    assert not (out / "scores.jsonl").exists()


def test_usage_errors(tmp_path, setup):
    ts, sub = setup
    with pytest.raises(UsageError, match="unknown metric 'bogus'"):
        run_scoring(_cfg(ts, sub, tmp_path / "o", metrics=["bogus"]))
    with pytest.raises(UsageError, match="unknown preset"):
        run_scoring(_cfg(ts, sub, tmp_path / "o", preset="bogus"))
    with pytest.raises(UsageError, match="either a preset or a metric list"):
        ScoreConfig(preset="offline", metrics=["motion_amplitude"])


def test_unreadable_video_is_reported_not_fatal(tmp_path, setup):
    ts, sub = setup
    (sub / "id002" / "prompt2.mp4").write_bytes(b"\x00" * 100)
    rep = run_scoring(_cfg(ts, sub, tmp_path / "out", metrics=["motion_amplitude"]))
    assert rep.missing == []
    assert len(rep.failed) == 1 and rep.failed[0].startswith("id002/prompt2.mp4: motion_amplitude:")
    assert [r.metrics["motion_amplitude"] is None for r in rep.rows] == [False, False, False, True]


@pytest.mark.slow
def test_one_pass_equals_metrics_run_one_at_a_time(tmp_path, tom_hanks):
    """Shared decoding/detections/flows change no number: compare with fresh per-metric samples."""
    from ipvgkit.metrics import MetricContext

    ts = make_testset(tmp_path, tom_hanks, n_ids=1, prompts=1)
    sub = make_submission(tmp_path, ts, tom_hanks)
    rep = run_scoring(_cfg(ts, sub, tmp_path / "out", preset="offline"))
    case = load_testset(ts).cases[0]
    path = sub / case.output_name
    shared = open_sample(case, path, build_metrics("offline", rep.metric_names))
    assert shared.decode_passes == 1
    for name in rep.metric_names:
        m = get_metric(name)
        m.load(MetricContext())
        info = probe_video(path, count_frames=True)
        alone = VideoSample(case, path, info, m.frames_for(case, info.n_frames, info.fps))
        assert m.compute(alone).value == pytest.approx(rep.rows[0].metrics[name], abs=1e-9)
        assert m.compute(shared).value == pytest.approx(rep.rows[0].metrics[name], abs=1e-9)
    assert shared.decode_passes == 1  # every metric was served from the one pass


def test_best_of_n_selection(tmp_path, tom_hanks):
    ts = make_testset(tmp_path, tom_hanks, n_ids=1, prompts=2)
    still = make_submission(tmp_path / "a", ts, tom_hanks, shift=0)
    moving = make_submission(tmp_path / "b", ts, tom_hanks, shift=6)
    os.rename(still, tmp_path / "still")
    os.rename(moving, tmp_path / "moving")
    cands = [tmp_path / "still", tmp_path / "moving"]
    base = ScoreConfig(cases=ts, out=tmp_path / "scores", metrics=["motion_amplitude", "dynamic_degree"])
    best = tmp_path / "best"
    rep = run_selection(base, cands, best)
    assert rep.ok and rep.copied == 2
    sel = json.loads((tmp_path / "scores" / "selection.json").read_text())
    assert not (best / "selection.json").exists()  # best/ holds only videos (ipvg pack takes it as is)
    for name in ("id001/prompt1.mp4", "id001/prompt2.mp4"):
        assert sel["cases"][name]["chosen"] == "moving"
        t = sel["cases"][name]["totals"]
        assert t["moving"] > t["still"]
        assert (best / name).read_bytes() == (tmp_path / "moving" / name).read_bytes()
    assert (tmp_path / "scores" / "still" / "scores.jsonl").is_file()
    assert (tmp_path / "scores" / "moving" / "summary.json").is_file()
    # rerun: identical files stay, nothing is copied
    again = run_selection(base, cands, best)
    assert (again.copied, again.kept) == (0, 2)
    # a different file in the way is never replaced without overwrite
    (best / "id001" / "prompt1.mp4").write_bytes(b"other")
    with pytest.raises(UsageError, match="--overwrite"):
        run_selection(base, cands, best)
    assert (best / "id001" / "prompt1.mp4").read_bytes() == b"other"
    import dataclasses

    forced = run_selection(dataclasses.replace(base, overwrite=True), cands, best)
    assert forced.copied >= 1
    assert (best / "id001" / "prompt1.mp4").read_bytes() == (
        tmp_path / "moving" / "id001/prompt1.mp4"
    ).read_bytes()


def test_selection_ties_go_to_the_first_candidate(tmp_path, tom_hanks):
    ts = make_testset(tmp_path, tom_hanks, n_ids=1, prompts=1)
    sub = make_submission(tmp_path, ts, tom_hanks, shift=0)
    twin = tmp_path / "twin"
    shutil.copytree(sub, twin)
    base = ScoreConfig(cases=ts, out=tmp_path / "scores", metrics=["dynamic_degree"])
    rep = run_selection(base, [sub, twin], tmp_path / "best")
    assert rep.choices["id001/prompt1.mp4"]["chosen"] == "submission"
    with pytest.raises(UsageError, match="both named"):
        run_selection(base, [sub, sub], tmp_path / "best2")


def test_run_level_finalize_hook(tmp_path, setup):
    """A metric's finalize() result lands in summary.run_metrics; after a resume it says what it missed."""
    from ipvgkit.metrics import Metric, MetricResult

    class FrameCount(Metric):
        name = "frame_count"
        family = "test"

        def __init__(self):
            self.seen = 0

        def frame_indices(self, n_frames):
            return [0]

        def compute(self, sample):
            self.seen += 1
            return MetricResult(float(sample.n_frames), {"n": np.int64(1), "arr": np.arange(2)})

        def finalize(self, results):
            return {"value": sum(r.value for r in results if r.value is not None), "computed": self.seen}

    ts, sub = setup
    out = tmp_path / "out"
    rep = run_scoring(_cfg(ts, sub, out, metrics=["motion_amplitude"]), metrics=[FrameCount()])
    assert rep.summary["run_metrics"]["frame_count"] == {"value": 30.0, "computed": 3}
    first = json.loads((out / "scores.jsonl").read_text().splitlines()[0])
    assert first["extra"]["frame_count"] == {"n": 1, "arr": [0, 1]}  # numpy values written as JSON
    again = run_scoring(_cfg(ts, sub, out, metrics=["motion_amplitude"]), metrics=[FrameCount()])
    assert again.summary["run_metrics"]["frame_count"] == {
        "value": 30.0,
        "computed": 0,
        "videos_reused_not_included": 3,
    }


@pytest.mark.slow
def test_model_metrics_on_a_track2_testset(tmp_path, tom_hanks):
    """clipscore, timeline_alignment and the vbench preset's DINO metric with tiny models, format C input."""
    from tests.support.tiny_models import make_tiny_clip, make_tiny_dino

    models = tmp_path / "models"
    make_tiny_clip(models / "clip-vit-base-patch32")
    make_tiny_dino(models / "dino-vitb16")
    root = tmp_path / "t2"
    (root / "imgs").mkdir(parents=True)
    shutil.copy(tom_hanks, root / "imgs" / "a.png")
    entry = {
        "img_paths": ["imgs/a.png"],
        "class_label": ["man"],
        "global_prompt": "a man waves and then sits",
        "temporal_captions": [
            {"start": 0, "end": 0.5, "description": "waves"},
            {"start": 0.5, "end": 1, "description": "sits"},
        ],
    }
    (root / "eval.json").write_text(json.dumps({"1": entry, "2": entry}))
    sub = tmp_path / "sub"
    encode_video(face_clip(tom_hanks, t=12, size=64), sub / "1.mp4", fps=8)
    encode_video(face_clip(tom_hanks, t=12, size=64, seed=3), sub / "2.mp4", fps=8)
    metrics = ["clipscore", "timeline_alignment", "subject_consistency"]
    cfg = _cfg(root / "eval.json", sub, tmp_path / "out", metrics=metrics, models_dir=models, video_batch=2)
    rep = run_scoring(cfg)
    assert rep.ok, rep.problems()
    for row in rep.rows:
        assert all(row.metrics[m] is not None for m in metrics), row
        assert 0.0 <= row.extra["timeline_alignment"]["order_accuracy"] <= 1.0
        assert row.extra["timeline_alignment"]["events"] == 2
    # the batched run equals each metric on each video alone
    from ipvgkit.metrics import MetricContext

    case = load_testset(root / "eval.json").cases[1]
    for name in metrics:
        m = get_metric(name)
        m.load(MetricContext(models_dir=models))
        info = probe_video(sub / "2.mp4", count_frames=True)
        alone = VideoSample(case, sub / "2.mp4", info, m.frames_for(case, info.n_frames, info.fps))
        assert m.compute(alone).value == pytest.approx(rep.rows[1].metrics[name], abs=1e-5)


def test_processes_give_the_same_rows_as_one_process(tmp_path, setup):
    """Scoring video chunks in two spawned processes changes nothing but the time."""
    from ipvgkit.stages.score import build_metrics, parallel_processes

    ts, sub = setup
    serial = run_scoring(_cfg(ts, sub, tmp_path / "one", preset="offline", video_batch=1, processes=1))
    cfg = _cfg(ts, sub, tmp_path / "two", preset="offline", video_batch=1, processes=2)
    assert parallel_processes(cfg, build_metrics("offline", serial.metric_names), n_chunks=3) == 2
    pooled = run_scoring(cfg)
    strip = ("seconds",)
    for a, b in zip(serial.rows, pooled.rows, strict=True):
        a, b = a.to_json(), b.to_json()
        assert {k: v for k, v in a.items() if k not in strip} == {
            k: v for k, v in b.items() if k not in strip
        }


def test_run_level_metrics_and_gpu_stay_in_one_process(setup):
    from ipvgkit.stages.score import build_metrics, parallel_processes

    ts, sub = setup
    stateful = build_metrics(None, ["facesim_dlib", "fid"])
    assert parallel_processes(ScoreConfig(processes=4), stateful, n_chunks=8) == 1
    torch_models = build_metrics(None, ["motion_amplitude", "clipscore"])
    assert parallel_processes(ScoreConfig(processes=4), torch_models, n_chunks=8) == 1
    plain = build_metrics("offline", ["facesim_dlib", "motion_amplitude", "dynamic_degree"])
    assert parallel_processes(ScoreConfig(processes=4, device="cuda"), plain, n_chunks=8) == 1
    assert parallel_processes(ScoreConfig(processes=4), plain, n_chunks=3) == 3
    assert parallel_processes(ScoreConfig(processes=4), plain, n_chunks=1) == 1


@pytest.mark.slow
def test_processes_work_from_a_stdin_script(tmp_path, setup):
    """Spawned workers must not try to re-run a ``python -`` main script (it names no file)."""
    import subprocess
    import sys

    ts, sub = setup
    script = (
        "from ipvgkit.stages.score import ScoreConfig, run_scoring\n"
        f"r = run_scoring(ScoreConfig(submission={str(sub)!r}, cases={str(ts)!r}, preset='offline',"
        f" out={str(tmp_path / 'o')!r}, video_batch=1, processes=2))\n"
        "print(r.scored)\n"
    )
    out = subprocess.run([sys.executable, "-"], input=script, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "3"


def test_selected_folder_packs_as_is(tmp_path, tom_hanks):
    """``--select BEST`` writes only videos into BEST: the real ``pack`` takes it without a problem."""
    import zipfile

    from ipvgkit.stages.pack import PackConfig, pack_submission

    ts = make_testset(tmp_path, tom_hanks, n_ids=2, prompts=1)
    a = make_submission(tmp_path / "a", ts, tom_hanks, shift=0).rename(tmp_path / "still")
    b = make_submission(tmp_path / "b", ts, tom_hanks, shift=6).rename(tmp_path / "moving")
    best = tmp_path / "best"
    base = ScoreConfig(cases=ts, out=tmp_path / "scores", metrics=["motion_amplitude"])
    sel = run_selection(base, [a, b], best)
    assert sel.ok and sel.selection == tmp_path / "scores" / "selection.json" and sel.selection.is_file()
    assert sorted(p.relative_to(best).as_posix() for p in best.rglob("*") if p.is_file()) == [
        "id001/prompt1.mp4",
        "id002/prompt1.mp4",
    ]
    rep = pack_submission(PackConfig(submission=best, output=tmp_path / "best.zip", cases=ts))
    assert rep.ok, rep.problems
    with zipfile.ZipFile(tmp_path / "best.zip") as z:
        assert sorted(n for n in z.namelist() if not n.endswith("/")) == [
            "submission/id001/prompt1.mp4",
            "submission/id002/prompt1.mp4",
        ]
    (best / "selection.json").write_text("{}")  # where selection.json used to be: pack leaves it out
    rep = pack_submission(PackConfig(submission=best, output=tmp_path / "b2.zip", cases=ts))
    assert rep.ok and any("selection.json" in n for n in rep.notes), rep.notes
    with zipfile.ZipFile(tmp_path / "b2.zip") as z:
        assert not any(n.endswith("selection.json") for n in z.namelist())
    old = {"candidates": {}, "cases": {}}  # one that an earlier version wrote is removed by a rerun
    (best / "selection.json").write_text(json.dumps(old))
    run_selection(base, [a, b], best)
    assert not (best / "selection.json").exists()


def test_scoring_and_selection_report_through_progress(tmp_path, setup):
    from ipvgkit.progress import Recorder

    ts, sub = setup
    rec = Recorder()
    run_scoring(_cfg(ts, sub, tmp_path / "out", metrics=["motion_amplitude"]), progress=rec)
    assert ("phase", "score", 4) in rec.events and rec.count("advance") >= 2
    assert sum(n for kind, n, _ in rec.events if kind == "advance") == 4  # the missing one at once
    assert ("status", "id001/prompt1.mp4", None) in rec.events
    rec = Recorder()
    base = ScoreConfig(cases=ts, out=tmp_path / "sel", metrics=["motion_amplitude"])
    run_selection(base, [sub], tmp_path / "best", progress=rec)
    assert ("phase", "score submission", 4) in rec.events


def test_thumbnails_are_stored_kept_on_resume_and_the_report_needs_no_video(tmp_path, setup):
    from ipvgkit.stages.score_report import write_report
    from ipvgkit.stages.score_rows import read_thumbs, thumbs_path

    ts, sub = setup
    out = tmp_path / "out"
    cfg = _cfg(ts, sub, out, metrics=["motion_amplitude"])
    first = run_scoring(cfg)
    stored = {r.output_name: read_thumbs(out, r.output_name) for r in first.rows}
    assert stored["id002/prompt2.mp4"] is None  # the missing video
    t = stored["id001/prompt1.mp4"]
    assert (
        t.n_frames == 10
        and t.fps == pytest.approx(8.0)
        and sorted(t.frames) == [int(p) for p in np.linspace(0, 9, 8)]
    )
    assert all(b[:2] == b"\xff\xd8" for b in t.frames.values())  # JPEG
    stamp = thumbs_path(out, "id001/prompt1.mp4").stat().st_mtime_ns
    again = run_scoring(cfg)
    assert again.reused == 3 and thumbs_path(out, "id001/prompt1.mp4").stat().st_mtime_ns == stamp
    # the report is drawn from the stored frames alone: it works with the submission gone
    sub.rename(tmp_path / "away")
    write_report(
        out / "again.html",
        again.rows,
        again.summary,
        load_testset(ts).cases,
        [get_metric("motion_amplitude")],
    )
    html = (out / "again.html").read_text()
    assert "video not readable" in html
    for name, th in stored.items():  # every stored frame is in the page
        assert th is None or all(base64.b64encode(b).decode() in html for b in th.frames.values()), name
    # a video that is gone loses its thumbnails on the next run
    (tmp_path / "away").rename(sub)
    (sub / "id001" / "prompt1.mp4").unlink()
    run_scoring(cfg)
    assert not thumbs_path(out, "id001/prompt1.mp4").exists()


def test_resume_signature_holds_what_flow_auto_resolves_to(tmp_path):
    """Installing torchvision (or the RAFT weights) changes what ``flow auto`` runs: the signature must
    change with it, so no Farneback row is reused for a RAFT run (and the other way round)."""
    from ipvgkit.metrics.flow import resolve_flow
    from ipvgkit.metrics.motion import DynamicDegree
    from ipvgkit.stages.score_setup import signature

    ran = resolve_flow("auto", tmp_path)[0]
    other = "raft-things" if ran == "opencv-farneback" else "opencv-farneback"
    auto = signature(None, [DynamicDegree(flow="auto")], False, tmp_path)
    assert auto == signature(None, [DynamicDegree(flow=ran)], False, tmp_path)
    assert auto != signature(None, [DynamicDegree(flow=other)], False, tmp_path)


def _rotated_jpeg(src: Path, dest: Path) -> Path:
    """A non-square JPEG whose EXIF says "rotate 90 degrees" (orientation 6), as phones write them."""
    im = Image.open(src).convert("RGB").resize((200, 120))
    exif = Image.Exif()
    exif[0x0112] = 6
    im.save(dest, exif=exif.tobytes(), quality=95)
    return dest


def test_reference_images_are_scored_as_stored_and_an_exif_rotation_is_warned(tmp_path, tom_hanks):
    """The 2025 reference code reads references with ``Image.open(p).convert("RGB")`` (EXIF ignored):
    the metrics see the stored pixels, and the summary says which references carry a rotation."""
    from ipvgkit.metrics.base import exif_rotated

    ts = make_testset(tmp_path, tom_hanks, n_ids=1, prompts=1)
    ref = ts / "id001" / "ref.png"
    ref.unlink()
    rotated = _rotated_jpeg(tom_hanks, ts / "id001" / "ref.jpg")
    assert exif_rotated(rotated) and not exif_rotated(tom_hanks)
    case = load_testset(ts).cases[0]
    sub = make_submission(tmp_path, ts, tom_hanks)
    sample = open_sample(case, sub / case.output_name, build_metrics(None, ["motion_amplitude"]))
    stored = np.asarray(Image.open(rotated).convert("RGB"))
    assert stored.shape == (120, 200, 3)  # upright would be (200, 120, 3)
    assert np.array_equal(sample.ref_images()[0], stored)
    rep = run_scoring(_cfg(ts, sub, tmp_path / "out", metrics=["motion_amplitude"], report=False))
    warned = [w for w in rep.summary["warnings"] if "EXIF rotation" in w]
    assert len(warned) == 1 and str(rotated) in warned[0]
