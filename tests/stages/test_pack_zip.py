"""``ipvg pack --check`` on zips: hostile archives refused, entries probed in place, damage found."""

from __future__ import annotations

import stat
import zipfile

from ipvgkit.stages.pack import check_submission
from ipvgkit.stages.pack_zip import ZipLimits
from tests.stages import pack_support
from tests.stages.pack_support import _zip

src = pack_support.src  # fixture: one file of each kind, made once per module


# ---------------------------------------------------------------------------------------- zips


def test_zip_check_reports_relative_paths(tmp_path, src):
    z = _zip(
        tmp_path / "r.zip",
        [
            ("submission/id001/prompt1.mp4", src["good"].read_bytes()),
            ("submission/id001/prompt2.mp4", src["vp9"].read_bytes()),
            ("submission/id001/.DS_Store", b"x"),
            ("README.txt", b"hi"),
        ],
    )
    r = check_submission(z, cases=["id001/prompt1.mp4", "id001/prompt2.mp4", "id001/prompt3.mp4"])
    assert r.problems == [
        "zip entry 'README.txt': not inside the top folder submission/",
        "id001/.DS_Store: OS metadata file in the zip (remove it)",
        "id001/prompt2.mp4: codec vp9, must be h264 (use --fix-encoding)",
        "id001/prompt3.mp4: missing",
    ]


def test_zip_without_top_folder_is_one_problem(tmp_path, src):
    good = src["good"].read_bytes()
    z = _zip(tmp_path / "flat.zip", [(f"{i}.mp4", good) for i in (1, 2, 3)])
    assert check_submission(z).problems == [
        "flat.zip: no top folder submission/ (every file must be under submission/; found '1.mp4' and 2 more)"
    ]


def test_zip_slip_is_refused(tmp_path, src):
    good = src["good"].read_bytes()
    z = _zip(tmp_path / "slip.zip", [("submission/1.mp4", good), ("submission/../../evil.mp4", good)])
    r = check_submission(z)
    assert r.problems == [
        "zip entry 'submission/../../evil.mp4': path escapes the zip's folder ('..', zip slip), refused"
    ]
    assert r.videos == []  # refused: nothing probed
    z2 = _zip(tmp_path / "abs.zip", [("/etc/evil.mp4", good)])
    assert check_submission(z2).problems == ["zip entry '/etc/evil.mp4': absolute path (zip slip), refused"]
    assert not (tmp_path / "evil.mp4").exists()


def test_symlink_entry_is_refused(tmp_path):
    info = zipfile.ZipInfo("submission/1.mp4")
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    z = _zip(tmp_path / "link.zip", [(info, b"/etc/passwd")])
    assert check_submission(z).problems == ["zip entry 'submission/1.mp4': symbolic link, refused"]


def test_zip_bomb_and_entry_limits(tmp_path, src):
    z = _zip(tmp_path / "bomb.zip", [("submission/1.mp4", b"\0" * (8 << 20))], deflate=True)
    (problem,) = check_submission(z).problems
    assert problem.startswith("zip entry 'submission/1.mp4': compression ratio ")
    assert problem.endswith("exceeds 100:1 (zip bomb?), refused")
    many = _zip(tmp_path / "many.zip", [(f"submission/{i}.mp4", b"") for i in range(1, 31)])
    r = check_submission(many, limits=ZipLimits(max_entries=20))
    assert r.problems == ["many.zip: 30 entries, more than the limit 20, refused"]
    big = _zip(tmp_path / "big.zip", [("submission/1.mp4", src["good"].read_bytes())])
    r = check_submission(big, limits=ZipLimits(max_total_bytes=100))
    assert r.problems[0].startswith("big.zip: 0.0 GiB uncompressed, more than the limit")


def test_deflated_zip_entries_are_probed_too(tmp_path, src):
    z = _zip(tmp_path / "d.zip", [("submission/1.mp4", src["good"].read_bytes())], deflate=True)
    r = check_submission(z)
    assert r.ok and r.videos[0].codec == "h264" and r.videos[0].n_frames == 6


def test_damaged_zip_entry_fails_crc(tmp_path, src):
    z = _zip(tmp_path / "d.zip", [("submission/1.mp4", src["good"].read_bytes())])
    data = bytearray(z.read_bytes())
    at = data.find(b"mdat") + 200  # inside the stored video data, past the first frame's start
    data[at] ^= 0xFF
    z.write_bytes(bytes(data))
    assert "zip entry 'submission/1.mp4': CRC mismatch (the zip is damaged)" in check_submission(z).problems


def test_not_a_zip(tmp_path):
    bad = tmp_path / "x.zip"
    bad.write_bytes(b"nope")
    assert check_submission(bad).problems == ["x.zip: not a valid zip file (File is not a zip file)"]
