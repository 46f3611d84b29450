"""``ipvgkit.media.probe``: the one prober behind pack, score and generate, on real encoded files."""

from __future__ import annotations

import subprocess
import zipfile

import pytest

from ipvgkit.media import encode_video, ffmpeg_exe, probe_video
from ipvgkit.media.probe import mp4_problem, probe_item
from ipvgkit.media.zip_entry import close_zips
from tests.conftest import moving_frames


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    d = tmp_path_factory.mktemp("probe")
    return encode_video(moving_frames(t=9, h=32, w=48), d / "good.mp4", fps=8)


def test_mp4_problem_finds_cut_off_and_foreign_files(tmp_path, good):
    assert mp4_problem(good) is None
    data = good.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    assert mp4_problem(cut).startswith("truncated (box ")
    mkv = tmp_path / "x.mkv"
    cmd = [
        ffmpeg_exe(),
        "-loglevel",
        "error",
        "-y",
        "-i",
        str(good),
        "-c",
        "copy",
        "-f",
        "matroska",
        str(mkv),
    ]
    subprocess.run(cmd, check=True, capture_output=True)
    assert mp4_problem(mkv) == "not an MP4 file (a Matroska/WebM file; no 'ftyp' header)"
    # probe_video reads any container (score and generate read what PyAV reads)
    info = probe_video(mkv, decode_check=True, count_frames=True)
    assert (info.codec, info.width, info.height, info.n_frames, info.is_mp4) == ("h264", 48, 32, 9, False)


def test_file_zip_entry_and_probe_video_agree(tmp_path, good):
    z = tmp_path / "s.zip"
    with zipfile.ZipFile(z, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.write(good, "submission/1.mp4")
    on_disk = probe_item(("1.mp4", str(good), None))
    in_zip = probe_item(("1.mp4", str(z), "submission/1.mp4"))
    close_zips()
    assert on_disk.error is None and on_disk.to_dict() == in_zip.to_dict()
    info = probe_video(good)
    got = (info.codec, info.pix_fmt, info.width, info.height, info.fps, info.n_frames, info.duration)
    want = (on_disk.codec, on_disk.pix_fmt, on_disk.width, on_disk.height, on_disk.fps, on_disk.n_frames)
    assert got[:6] == want and got[6] == pytest.approx(on_disk.duration)
    assert (info.n_frames, info.fps) == (9, 8.0)
