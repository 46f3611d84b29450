import numpy as np
import pytest

from ipvgkit.errors import MediaError
from ipvgkit.media import read_frames
from ipvgkit.media.decode_range import decode_at, decode_range
from tests.data.sources.builders import level, write_video


def _levels(frames):
    return [int(round(float(f[:16, :16].mean()))) for f in frames]


def test_range_matches_whole_video_decoding(tmp_path):
    path = write_video(tmp_path / "v.mp4", 90, 30.0)
    rng = decode_range(path, 40 / 30, 70 / 30)
    whole = read_frames(path, list(range(40, 70)))
    assert rng.n_in_range == 30 and len(rng.frames) == 30
    assert all(np.array_equal(a, b) for a, b in zip(rng.frames, whole, strict=True))
    assert abs(_levels(rng.frames)[0] - level(40)) <= 2
    assert rng.first_time == pytest.approx(40 / 30) and rng.last_time == pytest.approx(69 / 30)


def test_seeks_by_time_on_a_copy_with_another_frame_rate(tmp_path):
    # annotation frames 30..60 at 30 fps are 1 s..2 s; the downloaded copy runs at 15 fps
    from ipvgkit.media import encode_video
    from tests.data.sources.builders import frames

    src = frames(90)
    copy = encode_video(src[::2], tmp_path / "copy.mp4", fps=15.0, preset="ultrafast")
    rng = decode_range(copy, 30 / 30, 60 / 30)
    assert rng.n_in_range == 15 and rng.fps == 15.0
    assert abs(_levels(rng.frames)[0] - level(30)) <= 2  # copy frame 15 = source frame 30


def test_keep_decodes_everything_but_converts_only_kept(tmp_path):
    path = write_video(tmp_path / "v.mp4", 60, 30.0)
    rng = decode_range(path, 0.5, 1.5, keep=lambda i: i in (0, 29))
    assert rng.n_in_range == 30 and rng.kept_index == [0, 29] and len(rng.frames) == 2


def test_decode_at_and_errors(tmp_path):
    path = write_video(tmp_path / "v.mp4", 60, 30.0)
    got = decode_at(path, [50 / 30, 0.0, 10 / 30])
    assert all(abs(a - b) <= 2 for a, b in zip(_levels(got), [level(50), level(0), level(10)], strict=True))
    with pytest.raises(MediaError, match="no frame at"):
        decode_at(path, [5.0])
    with pytest.raises(MediaError, match="no such file"):
        decode_range(tmp_path / "none.mp4", 0, 1)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(MediaError, match="not a readable video"):
        decode_range(bad, 0, 1)
