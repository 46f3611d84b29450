"""``ipvg pack --fix-encoding``: a fixed copy in a new folder, resumable, never in place."""

from __future__ import annotations

import os
import shutil
import zipfile

import pytest

from ipvgkit.errors import UsageError
from ipvgkit.media import probe_video
from ipvgkit.stages.pack import PackCheckFailed, PackConfig, check_submission, fix_encoding, pack_submission
from tests.stages import pack_support
from tests.stages.pack_support import _sha, _sub

src = pack_support.src  # fixture: one file of each kind, made once per module


# ------------------------------------------------------------------------------------ fix encoding


def test_fix_encoding_into_new_folder(tmp_path, src):
    files = {
        "id001/prompt1.mp4": src["good"],
        "id001/prompt2.mp4": src["vp9"],
        "id001/prompt3.mp4": src["odd"],
    }
    files[".DS_Store"] = b"x"
    sub = _sub(tmp_path / "sub", files)
    before = {p: _sha(p) for p in sub.rglob("*") if p.is_file()}
    dst = tmp_path / "fixed"
    rep = fix_encoding(sub, dst, preset="ultrafast")
    assert rep.reencoded == ["id001/prompt2.mp4", "id001/prompt3.mp4"]
    assert rep.linked == ["id001/prompt1.mp4"]
    assert {p: _sha(p) for p in sub.rglob("*") if p.is_file()} == before  # original untouched
    assert not (dst / ".DS_Store").exists()
    vp9 = probe_video(dst / "id001/prompt2.mp4", decode_check=True, count_frames=True)
    assert (vp9.codec, vp9.pix_fmt, vp9.fps, vp9.n_frames) == ("h264", "yuv420p", 8.0, 6)
    odd = probe_video(dst / "id001/prompt3.mp4")
    assert (odd.width, odd.height, odd.pix_fmt) == (34, 32, "yuv420p")
    assert _sha(dst / "id001/prompt1.mp4") == _sha(src["good"])
    r = check_submission(dst, expect=None)
    assert r.ok and r.warnings == []
    again = fix_encoding(sub, dst)  # resume: everything is already there
    assert again.kept == ["id001/prompt1.mp4", "id001/prompt2.mp4", "id001/prompt3.mp4"]
    assert again.reencoded == [] and again.linked == [] and again.problems == []
    # a source replaced since the last run is redone; a video whose source is gone is a problem
    shutil.copyfile(src["mpeg4"], sub / "id001/prompt2.mp4")
    later = (dst / "id001/prompt2.mp4").stat().st_mtime + 5
    os.utime(sub / "id001/prompt2.mp4", (later, later))
    (sub / "id001/prompt3.mp4").unlink()
    third = fix_encoding(sub, dst, preset="ultrafast")
    assert third.reencoded == ["id001/prompt2.mp4"] and third.kept == ["id001/prompt1.mp4"]
    assert third.problems == [
        f"id001/prompt3.mp4: in {dst} but no longer in the submission folder (delete it, or use a new DIR2)"
    ]


def test_fix_encoding_refuses_unsafe_destinations(tmp_path, src):
    sub = _sub(tmp_path / "sub", {"1.mp4": src["good"]})
    with pytest.raises(UsageError, match="outside the submission folder"):
        fix_encoding(sub, sub)
    with pytest.raises(UsageError, match="outside the submission folder"):
        fix_encoding(sub, sub / "fixed")
    with pytest.raises(UsageError, match="must not contain the submission folder"):
        fix_encoding(sub, tmp_path)


def test_pack_with_fix_encoding_keeps_broken_files_as_problems(tmp_path, src):
    whole = src["good"].read_bytes()
    sub = _sub(tmp_path / "sub", {"1.mp4": src["vp9"], "2.mp4": whole[: len(whole) // 2]})
    out = tmp_path / "RUN.zip"
    cfg = PackConfig(submission=sub, output=out, fix_encoding=tmp_path / "fixed", preset="ultrafast")
    with pytest.raises(PackCheckFailed) as ei:
        pack_submission(cfg)
    (problem,) = ei.value.problems
    assert problem.startswith("2.mp4: truncated")
    assert ei.value.report.fix["reencoded"] == ["1.mp4"]
    assert not out.exists()
    (sub / "2.mp4").unlink()
    (tmp_path / "fixed" / "2.mp4").unlink()
    r = pack_submission(cfg)
    assert r.ok and zipfile.ZipFile(out).namelist()[-1] == "submission/1.mp4"
    assert r.summary()["codecs"] == {"h264": 1}
