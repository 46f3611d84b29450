"""``ipvgkit.stages.pack`` on real files: every defect class made with ffmpeg/PyAV, real zips.

Zips: test_pack_zip.py; ``--fix-encoding``: test_pack_fix.py; the files: pack_support.py.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

import pytest

from ipvgkit.errors import UsageError
from ipvgkit.media import encode_video
from ipvgkit.stages.pack import PackCheckFailed, PackConfig, check_submission, pack_submission, probe_items
from ipvgkit.stages.pack_rules import VideoExpectations
from tests.conftest import moving_frames
from tests.stages import pack_support
from tests.stages.pack_support import TOY, _grid, _sub, _zip

src = pack_support.src  # fixture: one file of each kind, made once per module


# ------------------------------------------------------------------------------------------ folders


def test_valid_id_prompt_submission(tmp_path, src):
    sub = _sub(tmp_path / "sub", _grid(src["good"]))
    r = check_submission(sub, expect=None)
    assert r.ok, r.problems
    assert r.layout == "id-prompt" and r.kind == "folder"
    assert [v.name for v in r.videos] == sorted(_grid(src["good"]))
    s = r.summary()
    assert s["videos"] == 4 and s["resolutions"] == {"48x32": 4}
    assert s["fps"] == {"min": 8.0, "median": 8.0, "max": 8.0}
    assert s["frames"]["max"] == 6 and s["total_bytes"] == 4 * src["good"].stat().st_size
    assert r.warnings == [] and r.notes == []


def test_flat_layout_is_detected(tmp_path, src):
    sub = _sub(tmp_path / "sub", {f"{i}.mp4": src["good"] for i in (1, 2, 3)})
    r = check_submission(sub)
    assert r.ok and r.layout == "flat"


def test_layout_conformity(tmp_path, src):
    files = _grid(src["good"]) | {"7.mp4": src["good"], "id003/clip.mp4": src["good"]}
    r = check_submission(_sub(tmp_path / "sub", files))
    assert r.problems == [
        "7.mp4: name does not match the id-prompt layout (idNNN/promptK.mp4)",
        "id003/clip.mp4: name does not match the id-prompt layout (idNNN/promptK.mp4)",
    ]
    forced = check_submission(tmp_path / "sub", layout="flat")
    assert "id001/prompt1.mp4: name does not match the flat layout (N.mp4)" in forced.problems
    assert not any(p.startswith("7.mp4") for p in forced.problems)


def test_gap_warning_without_cases(tmp_path, src):
    r = check_submission(_sub(tmp_path / "sub", {f"{i}.mp4": src["good"] for i in (1, 2, 4)}), expect=None)
    assert r.ok
    assert r.warnings == ["numbering has gaps (3.mp4 absent); pass --cases to check against the test set"]


def test_prompt_count_warning_without_cases(tmp_path, src):
    files = _grid(src["good"], 3, 2)
    del files["id002/prompt2.mp4"]
    r = check_submission(_sub(tmp_path / "sub", files), expect=None)
    assert r.ok
    assert r.warnings == ["id002/: 1 video(s), most ids have 2; pass --cases to check against the test set"]


def test_missing_and_unexpected_with_cases(tmp_path, src):
    files = _grid(src["good"])
    del files["id002/prompt2.mp4"]
    files["id003/prompt1.mp4"] = src["good"]
    r = check_submission(_sub(tmp_path / "sub", files), cases=list(_grid(src["good"])))
    assert r.problems == [
        "id002/prompt2.mp4: missing",
        "id003/prompt1.mp4: unexpected video (not in the test set)",
    ]
    assert r.expected == 4


def test_unexpected_name_hints_the_expected_one(tmp_path, src):
    sub = _sub(tmp_path / "sub", {"01.mp4": src["good"], "2.mp4": src["good"]})
    r = check_submission(sub, cases=["1.mp4", "2.mp4"])
    assert r.problems == [
        "01.mp4: unexpected video (not in the test set; named 1.mp4 in the test set?)",
        "1.mp4: missing",
    ]


def test_cases_from_a_real_testset_folder(tmp_path, src, tom_hanks):
    ts = tmp_path / "testset"
    for i in (1, 2, 3):
        (ts / f"id00{i}").mkdir(parents=True)
        shutil.copyfile(tom_hanks, ts / f"id00{i}" / "ref.jpg")
        (ts / f"id00{i}" / "prompt1.txt").write_text("a person walks in" if i < 3 else "")
    sub = _sub(tmp_path / "sub", {"id001/prompt1.mp4": src["good"]})
    r = check_submission(sub, cases=ts)
    # id003's case is malformed (empty prompt) but the organisers still expect its video; that the test
    # set cannot load it is a problem of its own (issue 8 item 6)
    assert r.problems == [
        f"test set case id003/prompt1 cannot be loaded (empty prompt in {ts / 'id003' / 'prompt1.txt'}); "
        "its video cannot be checked (fix the test set: the organisers expect a video for every case)",
        "id002/prompt1.mp4: missing",
        "id003/prompt1.mp4: missing",
    ]
    with pytest.raises(UsageError, match="does not match the test set"):
        check_submission(sub, cases=ts, layout="flat")


def test_cases_the_test_set_cannot_load_are_problems_not_dropped(tmp_path, src, tom_hanks):
    ts = tmp_path / "testset"
    for i in (1, 2, 3):
        (ts / f"id00{i}").mkdir(parents=True)
    shutil.copyfile(tom_hanks, ts / "id001" / "ref.jpg")
    (ts / "id001" / "prompt1.txt").write_text("a person walks in")
    shutil.copyfile(tom_hanks, ts / "id002" / "ref.jpg")  # an image, but no prompt file
    (ts / "id003" / "prompt1.txt").write_text("a person sits")  # a prompt, but no image
    files = {"id001/prompt1.mp4": src["good"], "id003/prompt1.mp4": src["good"]}
    r = check_submission(_sub(tmp_path / "sub", files), cases=ts, expect=None)
    assert r.expected == 2
    assert r.problems == [
        f"test set case id002 cannot be loaded (no prompt1.txt ... in {ts / 'id002'}); its video cannot "
        "be checked (fix the test set: the organisers expect a video for every case)",
        f"test set case id003/prompt1 cannot be loaded (no reference image (*.png|jpg|jpeg|webp) in "
        f"{ts / 'id003'}); its video cannot be checked (fix the test set: the organisers expect a video "
        "for every case)",
    ]
    # a JSON test set whose image is missing: the same, and its video stays expected
    (tmp_path / "eval.json").write_text(
        '[{"img": "ref.jpg", "prompt": "p"}, {"img": "gone.jpg", "prompt": "q"}]'
    )
    shutil.copyfile(tom_hanks, tmp_path / "ref.jpg")
    r = check_submission(_sub(tmp_path / "flat", {"1.mp4": src["good"]}), cases=tmp_path / "eval.json")
    assert [p.split(" cannot be loaded")[0] for p in r.problems] == ["test set case 2", "2.mp4: missing"]
    assert "reference image not found" in r.problems[0]


@pytest.fixture(scope="module")
def sized(tmp_path_factory) -> dict[str, Path]:
    """Videos at the organisers' thresholds (exactly 2 s, 256 px short side, 16 frames) and below."""
    d = tmp_path_factory.mktemp("pack_sized")
    at = encode_video(moving_frames(t=16, h=256, w=320), d / "at.mp4", fps=8, preset="ultrafast")
    short = encode_video(moving_frames(t=16, h=256, w=320), d / "short.mp4", fps=16, preset="ultrafast")
    few = encode_video(moving_frames(t=12, h=272, w=256), d / "few.mp4", fps=4, preset="ultrafast")
    return {"at": at, "short": short, "few": few}


