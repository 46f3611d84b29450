"""ipvgkit.weights: search order (models dir, extra paths, HF cache), never a download, clear errors."""

from __future__ import annotations

import os
import time

import pytest

from ipvgkit.errors import MissingWeightsError
from ipvgkit.weights import REGISTRY, ModelFile, find, get_file, locate, register_file


@pytest.fixture
def hf(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.delenv("IPVG_MODELS", raising=False)
    return tmp_path / "hf"


MF = ModelFile(
    name="test-file",
    relpath="sub/model.bin",
    source="https://example.org/model.bin",
    hf_repo="org/repo",
    hf_path="weights/model.bin",
    used_by=("m1",),
)


def test_models_dir_first(tmp_path, hf):
    p = tmp_path / "models" / "sub" / "model.bin"
    p.parent.mkdir(parents=True)
    p.write_bytes(b"1")
    snap = hf / "models--org--repo" / "snapshots" / "abc" / "weights" / "model.bin"
    snap.parent.mkdir(parents=True)
    snap.write_bytes(b"2")
    assert locate(MF, tmp_path / "models") == p
    path, searched = find(MF, tmp_path / "other")
    assert path == snap
    assert searched == [
        str(tmp_path / "other" / "sub" / "model.bin"),
        f"HF cache {hf}/models--org--repo/snapshots/*/weights/model.bin",
    ]


def test_env_var_and_newest_snapshot(tmp_path, hf, monkeypatch):
    monkeypatch.setenv("IPVG_MODELS", str(tmp_path / "env"))
    snaps = hf / "models--org--repo" / "snapshots"
    for i, name in enumerate(("old", "new")):
        f = snaps / name / "weights" / "model.bin"
        f.parent.mkdir(parents=True)
        f.write_bytes(b"x")
        t = time.time() - 100 + i * 50
        os.utime(snaps / name, (t, t))
    path, searched = find(MF)
    assert searched[0] == str(tmp_path / "env" / "sub" / "model.bin")
    assert path == snaps / "new" / "weights" / "model.bin"


def test_folder_snapshot_and_empty_folder(tmp_path, hf):
    mf = ModelFile(name="t2", relpath="folder", source="s", hf_repo="org/x", hf_path="")
    (tmp_path / "m" / "folder").mkdir(parents=True)  # empty: not a model
    snap = hf / "models--org--x" / "snapshots" / "r1"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    assert locate(mf, tmp_path / "m") == snap


def test_extra_paths(tmp_path, hf):
    extra = tmp_path / "elsewhere" / "pack"
    extra.mkdir(parents=True)
    (extra / "a.onnx").write_bytes(b"x")
    mf = ModelFile(name="t3", relpath="p/pack", source="s", extra_paths=(str(extra),))
    assert locate(mf, tmp_path / "m") == extra


def test_missing_names_file_places_and_source(tmp_path, hf):
    with pytest.raises(MissingWeightsError) as e:
        locate(MF, tmp_path / "m")
    msg = str(e.value)
    assert "'sub/model.bin'" in msg and "https://example.org/model.bin" in msg
    assert str(tmp_path / "m" / "sub" / "model.bin") in msg and "models--org--repo" in msg
    assert e.value.filename == "sub/model.bin" and len(e.value.searched) == 2


def test_register_merges_users():
    a = register_file(ModelFile(name="test-merge", relpath="r", source="s", used_by=("x",)))
    b = register_file(ModelFile(name="test-merge", relpath="r", source="s", used_by=("y",)))
    assert a.used_by == ("x",) and b.used_by == ("x", "y") and REGISTRY["test-merge"] is b
    assert get_file("test-merge") is b
    with pytest.raises(KeyError, match="unknown model file"):
        get_file("no-such-file")
    del REGISTRY["test-merge"]
