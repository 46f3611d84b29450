"""``ipvg models``: the listing, --json, --require exit codes, cheap imports."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from ipvgkit.cli.app import app
from ipvgkit.stages.model_files import registering_modules

runner = CliRunner()


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("IPVG_MODELS", raising=False)
    models = tmp_path / "models"
    (models / "insightface" / "buffalo_l").mkdir(parents=True)
    (models / "insightface" / "buffalo_l" / "det_10g.onnx").write_bytes(b"x")
    return models


def test_json_lists_every_registered_file(env, tmp_path):
    r = runner.invoke(app, ["models", "--models-dir", str(env), "--json"])
    assert r.exit_code == 0, r.output
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    for name in (
        "buffalo_l",
        "antelopev2",
        "curricularface-ir101",
        "inception-v3-fid",
        "dlib-shape-predictor-5",
    ):
        assert name in rows
    assert rows["buffalo_l"]["present"] is True
    assert rows["buffalo_l"]["path"] == str(env / "insightface" / "buffalo_l")
    assert "facesim_arc" in rows["buffalo_l"]["used_by"]
    cur = rows["curricularface-ir101"]
    assert cur["present"] is False and cur["path"] is None
    assert cur["searched"][0] == str(env / "curricularface" / "glint360k_curricular_face_r101_backbone.bin")
    assert any(s.startswith("HF cache " + str(tmp_path / "hf")) for s in cur["searched"])
    assert "BestWishYsh/ConsisID-preview" in cur["source"]
    # files of other modules (metrics, model backends) are listed too
    assert any("clipscore" in row["used_by"] for row in rows.values())


def test_table_and_require(env):
    r = runner.invoke(app, ["models", "--models-dir", str(env)])
    assert r.exit_code == 0
    assert "buffalo_l" in r.output and "missing" in r.output and "present" in r.output
    ok = runner.invoke(app, ["models", "--models-dir", str(env), "--require", "buffalo_l,facesim_dlib"])
    assert ok.exit_code == 0, ok.output
    bad = runner.invoke(app, ["models", "--models-dir", str(env), "--require", "facesim_cur"])
    assert bad.exit_code == 1
    assert "curricularface-ir101" in bad.stderr and "glint360k" in bad.stderr
    unknown = runner.invoke(app, ["models", "--models-dir", str(env), "--require", "nope"])
    assert unknown.exit_code == 2 and "unknown model file or user nope" in unknown.stderr


def test_env_var_models_dir(env, monkeypatch):
    monkeypatch.setenv("IPVG_MODELS", str(env))
    r = runner.invoke(app, ["models", "--json"])
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert rows["buffalo_l"]["present"] is True


def test_registering_modules_and_cheap_import():
    mods = registering_modules()
    assert "ipvgkit.faces.files" in mods and "ipvgkit.stages.model_files" not in mods
    code = (
        "import sys; from ipvgkit.stages.model_files import load_registrations; p = load_registrations(); "
        "print(p, [m for m in ('torch', 'onnxruntime', 'dlib', 'insightface') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] []"


def test_help_has_examples():
    r = runner.invoke(app, ["models", "--help"])
    assert r.exit_code == 0 and "--require" in r.output and "Examples" in r.output