def test_videos_far_from_the_expected_size_warn_with_counts(tmp_path, src, sized):
    files = {"1.mp4": sized["at"], "2.mp4": sized["short"], "3.mp4": sized["few"], "4.mp4": src["good"]}
    sub = _sub(tmp_path / "sub", files)
    r = check_submission(sub)
    assert r.ok and [v.duration for v in r.videos][:3] == [2.0, 1.0, 3.0]
    tail = "far from what the organisers expect (--strict makes this a problem): "
    assert r.warnings == [
        f"2 of 4 videos shorter than 2 s, {tail}2.mp4 (1.00 s long), 4.mp4 (0.75 s long)",
        f"1 of 4 videos smaller than 256 px on the short side, {tail}4.mp4 (48x32)",
        f"2 of 4 videos fewer than 16 frames, {tail}3.mp4 (12 frames), 4.mp4 (6 frames)",
    ]
    strict = check_submission(sub, strict=True)
    assert strict.warnings == []
    assert strict.problems == [
        "2.mp4: 1.00 s long, shorter than 2 s (far from what the organisers expect)",
        "3.mp4: 12 frames, fewer than 16 frames (far from what the organisers expect)",
        "4.mp4: 0.75 s long, shorter than 2 s (far from what the organisers expect)",
        "4.mp4: 48x32, smaller than 256 px on the short side (far from what the organisers expect)",
        "4.mp4: 6 frames, fewer than 16 frames (far from what the organisers expect)",
    ]
    loose = check_submission(sub, strict=True, expect=VideoExpectations(min_duration_s=0.5, min_frames=6))
    assert loose.problems == [
        "4.mp4: 48x32, smaller than 256 px on the short side (far from what the organisers expect)"
    ]
    many = _sub(tmp_path / "many", {f"{i}.mp4": src["good"] for i in range(1, 6)})
    (line, _, _) = check_submission(many).warnings
    assert line.startswith("5 of 5 videos shorter than 2 s") and line.endswith(
        "3.mp4 (0.75 s long) and 2 more"
    )


