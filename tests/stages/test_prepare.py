"""ipvg prepare on real small videos (good, truncated, missing, too short) and a ReactID tree."""

import json

import numpy as np
import pytest
from PIL import Image

from ipvgkit.data.manifest import read_manifest, sample_id
from ipvgkit.errors import InputError
from ipvgkit.progress import Recorder
from ipvgkit.stages.prepare import PrepareConfig, run_prepare
from ipvgkit.stages.prepare_work import SampleSettings, bucket_frames, choose_bucket
from tests.data.sources.builders import BOX, SIZE, reactid_tree, vip200k_dataset

SMALL = SampleSettings(buckets=["96x128", "128x96"], max_frames=33)


def _cfg(ann, videos, out, **kw):
    kw.setdefault("face_backend", "none")
    return PrepareConfig(
        source="vip200k", annotations=ann, videos=videos, out=out, workers=1, sample=SMALL, **kw
    )


@pytest.fixture(scope="module")
def vip(tmp_path_factory):
    return vip200k_dataset(tmp_path_factory.mktemp("vip"))


def test_bucket_arithmetic():
    assert bucket_frames(2.0, 16, 81) == 29  # 32 frames fit -> 4k+1 below: 29
    assert bucket_frames(10.0, 16, 81) == 81 and bucket_frames(0.2, 16, 81) == 1
    assert choose_bucket(1280, 720, ["480x832", "832x480", "624x624"]) == (480, 832)
    assert choose_bucket(500, 520, ["480x832", "832x480", "624x624"]) == (624, 624)


def test_good_samples_in_the_manifest_bad_ones_in_rejects(vip, tmp_path):
    ann, videos = vip
    rec = Recorder()
    report = run_prepare(_cfg(ann, videos, tmp_path / "p"), rec)
    samples = read_manifest(tmp_path / "p", source="vip200k")
    assert [s.video_id for s in samples] == ["good1", "good1", "good2"]
    s0 = next(s for s in samples if s.frame_start == 10)
    assert s0.sample_id == sample_id("vip200k", "good1", 10, 50)
    assert (s0.frame_end, s0.fps, s0.t_start, s0.t_end, s0.video_fps) == (50, 30.0, 10 / 30, 50 / 30, 30.0)
    assert s0.bucket == {"height": 96, "width": 128, "frames": 21, "fps": 16}  # 1.33 s at 16 fps -> 21
    assert s0.quality["decoded_frames"] == 40
    assert s0.ref_same_segment is False  # cut from the face of the other segment
    g2 = next(s for s in samples if s.video_id == "good2")
    assert g2.ref_same_segment is True  # its only face is inside its only segment
    crop = np.asarray(Image.open(tmp_path / "p" / g2.ref_images[0]))
    # the annotated box (72 x 68 px) plus a 25% margin each side, clamped to the 128 x 96 frame
    x1, y1, x2, y2 = BOX[0] * SIZE[1], BOX[1] * SIZE[0], BOX[2] * SIZE[1], BOX[3] * SIZE[0]
    mx, my = (x2 - x1) * 0.25, (y2 - y1) * 0.25
    w = min(SIZE[1], int(np.ceil(x2 + mx))) - max(0, int(np.floor(x1 - mx)))
    h = min(SIZE[0], int(np.ceil(y2 + my))) - max(0, int(np.floor(y1 - my)))
    assert crop.shape == (h, w, 3)
    rejects = [json.loads(x) for x in (tmp_path / "p/rejects.jsonl").read_text().splitlines()]
    assert {(r["video_id"], r["reason"]) for r in rejects} == {
        ("cut", "corrupt-video"), ("gone", "missing-video"), ("short", "too-short"),
    }  # fmt: skip
    assert all(r["sample"] and r["segment"] and r["detail"] for r in rejects)
    assert report.by_reason == {"corrupt-video": 1, "missing-video": 1, "too-short": 1}
    assert rec.count("advance") == 5  # the five samples with a video on disk
    from ipvgkit.config import resolve

    assert resolve(PrepareConfig, tmp_path / "p/prepare.yaml") == _cfg(ann, videos, tmp_path / "p")
    record = json.loads((tmp_path / "p/prepare.json").read_text())
    assert record["state"] == "finished" and record["face_backend"] == "none"


def test_rerun_changes_nothing_and_settings_change_redoes(vip, tmp_path):
    ann, videos = vip
    out = tmp_path / "p"
    run_prepare(_cfg(ann, videos, out))
    first = (out / "manifest.jsonl").read_bytes()
    again = run_prepare(_cfg(ann, videos, out))
    assert again.done_now == 0 and again.reused == 5
    assert (out / "manifest.jsonl").read_bytes() == first
    stricter = SampleSettings(buckets=SMALL.buckets, max_frames=33, min_face_px=80)
    third = run_prepare(PrepareConfig(source="vip200k", annotations=ann, videos=videos, out=out, workers=1,
                                      face_backend="none", sample=stricter))  # fmt: skip
    assert third.done_now == 5 and third.by_reason.get("small-face") == 3


