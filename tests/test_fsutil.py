from __future__ import annotations

import pytest

from ipvgkit.fsutil import atomic_path, atomic_write_text, is_temp_name


def test_atomic_write_replaces_only_on_success(tmp_path):
    dest = tmp_path / "a.txt"
    atomic_write_text(dest, "one")
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        tmp.write_text("half")
        assert is_temp_name(tmp.name)
        raise RuntimeError("crash")
    assert dest.read_text() == "one"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_creates_parents(tmp_path):
    dest = tmp_path / "x" / "y" / "z.json"
    atomic_write_text(dest, "{}")
    assert dest.read_text() == "{}"


def test_is_temp_name():
    assert is_temp_name(".prompt1.tmp-abc123.mp4")
    assert not is_temp_name("prompt1.mp4")
    assert not is_temp_name(".DS_Store")


def test_outputs_get_umask_permissions_not_0600(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        dest = atomic_write_text(tmp_path / "p.txt", "x")
    finally:
        os.umask(old)
    assert dest.stat().st_mode & 0o777 == 0o644


def test_natural_key_orders_numbers_without_case_and_deterministically():
    from ipvgkit.fsutil import natural_key

    names = ["id10/prompt1", "ID2/prompt2", "id2/prompt10", "id2/prompt1", "b.png", "A.png", "a.png"]
    want = ["A.png", "a.png", "b.png", "id2/prompt1", "ID2/prompt2", "id2/prompt10", "id10/prompt1"]
    assert sorted(names, key=natural_key) == want
    assert sorted(reversed(names), key=natural_key) == want  # ties broken by the exact text


def test_is_inside(tmp_path):
    from ipvgkit.fsutil import is_inside

    (tmp_path / "a" / "b").mkdir(parents=True)
    assert is_inside(tmp_path / "a" / "b", tmp_path / "a")
    assert is_inside(tmp_path / "a", tmp_path / "a")
    assert not is_inside(tmp_path / "a", tmp_path / "a" / "b")
    assert not is_inside(tmp_path / "ab", tmp_path / "a")
    assert is_inside(tmp_path / "a" / "b" / ".." / "c", tmp_path / "a")
