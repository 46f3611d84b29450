from __future__ import annotations

import numpy as np
import pytest

from ipvgkit.errors import MediaError
from ipvgkit.media import (
    VideoWriter,
    encode_video,
    ffmpeg_info,
    probe_video,
    read_frames,
    read_video,
    sample_indices,
)
from tests.conftest import moving_frames


def test_ffmpeg_has_libx264():
    info = ffmpeg_info()
    assert info.has_libx264


def test_round_trip_encode_probe_decode(tmp_path):
    frames = moving_frames(t=17, h=64, w=96)
    path = encode_video(frames, tmp_path / "a.mp4", fps=16, crf=0 + 10)
    info = probe_video(path, decode_check=True)
    assert info.codec == "h264"
    assert info.pix_fmt == "yuv420p"
    assert info.is_mp4
    assert (info.width, info.height) == (96, 64)
    assert info.fps == pytest.approx(16.0)
    assert info.n_frames == 17
    assert info.duration == pytest.approx(17 / 16, abs=0.07)
    back = read_video(path)
    assert back.shape == frames.shape
    # lossy, but close: mean absolute error of a few grey levels
    assert np.abs(back.astype(int) - frames.astype(int)).mean() < 6


def test_odd_sizes_are_padded_to_even(tmp_path):
    frames = moving_frames(t=5, h=31, w=45)
    info = probe_video(encode_video(frames, tmp_path / "odd.mp4"))
    assert (info.width, info.height) == (46, 32)
    back = read_video(tmp_path / "odd.mp4")
    assert np.abs(back[:, :31, :45].astype(int) - frames.astype(int)).mean() < 8


def test_read_frames_returns_requested_indices_in_order(tmp_path):
    frames = moving_frames(t=12)
    path = encode_video(frames, tmp_path / "b.mp4", crf=0)
    full = read_video(path)
    picked = read_frames(path, [7, 0, 7, 11])
    assert picked.shape[0] == 4
    np.testing.assert_array_equal(picked[0], full[7])
    np.testing.assert_array_equal(picked[1], full[0])
    np.testing.assert_array_equal(picked[3], full[11])
    with pytest.raises(MediaError, match="fewer frames"):
        read_frames(path, [12])


def test_writer_streams_and_is_atomic(tmp_path):
    dest = tmp_path / "c.mp4"
    with VideoWriter(dest, fps=8) as w:
        for f in moving_frames(t=6):
            w.write(f)
            assert not dest.exists()  # only the temp file exists while writing
    assert probe_video(dest).n_frames == 6
    assert [p.name for p in tmp_path.iterdir()] == ["c.mp4"]


def test_failed_write_leaves_nothing(tmp_path):
    dest = tmp_path / "d.mp4"
    with pytest.raises(RuntimeError), VideoWriter(dest) as w:
        w.write(moving_frames(t=3))
        raise RuntimeError("generation crashed")
    assert list(tmp_path.iterdir()) == []


def test_bad_frames_rejected(tmp_path):
    with pytest.raises(MediaError, match="uint8"):
        encode_video(np.zeros((2, 8, 8, 3), np.float32), tmp_path / "e.mp4")
    with pytest.raises(MediaError, match=r"\(T, H, W, 3\)"):
        encode_video(np.zeros((2, 8, 8), np.uint8), tmp_path / "e.mp4")


@pytest.mark.parametrize(
    "content,match", [(b"", "empty"), (b"not a video at all" * 10, "not a readable video")]
)
def test_probe_errors(tmp_path, content, match):
    p = tmp_path / "bad.mp4"
    p.write_bytes(content)
    with pytest.raises(MediaError, match=match):
        probe_video(p)


def test_probe_missing_file(tmp_path):
    with pytest.raises(MediaError, match="no such file"):
        probe_video(tmp_path / "nope.mp4")


def test_sample_indices():
    assert sample_indices(81, 16)[:3] == [0, 5, 10]
    assert sample_indices(81, 16)[-1] == 80
    assert sample_indices(0, 16) == []
    assert sample_indices(5, 16) == [int(x) for x in np.linspace(0, 4, 16)]