def test_codec_problems(tmp_path, src):
    sub = _sub(tmp_path / "sub", {"1.mp4": src["good"], "2.mp4": src["vp9"], "3.mp4": src["mpeg4"]})
    r = check_submission(sub)
    assert r.problems == [
        "2.mp4: codec vp9, must be h264 (use --fix-encoding)",
        "3.mp4: codec mpeg4, must be h264 (use --fix-encoding)",
    ]


def test_broken_files(tmp_path, src):
    whole = src["good"].read_bytes()
    late = src["late_moov"].read_bytes()
    # an 'mdat' box of size 0 ("runs to the end of the file") hides truncation from the box walk;
    # the sample index still knows where the data should end
    open_ended = bytearray(whole)
    at = open_ended.find(b"mdat") - 4
    open_ended[at : at + 4] = b"\0\0\0\0"
    files = {
        "1.mp4": src["good"],
        "2.mp4": b"",
        "3.mp4": whole[: len(whole) // 2],
        "4.mp4": late[: len(late) // 2],
        "5.mp4": os.urandom(5000),
        "6.mp4": src["mkv"],
        "7.mp4": src["mov"],
        "8.mp4": bytes(open_ended[: len(whole) * 2 // 3]),
    }
    r = check_submission(_sub(tmp_path / "sub", files))
    by_file = {p.split(": ", 1)[0]: p.split(": ", 1)[1] for p in r.problems}
    assert sorted(by_file) == ["2.mp4", "3.mp4", "4.mp4", "5.mp4", "6.mp4", "7.mp4", "8.mp4"]
    assert by_file["2.mp4"] == "empty file (0 bytes)"
    assert by_file["3.mp4"].startswith("truncated (box 'mdat' ends at byte ")
    assert by_file["4.mp4"].startswith("truncated (box 'mdat' ends at byte ")
    assert by_file["5.mp4"] == "not an MP4 file (unknown data; no 'ftyp' header)"
    assert by_file["6.mp4"] == "not an MP4 file (a Matroska/WebM file; no 'ftyp' header)"
    assert by_file["7.mp4"].startswith("QuickTime .mov file")
    assert (
        by_file["8.mp4"]
        == f"truncated (the video data runs to byte {len(whole)}, the file has {len(whole) * 2 // 3} bytes)"
    )


def test_pix_fmt_and_odd_dimensions_warn_unless_strict(tmp_path, src):
    sub = _sub(tmp_path / "sub", {"1.mp4": src["yuv444"], "2.mp4": src["odd"]})
    r = check_submission(sub, expect=None)
    assert r.ok
    assert r.warnings == [
        "1.mp4: pix_fmt yuv444p, yuv420p recommended (many players cannot play it; use --fix-encoding)",
        "2.mp4: pix_fmt yuv444p, yuv420p recommended (many players cannot play it; use --fix-encoding)",
        "2.mp4: odd dimensions 33x31 (many players reject them; use --fix-encoding)",
    ]
    strict = check_submission(sub, strict=True, expect=None)
    assert strict.problems == r.warnings and strict.warnings == []


def test_stray_os_files_are_notes_other_files_are_problems(tmp_path, src):
    files = _grid(src["good"], 1, 1) | {
        ".DS_Store": b"\x00\x00\x00\x01Bud1",
        "id001/._prompt1.mp4": b"\x00\x05\x16\x07",
        "Thumbs.db": b"x",
        "__MACOSX/id001/._prompt1.mp4": b"x",
        "notes.txt": b"hello",
        "id001/prompt2.mov": src["good"],
        "id001/.prompt3.tmp-abc123.mp4": src["good"],
    }
    r = check_submission(_sub(tmp_path / "sub", files))
    assert r.problems == [
        "id001/.prompt3.tmp-abc123.mp4: unexpected file (a temporary or partial file)",
        "id001/prompt2.mov: unexpected file (only .mp4 videos belong in a submission)",
        "notes.txt: unexpected file (only .mp4 videos belong in a submission)",
    ]
    assert sorted(r.notes) == [
        ".DS_Store: OS metadata file, left out of the zip",
        "Thumbs.db: OS metadata file, left out of the zip",
        "__MACOSX/: OS metadata folder, left out of the zip",
        "id001/._prompt1.mp4: OS metadata file, left out of the zip",
    ]


def test_generate_bookkeeping_files_are_left_out(tmp_path, src):
    files = {"1.mp4": src["good"], "generate.yaml": b"model: x\n", "generation.jsonl": b"{}\n"}
    files["generation.rank1.jsonl"] = b"{}\n"
    sub = _sub(tmp_path / "sub", files)
    r = pack_submission(PackConfig(submission=sub, output=tmp_path / "r.zip"))
    assert r.ok and len(r.notes) == 3
    assert "generate.yaml: ipvg generate's bookkeeping file, left out of the zip" in r.notes
    assert [n for n in zipfile.ZipFile(tmp_path / "r.zip").namelist() if not n.endswith("/")] == [
        "submission/1.mp4"
    ]
    z = _zip(
        tmp_path / "z.zip",
        [("submission/1.mp4", src["good"].read_bytes()), ("submission/generate.yaml", b"")],
    )
    assert check_submission(z).problems == [
        "generate.yaml: ipvg generate's bookkeeping file in the zip (remove it)"
    ]


def test_symlinks_in_folder_are_problems(tmp_path, src):
    sub = _sub(tmp_path / "sub", {"1.mp4": src["good"]})
    (sub / "2.mp4").symlink_to(src["good"])
    (tmp_path / "elsewhere").mkdir()
    (sub / "id001").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    r = check_submission(sub)
    assert r.problems == [
        "2.mp4: symbolic link (not allowed: put the real file there)",
        "id001/: symbolic link (not allowed: put the real folder there)",
    ]


def test_empty_folder_and_missing_path(tmp_path):
    (tmp_path / "empty").mkdir()
    assert check_submission(tmp_path / "empty").problems == ["no videos found"]
    from ipvgkit.errors import InputError

    with pytest.raises(InputError, match="no such file or folder"):
        check_submission(tmp_path / "nope")


def test_process_pool_matches_in_process(tmp_path, src):
    sub = _sub(tmp_path / "sub", {f"{i}.mp4": src["vp9" if i == 5 else "good"] for i in range(1, 21)})
    items = [(p.name, str(p), None) for p in sorted(sub.iterdir())]
    pooled = probe_items(items, workers=2)
    serial = probe_items(items, workers=1)
    assert [f.to_dict() for f in pooled] == [f.to_dict() for f in serial]
    assert [f.codec for f in pooled].count("vp9") == 1


# --------------------------------------------------------------------------------------------- pack


def test_pack_writes_verified_stored_zip(tmp_path, src):
    files = _grid(src["good"]) | {".DS_Store": b"junk"}
    sub = _sub(tmp_path / "sub", files)
    out = tmp_path / "out" / "RUN.zip"
    r = pack_submission(PackConfig(submission=sub, output=out))
    assert r.ok and r.zip_path == str(out)
    with zipfile.ZipFile(out) as zf:
        infos = zf.infolist()
        files_in = sorted(i.filename for i in infos if not i.is_dir())
        assert zf.testzip() is None
    assert files_in == sorted(f"submission/{n}" for n in _grid(src["good"]))
    assert all(i.filename.startswith("submission/") for i in infos)
    assert all(i.compress_type == zipfile.ZIP_STORED for i in infos)
    assert sorted(os.listdir(out.parent)) == ["RUN.pack.yaml", "RUN.zip"]  # no temp file left
    assert "submission:" in (out.parent / "RUN.pack.yaml").read_text()
    again = check_submission(out)
    assert again.ok and again.kind == "zip" and len(again.videos) == 4
    assert again.summary()["resolutions"] == r.summary()["resolutions"]


def test_pack_verifies_odd_sized_and_yuv444_videos(tmp_path, src):
    # the verify step reads sizes without decoding: they must agree with the decoded ones
    sub = _sub(tmp_path / "sub", {"1.mp4": src["odd"], "2.mp4": src["yuv444"], "3.mp4": src["late_moov"]})
    r = pack_submission(PackConfig(submission=sub, output=tmp_path / "r.zip", expect=TOY))
    assert r.ok and len(r.warnings) == 3
    assert [(v.width, v.height) for v in check_submission(tmp_path / "r.zip").videos] == [
        (33, 31),
        (48, 32),
        (48, 32),
    ]


def test_pack_refuses_to_overwrite(tmp_path, src):
    sub = _sub(tmp_path / "sub", {"1.mp4": src["good"]})
    out = tmp_path / "RUN.zip"
    out.write_bytes(b"old")
    with pytest.raises(UsageError, match="exists; pass --overwrite"):
        pack_submission(PackConfig(submission=sub, output=out))
    assert out.read_bytes() == b"old"
    pack_submission(PackConfig(submission=sub, output=out, overwrite=True))
    assert zipfile.is_zipfile(out)


def test_pack_with_problems_writes_nothing(tmp_path, src):
    sub = _sub(tmp_path / "sub", {"1.mp4": src["good"], "2.mp4": src["vp9"]})
    out = tmp_path / "out" / "RUN.zip"
    with pytest.raises(PackCheckFailed) as ei:
        pack_submission(PackConfig(submission=sub, output=out))
    assert ei.value.problems == ["2.mp4: codec vp9, must be h264 (use --fix-encoding)"]
    assert ei.value.report.videos[0].name == "1.mp4"
    assert not out.exists() and not (tmp_path / "out" / "RUN.pack.yaml").exists()


def test_pack_usage_errors(tmp_path, src):
    sub = _sub(tmp_path / "sub", {"1.mp4": src["good"]})
    with pytest.raises(UsageError, match="inside the submission"):
        pack_submission(PackConfig(submission=sub, output=sub / "RUN.zip"))
    with pytest.raises(UsageError, match="must end in .zip"):
        pack_submission(PackConfig(submission=sub, output=tmp_path / "RUN.tar"))
    with pytest.raises(UsageError, match="needs an output zip"):
        pack_submission(PackConfig(submission=sub))


def test_pack_reports_progress_through_the_protocol(tmp_path, src):
    from ipvgkit.progress import Recorder

    sub = _sub(tmp_path / "sub", _grid(src["good"]))
    rec = Recorder()
    pack_submission(PackConfig(submission=sub, output=tmp_path / "r.zip"), rec)
    phases = [e[1:] for e in rec.events if e[0] == "phase"]
    assert phases == [("checking videos", 4), ("writing zip", 4), ("verifying zip", 4)]
    assert rec.count("advance") == 12


def test_select_bookkeeping_is_left_out_but_not_below_the_top(tmp_path, src):
    from ipvgkit.stages.bookkeeping import SELECTION

    files = {"1.mp4": src["good"], SELECTION: b"{}\n", f"id001/{SELECTION}": b"{}\n"}
    r = check_submission(_sub(tmp_path / "sub", files))
    assert r.notes == ["selection.json: ipvg score --select's bookkeeping file, left out of the zip"]
    assert r.problems == ["id001/selection.json: unexpected file (only .mp4 videos belong in a submission)"]


def test_the_stages_bookkeeping_names_are_the_ones_pack_knows():
    from ipvgkit.stages import generate, select
    from ipvgkit.stages.bookkeeping import generate_log_name, written_by

    assert written_by(generate.CONFIG_NAME) == written_by(generate.LOG_NAME) == "ipvg generate"
    assert (
        written_by(generate_log_name(3)) == "ipvg generate" and generate_log_name(None) == generate.LOG_NAME
    )
    assert written_by(select.SELECTION_NAME) == "ipvg score --select"
    assert written_by("generation.rank.jsonl") is None and written_by("id001/generate.yaml") is None


def test_a_generate_claim_left_in_the_folder_is_a_problem_naming_its_video(tmp_path, src):
    from ipvgkit.stages.bookkeeping import claim_name, claimed_video
    from ipvgkit.stages.generate_claim import claim_path

    assert claim_path(tmp_path / "id001" / "prompt1.mp4") == tmp_path / "id001" / claim_name("prompt1.mp4")
    assert claimed_video("id001/.prompt1.mp4.claim") == "id001/prompt1.mp4"
    assert claimed_video(".claim") is None and claimed_video("a.claim") is None
    files = {"1.mp4": src["good"], "2.mp4": src["good"], claim_name("2.mp4"): b'{"pid": 1}'}
    r = check_submission(_sub(tmp_path / "sub", files))
    assert len(r.problems) == 1 and r.problems[0].startswith(
        ".2.mp4.claim: ipvg generate is still working on 2.mp4"
    )