def test_process_pool_gives_the_same_manifest(vip, tmp_path):
    ann, videos = vip
    run_prepare(_cfg(ann, videos, tmp_path / "a"))
    run_prepare(PrepareConfig(source="vip200k", annotations=ann, videos=videos, out=tmp_path / "b", workers=2,
                              face_backend="none", sample=SMALL))  # fmt: skip
    assert (tmp_path / "a/manifest.jsonl").read_bytes() == (tmp_path / "b/manifest.jsonl").read_bytes()


def test_box_outside_frame_and_bad_output_folders(vip, tmp_path):
    ann, videos = vip
    data = json.loads(ann.read_text())
    data[1]["faces"][0]["xyxy_norm"] = [1.2, 0.1, 1.6, 0.5]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    rep = run_prepare(_cfg(bad, videos, tmp_path / "p", limit=3))
    assert ("good2", "box-outside-frame") in {(r["video_id"], r["reason"]) for r in rep.rejects}
    # the same folder for another source: an error before any work
    with pytest.raises(InputError, match="holds a 'vip200k' prepare run"):
        run_prepare(PrepareConfig(source="reactid", root=reactid_tree(tmp_path / "r"), out=tmp_path / "p"))
    line = json.loads((tmp_path / "p/manifest.jsonl").read_text().splitlines()[0])
    (tmp_path / "q").mkdir()
    (tmp_path / "q/manifest.jsonl").write_text(json.dumps({**line, "schema": 2}) + "\n")
    with pytest.raises(InputError, match="schema 2"):
        run_prepare(_cfg(ann, videos, tmp_path / "q"))
    with pytest.raises(InputError, match="videos folder not found"):
        run_prepare(_cfg(ann, tmp_path / "none", tmp_path / "z"))
    assert not (tmp_path / "z").exists()


def test_reactid_events_in_seconds_and_frames(tmp_path):
    root = reactid_tree(tmp_path / "r")
    cfg = PrepareConfig(source="reactid", root=root, out=tmp_path / "p", workers=1, face_backend="none",
                        sample=SampleSettings(buckets=["96x128"], max_frames=81))  # fmt: skip
    report = run_prepare(cfg)
    a, b = read_manifest(tmp_path / "p", source="reactid")
    assert (a.video_id, a.events_units, b.events_units) == ("a00_clip.mp4", "seconds", "frames")
    assert [(e.start, e.end, e.text) for e in a.events] == [(0.0, 1.5, "waves"), (1.5, 3.0, "sits")]
    assert [(e.start, e.end) for e in b.events] == [(0.0, 1.5), (1.5, 3.0)]  # 24 and 48 frames at 16 fps
    assert (a.frame_start, a.frame_end, a.fps, a.t_end) == (0, 48, 16.0, 3.0)
    assert a.bucket["frames"] == 45 and a.ref_same_segment
    assert b.face_box == pytest.approx(BOX, abs=1e-3)  # a pixel face_bbox, normalised by the frame size
    assert report.by_reason == {"missing-video": 1}


def test_a_second_run_on_the_same_folder_is_refused(vip, tmp_path):
    import subprocess
    import sys

    from ipvgkit.errors import UsageError

    ann, videos = vip
    out = tmp_path / "p"
    out.mkdir()
    holder = "import fcntl, sys, time; f = open(sys.argv[1], 'w'); fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)"
    proc = subprocess.Popen(
        [sys.executable, "-c", holder, str(out / ".prepare.lock")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(UsageError, match="another `ipvg prepare` is writing"):
            run_prepare(_cfg(ann, videos, out))
    finally:
        proc.kill()
        proc.wait()
    assert run_prepare(_cfg(ann, videos, out)).samples == 3  # the lock dies with its process


def test_relative_paths_given_to_prepare_still_find_the_videos_from_elsewhere(vip, tmp_path, monkeypatch):
    """Given relative --annotations/--videos, the manifest names the videos absolutely, so finetune
    (which resolves a relative path against the prep folder) and other working folders find them."""
    import os
    from pathlib import Path

    ann, videos = vip
    monkeypatch.chdir(videos.parent)
    rel_ann, rel_videos = os.path.relpath(ann), os.path.relpath(videos)
    run_prepare(_cfg(Path(rel_ann), Path(rel_videos), tmp_path / "p"))
    monkeypatch.chdir(tmp_path)
    samples = read_manifest(tmp_path / "p")
    assert samples and all(Path(s.video).is_absolute() and Path(s.video).is_file() for s in samples)


def test_window_seconds_is_checked_and_reaches_the_source(vip, tmp_path):
    from ipvgkit.stages.prepare import make_source

    with pytest.raises(ValueError, match="window_seconds must be at least"):
        SampleSettings(window_seconds=0.5)
    ann, videos = vip
    cfg = _cfg(ann, videos, tmp_path / "p")
    cfg.sample = SampleSettings(buckets=SMALL.buckets, max_frames=33, window_seconds=1.0)
    assert make_source(cfg).window_seconds == 1.0
